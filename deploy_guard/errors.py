"""Exceptions with structured fields and a user-facing message, and the exit codes.

The CLI turns any `DeployGuardError` into ``error: <str(exc)>`` and ``exc.exit_code`` in one
place; nothing below the CLI prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Final

# What systemctl prints where systemd is not PID 1 (a container or chroot), with "Host is
# down" or "No such file or directory" after it.
NO_SYSTEMD_BUS: Final = "Failed to connect to bus"


class ExitCode(IntEnum):
    """The documented exit codes; with several hosts the worst (highest) one wins."""

    OK = 0
    PARTIAL = 1
    CRITICAL = 2
    CONFIG = 3
    DEPLOY_FAILED = 4
    UNHEALTHY = 5  # apply: deployed, but the host failed post-deploy verification
    INTERRUPTED = 130


def describe_exception(error: BaseException) -> str:
    """An exception in words, never its repr (``SSHException('...')``): its message, or what
    an empty one means (paramiko raises a bare ``EOFError`` when the server hangs up)."""
    text = str(error).strip()
    if isinstance(error, EOFError) and not text:
        return "the server closed the connection"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return text or type(error).__name__


def internal_error(error: BaseException) -> str:
    """A bug's message for a report: the exception's type and message, not its repr."""
    return f"internal error: {type(error).__name__}: {describe_exception(error)}"


def without_host(error: BaseException, host: str) -> str:
    """An error's message for a place that names the host already (a report's host `error`,
    ``HOST: ...`` lines): messages of `TransportError`s start with the host (issue 14:
    ``local: local: ...``)."""
    return str(error).removeprefix(f"{host}: ")


class DeployGuardError(Exception):
    """Base class: something a user can hit, with a message that says what to do."""

    exit_code: ExitCode = ExitCode.CRITICAL


class ConfigError(DeployGuardError):
    """The configuration file (or a command-line value) is invalid."""

    exit_code = ExitCode.CONFIG

    def __init__(self, path: Path | None, errors: Sequence[str]) -> None:
        self.path = path
        self.errors = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.path) if self.path else "configuration"
        if len(self.errors) == 1:
            return f"{where}: {self.errors[0]}"
        lines = "\n".join(f"  - {error}" for error in self.errors)
        return f"{where}: {len(self.errors)} problems:\n{lines}"


class UsageError(DeployGuardError):
    """The command line asks for something that cannot be done (unknown stage, no host)."""

    exit_code = ExitCode.CONFIG


class TransportError(DeployGuardError):
    """Talking to a host failed; ``reason`` says how and what to do about it."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.host}: {self.reason}"


class HostUnreachable(TransportError):
    """No TCP connection or SSH session could be established."""


class HostKeyUnknown(TransportError):
    """The host's key is in no known_hosts file; we never add it on our own."""


class HostKeyChanged(TransportError):
    """The host's key differs from the known one: possible man-in-the-middle."""


class AuthenticationFailed(TransportError):
    """The server rejected every key and method we offered."""


class ConnectionLost(TransportError):
    """An established connection died while a command was running."""


class CommandTimeout(TransportError):
    """A remote command did not finish within its timeout."""


class HostRebooted(TransportError):
    """The host's boot id changed during the run: every run in flight was cut short."""


class Interrupted(DeployGuardError):
    """The operator interrupted the run (Ctrl-C)."""

    exit_code = ExitCode.INTERRUPTED


class CommandFailed(TransportError):
    """A remote command that had to succeed exited non-zero."""

    def __init__(self, host: str, argv: Sequence[str], exit_status: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.exit_status = exit_status
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        reason = f"{argv[0]} exited with status {exit_status}: {detail}"
        if NO_SYSTEMD_BUS in stderr:  # systemctl in a container or chroot without systemd
            reason = f"systemd is not running as PID 1 on {host} (container or chroot?): {reason}"
        super().__init__(host, reason)


class HostProtocolError(DeployGuardError):
    """A host answered with output we cannot parse; never treated as success."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class JournalUnreadable(HostProtocolError):
    """journalctl could not read the journal: what only the journal proves is unproven."""
