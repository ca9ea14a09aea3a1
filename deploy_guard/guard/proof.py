"""Stage 4, verification (issue 16): after a stage, prove that each unit that succeeded left
the artifact it was meant to make, from the backup tool's own records on the host.

How a unit is proven, first that applies:
  1. a command from the configuration (`[proof.commands]`, `[[stages]] verify`);
  2. the proof unit the NixOS module defines for it (`deploy-guard-proof@UNIT.service`): the
     check runs as the backup's own user with its credentials, started and judged like any
     backup (a proof unit is itself proven to have run), its answer read from the journal;
  3. without the module, when deploy-guard runs commands as root (`become`, or a root login):
     the same check, run with the unit's own environment (Environment=, EnvironmentFile=);
  4. otherwise nothing can prove it: `unverified`, with a warning.
The decision itself is pure (deploy_guard.artifact); this module only runs the checks.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final

from deploy_guard import artifact
from deploy_guard.artifact.base import Artifact, ArtifactStatus, CheckOutput, unverified
from deploy_guard.durations import format_duration
from deploy_guard.errors import DeployGuardError
from deploy_guard.events import HostWarning, UnitFinished
from deploy_guard.guard.stage import StageContext, run_stage
from deploy_guard.manifest import ManifestProof
from deploy_guard.model import Outcome, StageOutcome, StagePlan, StageResult, UnitResult

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 120.0
MAX_PARALLEL_CHECKS: Final = 4  # well below OpenSSH's 10 sessions per connection (FIELD-NOTES)
PROOF_RECORD_KEY: Final = "deploy_guard_proof"
# The unit's EnvironmentFile=s, sourced in order, then the check (direct mode).
_WITH_ENVIRONMENT_FILES: Final = (
    'while [ "$1" != -- ]; do if [ -r "$1" ]; then set -a; . "$1"; set +a; fi; shift; done; '
    'shift; exec "$@"'
)


@dataclass(frozen=True, slots=True)
class ProofSettings:
    """`[proof]` and `[[stages]] verify`, for one host."""

    enabled: bool = True
    require: bool = False  # `unverified` is a failure too
    timeout: float = DEFAULT_TIMEOUT
    commands: Mapping[str, str] = field(default_factory=dict)  # unit -> shell command
    stage_commands: Mapping[str, str] = field(default_factory=dict)  # stage -> shell command
    privileged: bool = False  # `become` is configured: checks may run as root


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """How one unit's artifact will be proven."""

    unit: str
    method: str  # "command", "unit", "direct", "none"
    kind: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    proof_unit: str | None = None
    note: str | None = None  # method "none": why


def plan_proof(
    unit: str, stage: str, settings: ProofSettings, proofs: Mapping[str, ManifestProof]
) -> ProofPlan:
    """Which method proves ``unit`` (no I/O). "direct" may still turn into "none" when the
    login is not root and no `become` is configured."""
    command = settings.commands.get(unit) or settings.stage_commands.get(stage)
    if command:
        return ProofPlan(unit, "command", "command", {"command": command, "unit": unit})
    if unit in proofs:
        proof = proofs[unit]
        return ProofPlan(unit, "unit", proof.kind, proof.params, proof.proof_unit)
    kind = artifact.kind_for_unit(unit)
    if kind is None:
        return ProofPlan(
            unit,
            "none",
            note="no proof is known for this unit: set [proof.commands] or the stage's verify",
        )
    return ProofPlan(unit, "direct", kind)


def describe_plan(plan: ProofPlan, settings: ProofSettings) -> str:
    """One line for `plan`: what will prove the unit."""
    match plan.method:
        case "command":
            return f"command: {plan.params.get('command')}"
        case "unit":
            assert plan.kind is not None
            what = artifact.load_kind(plan.kind).describe(plan.params)
            return f"{what} (by {plan.proof_unit})"
        case "direct":
            assert plan.kind is not None
            what = artifact.load_kind(plan.kind).describe(plan.params)
            how = "through become" if settings.privileged else "when logged in as root"
            return f"{what} ({how}, with the unit's environment; else unverified)"
        case _:
            return f"unverified: {plan.note}"


@dataclass(frozen=True, slots=True)
class UnitEnvironment:
    """What `systemctl show` says about how a unit runs: the check runs the same way."""

    assignments: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    exec_argv: tuple[str, ...] = ()


