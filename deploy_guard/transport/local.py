"""Run commands on this machine (`deploy-guard run local`), without SSH: each one a child
process started by `transport.process`, like every other local process."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Final

from deploy_guard.errors import CommandFailed, CommandTimeout
from deploy_guard.transport import process
from deploy_guard.transport.base import REMOTE_ENV, CommandResult, LineStream, masked, quote_argv

log = logging.getLogger(__name__)

# What a remote command's environment gets (`REMOTE_ENV`), on top of ours.
_ENV: Final = {name: value for name, _, value in (item.partition("=") for item in REMOTE_ENV)}
_STREAM: Final = process.Streams(stdin=process.PIPE, stdout=process.PIPE, stderr=process.DEVNULL)


class LocalTransport:
    """A `Transport` that runs each argv as a child process of deploy-guard itself."""

    runs_sh = True  # SystemdClient.batch

    def __init__(self, host: str = "local", *, become: Sequence[str] = ()) -> None:
        self._host = host
        self._become = tuple(become)

    @property
    def host(self) -> str:
        return self._host

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        """Run ``argv`` locally; see `Transport.run` for what it raises."""
        full = [*self._become, *argv]
        log.debug("%s$ %s", self._host, masked(quote_argv(full)))
        try:
            completed = process.run_or_status(full, process.Run(timeout=timeout, env=_ENV))
        except process.ProcessTimeout as exc:
            raise CommandTimeout(self._host, f"{argv[0]} took longer than {timeout:.0f}s") from exc
        result = CommandResult(
            tuple(argv), completed.returncode, completed.stdout, completed.stderr
        )
        if check and not result.ok:
            raise CommandFailed(self._host, argv, result.exit_status, result.stderr)
        return result

    def open_stream(self, argv: Sequence[str]) -> LineStream:
        """Start ``argv`` and stream its output lines; closing the stream closes its stdin."""
        full = [*self._become, *argv]
        log.debug("%s$ %s &", self._host, masked(quote_argv(full)))
        child = process.start(full, _ENV, _STREAM)
        assert child.stdout is not None
        assert child.stdin is not None
        stdout, stdin = child.stdout, child.stdin

        def close() -> None:
            stdin.close()
            process.stop(child, 2, interrupt=False)
            stdout.close()

        return LineStream(lambda: os.read(stdout.fileno(), 65536), close, f"{self._host} stream")

    def close(self) -> None:
        """Nothing to release."""
