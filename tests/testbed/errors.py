"""Exceptions raised by the testbed, each with a message a test log can show as is."""

from __future__ import annotations

from pathlib import Path


class TestbedError(Exception):
    """Base class: the testbed could not do what was asked."""

    __test__ = False  # pytest: not a test class despite the name


class TestbedUnavailable(TestbedError):
    """This machine cannot run the testbed (not root, a tool is missing)."""


class RootfsBuildError(TestbedError):
    """Building the cached root filesystem failed; the log says why."""

    def __init__(self, log_path: Path, log_tail: str) -> None:
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(
            f"building the testbed root filesystem failed (log: {log_path}):\n{log_tail}"
        )


class HostBootError(TestbedError):
    """A container did not boot, or did not become reachable over ssh in time."""

    def __init__(self, name: str, reason: str, log_tail: str) -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"test host {name!r}: {reason}\n--- nspawn log tail ---\n{log_tail}")


class RemoteCommandError(TestbedError):
    """A command run over ssh on a test host exited non-zero."""

    def __init__(self, name: str, command: str, returncode: int, stdout: str, stderr: str) -> None:
        self.name = name
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"on test host {name!r}: {command!r} exited {returncode}\n"
            f"stdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}"
        )
