"""Talking to systemd: `client` builds argv and runs it, `parse` turns output into values."""
