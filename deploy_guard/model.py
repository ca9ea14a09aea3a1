"""Values that flow from the engine to the front ends: outcomes, results, events.

Frozen dataclasses only; nothing here does I/O. The values several layers share live here too
(pre-flight checks, post-deploy verification and health results), so that the modules that
produce them (`preflight`, `verify`, `health`) and those that read them (`engine`, `report`,
`render`) all import downward, never each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from deploy_guard.artifact.base import Artifact
from deploy_guard.errors import ExitCode

if TYPE_CHECKING:  # only an annotation here: using these values needs no pydantic
    from deploy_guard.manifest import ManifestProof


class Outcome(StrEnum):
    """What happened to one unit. Only `SUCCEEDED` counts as success."""

    SUCCEEDED = "succeeded"
    # --max-age: not started again, because systemd recorded a success within that age.
    FRESH = "fresh"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    # The run was ended from outside before it finished: a stop job (`systemctl stop`, a
    # shutdown) or a signal, even when systemd calls that a clean exit (issue 11, case 2).
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    NOT_STARTED = "not-started"
    # The engine lost sight of the run (host unreachable, no record found): never success.
    UNKNOWN = "unknown"

    @property
    def is_success(self) -> bool:
        """Only a proven run counts: one we watched succeed, or a recorded recent success."""
        return self in (Outcome.SUCCEEDED, Outcome.FRESH)


class StageOutcome(StrEnum):
    """What happened to a stage as a whole."""

    SUCCEEDED = "succeeded"
    # --max-age: not started again, because systemd recorded a success within that age.
    FRESH = "fresh"
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
    source: str = "patterns"  # or "manifest": exact names from the host's own configuration


@dataclass(frozen=True, slots=True)
class HostPlan:
    """Every stage for one host, in order."""

    host: str
    stages: tuple[StagePlan, ...]
    # The host manifest's proof units (issue 16), by the backup unit each proves.
    proofs: tuple[ManifestProof, ...] = ()


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
    age_s: float | None = None  # `fresh` units: how long ago their last success ended
    artifact: Artifact | None = None  # stage 4: the backup's own records (deploy_guard.guard.proof)


@dataclass(frozen=True, slots=True)
class StageResult:
    """The units of one stage and the stage's own outcome."""

    name: str
    critical: bool
    outcome: StageOutcome
    units: tuple[UnitResult, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One pre-flight check's outcome on one host."""

    name: str
    kind: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class PreflightReport:
    """Every pre-flight check on one host, and the host's state for the post-deploy
    comparison (`deploy_guard.guard.preflight` produces it)."""

    checks: tuple[CheckResult, ...]
    failed_units: tuple[str, ...]  # failed before anything was deployed
    boot_id: str | None = None  # None when it could not be read

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def summary(self) -> str:
        """One line naming each failed check, for `HostResult.error` and the stages' reason."""
        failed = "; ".join(
            f"{check.name} ({check.kind}): {check.message}" for check in self.failures
        )
        return f"pre-flight check failed: {failed}" if failed else "pre-flight checks passed"


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One `[[health]]` check: passed or not, after how many tries (`deploy.health`)."""

    name: str
    kind: str
    ok: bool
    attempts: int
    message: str


@dataclass(frozen=True, slots=True)
class FailedUnit:
    """A unit that failed after the deploy but not before, with the failed run's last lines."""

    unit: str
    result: str | None = None
    invocation_id: str | None = None
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """One verification of one host (`deploy_guard.deploy.verify`). ``problems``: anything else that
    makes it unhealthy (did not settle, did not reboot, unreachable, no pre-deploy record)."""

    system_state: str | None
    settled: bool
    old_boot_id: str | None
    boot_id: str | None
    new_failed_units: tuple[FailedUnit, ...] = ()
    recovered_units: tuple[str, ...] = ()  # failed before the deploy, not any more
    checks: tuple[HealthResult, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.new_failed_units and all(c.ok for c in self.checks)

    @property
    def failed_checks(self) -> tuple[HealthResult, ...]:
        return tuple(check for check in self.checks if not check.ok)

    @property
    def rebooted(self) -> bool | None:
        if self.old_boot_id is None or self.boot_id is None:
            return None
        return self.old_boot_id != self.boot_id


@dataclass(frozen=True, slots=True)
class RollbackStep:
    """One rollback command; ``exit_status`` None when its outcome is unknown (``error``)."""

    argv: tuple[str, ...]
    exit_status: int | None
    output: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """The rollback commands that ran, in order; the first failure stops the rest."""

    steps: tuple[RollbackStep, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.exit_status == 0 for step in self.steps)


@dataclass(frozen=True, slots=True)
class HostVerification:
    """Verification of one deployed host, and the rollback and second verification if any."""

    host: str
    verify: VerifyReport
    rollback: RollbackResult | None = None
    after_rollback: VerifyReport | None = None

    @property
    def exit_code(self) -> ExitCode:
        """5 when the deploy left the host unhealthy, even if a rollback repaired it."""
        return ExitCode.OK if self.verify.ok else ExitCode.UNHEALTHY


@dataclass(frozen=True, slots=True)
class HostResult:
    """Everything that happened on one host; ``error`` when the host itself failed."""

    host: str
    exit_code: ExitCode
    stages: tuple[StageResult, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    reconnects: int = 0  # times the connection was lost and the host came back mid-run
    preflight: PreflightReport | None = None  # checks before stage 1; failed units then
    verification: HostVerification | None = None  # `apply`: after the deploy
    # The boot id when the run began, and the new one if the host rebooted mid-run.
    boot_ids: tuple[str, ...] = ()
    stage_subset: bool = False  # --stage ran only some stages: proves no whole run


@dataclass(frozen=True, slots=True)
class Override:
    """An operator let the deploy go ahead after a failed guard, on the record."""

    reason: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DeployStep:
    """One deploy command and how it ended (None: it never ran)."""

    argv: tuple[str, ...]
    hosts: tuple[str, ...]
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class BuildOutcome:
    """`apply` with `[deploy] build_first`: the systems built before the guard, and how long
    that took."""

    steps: tuple[DeployStep, ...]
    duration_s: float

    @property
    def exit_code(self) -> int | None:
        """The first failing build's status, 0 when all succeeded, None when none ran."""
        codes = [step.exit_code for step in self.steps if step.exit_code is not None]
        return next((code for code in codes if code != 0), 0) if codes else None


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    """What `apply` did after the guard: deployed, skipped, or refused."""

    tool: str
    steps: tuple[DeployStep, ...] = ()
    deployed_hosts: tuple[str, ...] = ()
    skipped_hosts: tuple[str, ...] = ()
    refused: bool = False
    build: BuildOutcome | None = None  # build_first: the build that ran before the guard

    @property
    def exit_code(self) -> int | None:
        """The first failing command's status, 0 when all succeeded, None when none ran."""
        codes = [step.exit_code for step in self.steps if step.exit_code is not None]
        if not codes:
            return None
        return next((code for code in codes if code != 0), 0)


@dataclass(frozen=True, slots=True)
class RunReport:
    """The whole run: the JSON report's content."""

    run_id: str
    command: str
    started_at: datetime
    finished_at: datetime
    exit_code: ExitCode
    hosts: tuple[HostResult, ...] = field(default_factory=tuple)
    override: Override | None = None
    deploy: DeployOutcome | None = None
    # After the verdict: notifications, metrics, receipts that could not be delivered.
    warnings: tuple[str, ...] = ()
    # The configuration file loaded (None: the built-in defaults).
    config_file: str | None = None


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


# One entry of a run's failures (the audit record's and `history`'s `failures`): a host error
# or a unit that did not succeed (`observe.report.run_failures`).
Failure = dict[str, str | None]
