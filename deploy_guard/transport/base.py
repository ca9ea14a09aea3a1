"""The transport seam: everything above it sees `Transport.run(argv)` and nothing else."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from deploy_guard.secrets import mask_secrets

log = logging.getLogger(__name__)

# Every remote command runs with a fixed locale and without pager or colours, so that the
# output we parse is the same on every host (FIELD-NOTES: "Prefix commands with ...").
REMOTE_ENV: Final = ("LC_ALL=C", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "SYSTEMD_LESS=")
# paramiko's records go to this logger (`ssh.py`); the CLI lets them through for --debug only.
PARAMIKO_LOGGER: Final = "deploy_guard.transport.ssh.paramiko"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished remote command left behind."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Transport(Protocol):
    """Runs commands on one host. Implementations: `ssh.SshTransport`, `local.LocalTransport`."""

    @property
    def host(self) -> str:
        """The host name used in messages."""
        ...

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        """Run ``argv`` (each element quoted, never concatenated into a shell string).

        Raises:
            CommandTimeout: the command did not finish within ``timeout`` seconds.
            ConnectionLost: the connection died while it ran.
            CommandFailed: ``check`` is true and the command exited non-zero.
        """
        ...

    def close(self) -> None:
        """Release the connection; remote work started through systemd keeps running."""
        ...


def quote_argv(argv: Sequence[str]) -> str:
    """The single place where an argv becomes a shell command line: each element quoted."""
    return " ".join(shlex.quote(part) for part in argv)


def remote_command_line(argv: Sequence[str], *, become: Sequence[str] = ()) -> str:
    """The command line sent to a remote shell: optional privilege prefix, fixed environment.

    The environment comes after ``become`` because sudo resets the environment it was given.
    """
    return quote_argv([*become, "env", *REMOTE_ENV, *argv])


def masked(text: str) -> str:
    """``text`` with anything that looks like a secret replaced, for debug logs."""
    return mask_secrets(text)
