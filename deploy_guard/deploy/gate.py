"""The gate between the guard and the deploy: which hosts may be deployed, and why.

Pure: `decide_gate` reads the guard's report; `workflow` records an override and runs the
deploy (`deploy.override`, `deploy.runner`).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy_guard.errors import ExitCode
from deploy_guard.model import RunReport


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Which hosts to deploy after the guard, and why."""

    deploy: tuple[str, ...]
    skipped: tuple[str, ...]
    refused: bool
    overridden: bool
    exit_code: ExitCode  # the code apply ends with unless the deploy itself fails


def decide_gate(report: RunReport, *, keep_going: bool, override: str | None) -> GateDecision:
    """Open the gate only for hosts whose guard exited 0, unless overridden on the record."""
    passed = tuple(host.host for host in report.hosts if host.exit_code is ExitCode.OK)
    failed = tuple(host.host for host in report.hosts if host.exit_code is not ExitCode.OK)
    worst = max((host.exit_code for host in report.hosts), default=ExitCode.CRITICAL)
    if not report.hosts:  # nothing was guarded: nothing is proven
        return GateDecision((), (), True, False, ExitCode.CRITICAL)
    if report.exit_code is ExitCode.INTERRUPTED:  # never deploy after Ctrl-C, override or not
        return GateDecision((), failed, True, False, ExitCode.INTERRUPTED)
    if not failed:
        return GateDecision(passed, (), False, False, ExitCode.OK)
    if override:
        everyone = tuple(host.host for host in report.hosts)  # in the order they were guarded
        return GateDecision(everyone, (), False, True, ExitCode.OK)
    if keep_going and passed:
        return GateDecision(passed, failed, False, False, max(worst, ExitCode.PARTIAL))
    return GateDecision((), failed, True, False, worst)
