"""The transport seam: everything above it sees `Transport.run(argv)` and nothing else."""

from __future__ import annotations

import logging
import queue
import shlex
import threading
from collections.abc import Callable, Sequence
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


class LineStream:
    """The output lines of a long-running command (`journalctl --follow`), read on a thread
    of its own. Transports that can stream have ``open_stream(argv) -> LineStream``."""

    def __init__(self, read: Callable[[], bytes], close: Callable[[], None], name: str) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._close = close
        self._closed = threading.Event()
        self.ended = False
        threading.Thread(target=self._pump, args=(read,), name=name, daemon=True).start()

    def _pump(self, read: Callable[[], bytes]) -> None:
        buffer = b""
        try:
            while chunk := read():
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    self._queue.put(line.decode("utf-8", errors="replace"))
        except Exception as exc:  # a dead connection ends the stream, nothing else
            if not self._closed.is_set():
                log.debug("stream ended: %r", exc)
        finally:
            self._queue.put(None)

    def lines(self, timeout: float) -> list[str] | None:
        """Every complete line received so far, waiting up to ``timeout`` for the first;
        None once the command has ended and everything it printed was returned."""
        if self.ended:
            return None
        try:
            items = [self._queue.get(timeout=max(timeout, 0.0))]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if None in items:
            self.ended = True
            got = [item for item in items[: items.index(None)] if item is not None]
            return got or None
        return [item for item in items if item is not None]

    def close(self) -> None:
        """Stop the command (closing its stdin ends it, see `systemd.client`)."""
        if not self._closed.is_set():
            self._closed.set()
            self._close()


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
