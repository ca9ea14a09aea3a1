"""The one way deploy-guard runs a process on this machine: `nix eval` (inventory, the deploy
check), `ssh -G` (sshconfig), git (the hook, the report's revision), the deploy tools, and the
`local` transport's commands. Every caller gets the same rules: an argv, never a shell;
standard input closed unless the caller streams; the caller's environment plus what it adds;
a timeout that raises `ProcessTimeout`; a program that cannot be started is `CannotStart`
(or, through `run_or_status`, the shell's 127/126), never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

log = logging.getLogger(__name__)

_GIT_REVISION: Final = re.compile(r"^[0-9a-f]{40,64}$")

NOT_FOUND: Final = 127  # the shell's status for a command it cannot find
NOT_EXECUTABLE: Final = 126  # ... and for one it found but cannot execute

Finished = subprocess.CompletedProcess


class ProcessTimeout(Exception):
    """The process did not finish within its timeout (it has been killed)."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} took longer than {timeout:g}s")
        self.argv = tuple(argv)
        self.timeout = timeout


class CannotStart(Exception):
    """The program could not be started: ``missing`` (not found), or not executable."""

    def __init__(self, argv: Sequence[str], error: OSError) -> None:
        super().__init__(f"{argv[0]}: {error.strerror}")
        self.argv = tuple(argv)
        self.missing = isinstance(error, FileNotFoundError)
        self.filename = error.filename
        self.reason = error.strerror

    @property
    def status(self) -> int:
        """The shell's exit status for it: 127 (not found) or 126."""
        return NOT_FOUND if self.missing else NOT_EXECUTABLE


@dataclass(frozen=True, slots=True)
class Run:
    """How to run one process: ``env`` is added to this process's environment, ``errors``
    is how undecodable output is decoded (`str.decode`'s ``errors``)."""

    timeout: float | None = None
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    errors: str = "replace"


def environment(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    """This process's environment with ``extra`` on top; None (inherit) without extra."""
    return None if extra is None else {**os.environ, **extra}


def run(argv: Sequence[str], how: Run = Run()) -> Finished[str]:
    """Run ``argv`` to its end, standard input closed, its output captured as text; a
    non-zero exit status is the caller's to judge.

    Raises:
        CannotStart: the program does not exist or cannot be executed.
        ProcessTimeout: it ran longer than ``how.timeout``.
    """
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors=how.errors,
            timeout=how.timeout,
            cwd=how.cwd,
            env=environment(how.env),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError as exc:
        raise CannotStart(argv, exc) from exc
    except subprocess.TimeoutExpired as exc:
        raise ProcessTimeout(argv, how.timeout or 0.0) from exc


def run_or_status(argv: Sequence[str], how: Run = Run()) -> Finished[str]:
    """`run`, with a program that cannot be started as the shell's exit status (127 or 126)
    and its reason on standard error.

    Raises:
        ProcessTimeout: it ran longer than ``how.timeout``.
    """
    try:
        return run(argv, how)
    except CannotStart as exc:
        reason = f"{exc.filename}: not found" if exc.missing else str(exc)
        return subprocess.CompletedProcess(list(argv), exc.status, "", reason)


def git(
    argv: Sequence[str], cwd: Path | None = None, *, timeout: float | None = None
) -> Finished[str]:
    """``git ARGV`` in ``cwd``: output decoded with surrogateescape (file names are bytes),
    a git that cannot be started is exit status 127 or 126 ("git is not installed").

    Raises:
        ProcessTimeout: git ran longer than ``timeout``.
    """
    log.debug("git %s", " ".join(argv))
    try:
        return run(["git", *argv], Run(timeout=timeout, cwd=cwd, errors="surrogateescape"))
    except CannotStart as exc:
        return subprocess.CompletedProcess(["git", *argv], exc.status, "", "git is not installed")


def git_revision(cwd: Path) -> str | None:
    """`git rev-parse HEAD` in ``cwd``; None outside a repository, before the first commit,
    or without git."""
    try:
        completed = git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd, timeout=10)
    except ProcessTimeout:
        return None
    revision = completed.stdout.strip()
    return revision if completed.returncode == 0 and _GIT_REVISION.match(revision) else None


@dataclass(frozen=True, slots=True)
class Streams:
    """Where a started process's standard streams go: None inherits ours, `PIPE` is a pipe
    to us, `DEVNULL` nothing; ``stdout`` may be a file."""

    stdin: int | None = None
    stdout: IO[str] | int | None = None
    stderr: int | None = None


PIPE: Final = subprocess.PIPE
DEVNULL: Final = subprocess.DEVNULL


def start(
    argv: Sequence[str], env: Mapping[str, str] | None = None, streams: Streams = Streams()
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with ``env`` added to our environment, and return at once (the caller
    streams, waits, stops).

    Raises:
        CannotStart: the program does not exist or cannot be executed.
    """
    try:
        return subprocess.Popen(
            list(argv),
            env=environment(env),
            stdin=streams.stdin,
            stdout=streams.stdout,
            stderr=streams.stderr,
        )
    except OSError as exc:
        raise CannotStart(argv, exc) from exc


def stop(process: subprocess.Popen[bytes], grace: float, *, interrupt: bool) -> None:
    """Let ``process`` end within ``grace`` seconds (after a SIGINT when ``interrupt``), then
    kill it; returns once it is gone. A second Ctrl-C during the grace kills it at once."""
    if interrupt:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


def local_hostname() -> str:
    """This machine's name (gethostname(2)): ssh's %l, nixos-rebuild's default attribute."""
    return socket.gethostname()
