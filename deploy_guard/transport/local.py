"""Run commands on this machine (`deploy-guard run local`), without SSH."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence

from deploy_guard.errors import CommandFailed, CommandTimeout
from deploy_guard.transport.base import REMOTE_ENV, CommandResult, LineStream, masked, quote_argv

log = logging.getLogger(__name__)


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
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in REMOTE_ENV)  # type: ignore[misc]
        try:
            completed = subprocess.run(
                full,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env=env,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(self._host, f"{argv[0]} took longer than {timeout:.0f}s") from exc
        except FileNotFoundError as exc:
            completed = subprocess.CompletedProcess(full, 127, "", f"{exc.filename}: not found")
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
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in REMOTE_ENV)  # type: ignore[misc]
        process = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        assert process.stdout is not None
        assert process.stdin is not None
        stdout, stdin = process.stdout, process.stdin

        def close() -> None:
            stdin.close()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            stdout.close()

        return LineStream(lambda: os.read(stdout.fileno(), 65536), close, f"{self._host} stream")

    def close(self) -> None:
        """Nothing to release."""
