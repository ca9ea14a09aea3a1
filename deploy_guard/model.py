"""Values that flow from the engine to the front ends: outcomes, results, events.

Frozen dataclasses only; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from deploy_guard.errors import ExitCode


class Outcome(StrEnum):
    """What happened to one unit. Only `SUCCEEDED` counts as success."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    SKIPPED = "skipped"
    NOT_STARTED = "not-started"
    # The engine lost sight of the run (host unreachable, no record found): never success.
    UNKNOWN = "unknown"


class StageOutcome(StrEnum):
    """What happened to a stage as a whole."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_STARTED = "not-started"


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A unit that matched a stage's patterns but will not run, and why."""

    unit: str
    reason: str


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage as it will run on one host."""

    name: str
    critical: bool
    timeout_s: float
    max_parallel: int | None
    allow_empty: bool
    units: tuple[str, ...]
    excluded: tuple[Exclusion, ...] = ()
    unmatched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostPlan:
    """Every stage for one host, in order."""

    host: str
    stages: tuple[StagePlan, ...]


@dataclass(frozen=True, slots=True)
class UnitResult:
    """The proven fate of one unit in one run."""

    unit: str
    outcome: Outcome
    joined: bool = False
    result: str | None = None
    exit_status: int | None = None
    invocation_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_tail: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StageResult:
    """The units of one stage and the stage's own outcome."""

    name: str
    critical: bool
    outcome: StageOutcome
    units: tuple[UnitResult, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HostResult:
    """Everything that happened on one host; ``error`` when the host itself failed."""

    host: str
    exit_code: ExitCode
    stages: tuple[StageResult, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunReport:
    """The whole run: the JSON report's content."""

    run_id: str
    command: str
    started_at: datetime
    finished_at: datetime
    exit_code: ExitCode
    hosts: tuple[HostResult, ...] = field(default_factory=tuple)


def host_exit_code(stages: tuple[StageResult, ...]) -> ExitCode:
    """2 when a critical stage failed, 1 when any other unit did not succeed, else 0."""
    code = ExitCode.OK
    for stage in stages:
        if stage.outcome is StageOutcome.FAILED and stage.critical:
            return ExitCode.CRITICAL
        if stage.outcome is not StageOutcome.SUCCEEDED:
            code = ExitCode.PARTIAL
    return code


def worst(codes: list[ExitCode]) -> ExitCode:
    """With several hosts the worst exit code wins (an empty list is success)."""
    return max(codes, default=ExitCode.OK)
