"""A command with a deadline on the host: run under coreutils' `timeout(1)`, and why it failed.

Closing the SSH channel does not stop a remote command (FIELD-NOTES), so commands with a
deadline (pre-flight and health checks) run under `timeout`, which kills them there; the
transport's own timeout is only a backstop this much later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from deploy_guard.secrets import mask_secrets
from deploy_guard.transport.base import CommandResult

BACKSTOP: Final = 15.0
KILL_AFTER: Final = 5
EXIT_TIMED_OUT: Final = 124  # timeout(1): the deadline passed
EXIT_CANNOT_RUN: Final = 126
EXIT_NOT_FOUND: Final = 127


def timed_argv(argv: Sequence[str], timeout: float) -> list[str]:
    """``argv`` under coreutils' `timeout` (its options stop at the duration, so an argv
    that starts with "-" cannot be read as one of its options)."""
    return ["timeout", f"--kill-after={KILL_AFTER}", f"{timeout:g}", *argv]


def last_line(text: str) -> str:
    """The last non-blank line, stripped ("" for none)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def command_problem(result: CommandResult, program: str, timeout: float) -> str | None:
    """Why ``program``, run under `timeout` (see `timed_argv`), failed; None if it exited 0."""
    detail = mask_secrets(last_line(result.stderr) or last_line(result.stdout) or "no output")
    match result.exit_status:
        case 0:
            return None
        case 124:
            return f"{program} did not finish within {timeout:g}s (killed)"
        case 126:
            return f"cannot run {program} on the host: {detail}"
        case 127:
            return f"not found on the host: {detail}"
        case status:
            return f"{program} exited with status {status}: {detail}"