def parse_unit_environments(text: str, units: Sequence[str]) -> dict[str, UnitEnvironment]:
    """`systemctl show -p Environment,EnvironmentFiles,ExecStart -- UNITS`: one block per
    unit, in argument order, blank-line separated (FIELD-NOTES)."""
    blocks = [block for block in text.strip().split("\n\n")] if text.strip() else []
    result = {}
    for unit, block in zip(units, blocks, strict=False):
        assignments: list[str] = []
        files: list[str] = []
        exec_argv: list[str] = []
        for line in block.splitlines():
            key, _, value = line.partition("=")
            if key == "Environment" and value:
                assignments = [item for item in shlex.split(value) if "=" in item]
            elif key == "EnvironmentFiles" and value:
                files.append(value.rsplit(" (", 1)[0])
            elif key == "ExecStart" and "argv[]=" in value:
                argv_text = value.split("argv[]=", 1)[1].split(" ; ", 1)[0]
                exec_argv = shlex.split(argv_text)
        result[unit] = UnitEnvironment(tuple(assignments), tuple(files), tuple(exec_argv))
    return result


def with_environment(environment: UnitEnvironment, argv: Sequence[str]) -> list[str]:
    """``argv`` run with the unit's Environment= and EnvironmentFile= settings."""
    return [
        "env",
        *environment.assignments,
        "sh",
        "-c",
        _WITH_ENVIRONMENT_FILES,
        "sh",
        *environment.files,
        "--",
        *argv,
    ]


def bounded(argv: Sequence[str], seconds: float) -> list[str]:
    """``argv`` killed on the host after ``seconds``: closing our channel would not stop it."""
    return ["timeout", "-k", "5", f"{max(1, int(seconds))}", *argv]


def apply_artifact(result: UnitResult, found: Artifact, require: bool) -> UnitResult:
    """The unit with its artifact: missing or stale fails it, unverified too with
    ``require`` (`[proof] require = true`)."""
    failed = found.status in (ArtifactStatus.MISSING, ArtifactStatus.STALE) or (
        require and found.status is ArtifactStatus.UNVERIFIED
    )
    if not failed:
        return replace(result, artifact=found)
    reason = found.detail or f"artifact {found.status.value}"
    if found.status is ArtifactStatus.UNVERIFIED:
        reason = f"artifact unverified ([proof] require = true): {reason}"
    return replace(
        result,
        outcome=Outcome.FAILED,
        artifact=found,
        reason=reason,
        log_tail=(*result.log_tail, reason),
    )


