"""Run reports and their parts for tests, built in one place.

Every field a test does not name takes the model's own default; a run's exit code is its
worst host's unless given, as the engine computes it (``model.worst``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from deploy_guard.errors import ExitCode
from deploy_guard.model import (
    HostResult,
    Outcome,
    RunReport,
    StageOutcome,
    StageResult,
    UnitResult,
    worst,
)

RUN_ID: Final = "20261127T101500Z-3f9a1c"
STARTED: Final = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def unit_result(unit: str, outcome: Outcome = Outcome.SUCCEEDED, **fields: Any) -> UnitResult:
    """One unit's fate (``fields``: any other `UnitResult` field)."""
    return UnitResult(unit, outcome, **fields)


def stage_result(
    name: str,
    *units: UnitResult,
    critical: bool = False,
    outcome: StageOutcome = StageOutcome.SUCCEEDED,
    reason: str | None = None,
) -> StageResult:
    """One stage and its units."""
    return StageResult(name, critical, outcome, units, reason=reason)


def host_result(
    host: str, exit_code: ExitCode = ExitCode.OK, *stages: StageResult, **fields: Any
) -> HostResult:
    """One host's run (``fields``: ``error``, ``warnings`` and the other `HostResult` fields)."""
    return HostResult(host, exit_code, stages, **fields)


def run_report(
    *hosts: HostResult,
    run_id: str = RUN_ID,
    command: str = "run",
    started_at: datetime = STARTED,
    finished_at: datetime | None = None,
    exit_code: ExitCode | None = None,
    **fields: Any,
) -> RunReport:
    """A whole run: it ends when it starts unless ``finished_at`` says otherwise, and exits
    with its worst host's code unless ``exit_code`` says otherwise."""
    return RunReport(
        run_id,
        command,
        started_at,
        started_at if finished_at is None else finished_at,
        worst([host.exit_code for host in hosts]) if exit_code is None else exit_code,
        hosts,
        **fields,
    )
