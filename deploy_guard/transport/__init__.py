"""Transports run an argv on a host and return its output: SSH (paramiko) or local."""

from deploy_guard.transport.base import CommandResult, Transport, quote_argv

__all__ = ["CommandResult", "Transport", "quote_argv"]