def parse_proof_records(messages: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Proof units' journal lines (unit, MESSAGE) -> their JSON record by invocation id."""
    records = {}
    for _unit, message in messages:
        try:
            record = json.loads(message)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get(PROOF_RECORD_KEY) == 1:
            records[str(record.get("invocation", ""))] = record
    return records


def record_output(record: Mapping[str, Any]) -> CheckOutput:
    status = record.get("exit_status")
    return CheckOutput(
        status if isinstance(status, int) else 1,
        str(record.get("stdout") or ""),
        str(record.get("stderr") or ""),
    )


class Prover:
    """Proves the units of one host's stages, one stage at a time."""

    def __init__(
        self, context: StageContext, settings: ProofSettings, proofs: Mapping[str, ManifestProof]
    ) -> None:
        self.context = context
        self.client = context.client
        self.settings = settings
        self.proofs = proofs
        self._root: bool | None = None

    def __call__(self, stage: StagePlan, result: StageResult) -> StageResult:
        """``result`` with each succeeded unit's artifact; never raises for a host problem
        (what cannot be checked is `unverified`)."""
        if not self.settings.enabled:
            return result
        done = [unit for unit in result.units if unit.outcome is Outcome.SUCCEEDED]
        if not done:
            return result
        plans = {
            unit.unit: plan_proof(unit.unit, stage.name, self.settings, self.proofs)
            for unit in done
        }
        try:
            found = self._prove(stage, {unit.unit: unit for unit in done}, plans)
        except DeployGuardError as exc:
            found = {
                unit: unverified(plans[unit].kind or "none", f"the proof could not run: {exc}")
                for unit in plans
            }
        units = []
        for before in result.units:
            unit = before
            if before.unit in found:
                unit = apply_artifact(before, found[before.unit], self.settings.require)
                if unit.artifact and unit.artifact.status is ArtifactStatus.UNVERIFIED:
                    self._warn(f"{unit.unit}: artifact unverified: {unit.artifact.detail}")
                self.context.emit(UnitFinished(self.client.host, stage.name, unit))
            units.append(unit)
        succeeded = all(unit.outcome.is_success for unit in units)
        outcome = result.outcome
        if not succeeded and outcome is StageOutcome.SUCCEEDED:
            outcome = StageOutcome.FAILED
        return replace(result, units=tuple(units), outcome=outcome)

    def _warn(self, text: str) -> None:
        self.context.recovery.notes.append(text)
        self.context.emit(HostWarning(self.client.host, text))

    def _prove(
        self, stage: StagePlan, results: Mapping[str, UnitResult], plans: dict[str, ProofPlan]
    ) -> dict[str, Artifact]:
        found: dict[str, Artifact] = {}
        direct = [unit for unit, plan in plans.items() if plan.method == "direct"]
        if direct and not (self.settings.privileged or self._is_root()):
            for unit in direct:
                plans[unit] = replace(
                    plans[unit],
                    method="none",
                    note=(
                        "no proof unit on the host (NixOS module) and no become configured: the "
                        "backup's credentials are out of reach"
                    ),
                )
        for unit, plan in plans.items():
            if plan.method == "none":
                found[unit] = unverified(plan.kind or "none", plan.note or "no proof")
        jobs: dict[str, tuple[str, list[str], Mapping[str, Any]]] = {}
        direct = [unit for unit, plan in plans.items() if plan.method == "direct"]
        if direct:
            environments = self._environments(direct)
            for unit in direct:
                kind = plans[unit].kind
                assert kind is not None
                module = artifact.load_kind(kind)
                environment = environments.get(unit, UnitEnvironment())
                params = module.direct_params(unit, environment.exec_argv)
                argv = with_environment(environment, module.argv(params))
                jobs[unit] = (kind, argv, params)
        for unit, plan in plans.items():
            if plan.method == "command":
                started = results[unit].started_at
                params = {
                    **plan.params,
                    "run_started": f"{started.timestamp():.3f}" if started else "",
                }
                jobs[unit] = ("command", artifact.load_kind("command").argv(params), params)
        found.update(self._run_checks(jobs, results))
        by_unit = [unit for unit, plan in plans.items() if plan.method == "unit"]
        if by_unit:
            found.update(self._by_proof_units(stage, by_unit, plans, results))
        return found

    def _is_root(self) -> bool:
        if self._root is None:
            answer = self.client.transport.run(["id", "-u"], timeout=30, check=False)
            self._root = answer.ok and answer.stdout.strip() == "0"
        return self._root

    def _environments(self, units: Sequence[str]) -> dict[str, UnitEnvironment]:
        argv = [
            "systemctl",
            "--no-pager",
            "show",
            "-p",
            "Environment,EnvironmentFiles,ExecStart",
            "--",
            *units,
        ]
        answer = self.client.transport.run(argv, timeout=60, check=False)
        return parse_unit_environments(answer.stdout, units) if answer.ok else {}

    def _run_checks(
        self,
        jobs: Mapping[str, tuple[str, list[str], Mapping[str, Any]]],
        results: Mapping[str, UnitResult],
    ) -> dict[str, Artifact]:
        timeout = self.settings.timeout

        def one(unit: str) -> Artifact:
            kind, argv, params = jobs[unit]
            started = results[unit].started_at
            if started is None:
                return unverified(kind, "the run's start time is unknown")
            try:
                answer = self.client.transport.run(
                    bounded(argv, timeout), timeout=timeout + 10, check=False
                )
            except DeployGuardError as exc:
                return unverified(kind, f"the proof did not finish: {exc}")
            if answer.exit_status == 124:
                return unverified(
                    kind, f"the proof did not finish within {format_duration(timeout)}"
                )
            output = CheckOutput(answer.exit_status, answer.stdout, answer.stderr)
            return artifact.judge(kind, output, started, params)

        if not jobs:
            return {}
        with ThreadPoolExecutor(min(MAX_PARALLEL_CHECKS, len(jobs))) as pool:
            return dict(zip(jobs, pool.map(one, jobs), strict=True))

    def _by_proof_units(
        self,
        stage: StagePlan,
        units: Sequence[str],
        plans: Mapping[str, ProofPlan],
        results: Mapping[str, UnitResult],
    ) -> dict[str, Artifact]:
        """Start the proof units like a stage of their own, then read each run's record."""
        proof_units = {plans[unit].proof_unit: unit for unit in units if plans[unit].proof_unit}
        cursor = self.client.journal_cursor()
        proof_stage = StagePlan(
            f"{stage.name}-proof",
            False,
            self.settings.timeout,
            None,
            True,
            tuple(unit for unit in proof_units if unit),
            source="manifest",
        )
        run = run_stage(self.context, proof_stage)
        messages = self.client.unit_messages(list(proof_stage.units), cursor)
        records = parse_proof_records(messages)
        found = {}
        for proof_result in run.result.units:
            unit = proof_units[proof_result.unit]
            plan = plans[unit]
            kind = plan.kind or "none"
            started = results[unit].started_at
            record = records.get(proof_result.invocation_id or "")
            if not proof_result.outcome.is_success:
                found[unit] = unverified(
                    kind,
                    f"{proof_result.unit} {proof_result.outcome.value}"
                    f": {proof_result.reason or ''}".rstrip(": "),
                )
            elif record is None or started is None:
                found[unit] = unverified(
                    kind, f"{proof_result.unit} ran but left no proof record in the journal"
                )
            else:
                found[unit] = artifact.judge(kind, record_output(record), started, plan.params)
        return found


ProveStage = Callable[[StagePlan, StageResult], StageResult]


def no_proof(_stage: StagePlan, result: StageResult) -> StageResult:
    return result
