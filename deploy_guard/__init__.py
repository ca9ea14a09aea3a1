"""deploy-guard: run every backup on a host, prove each one succeeded, then allow the deploy."""

__version__ = "0.1.0"
