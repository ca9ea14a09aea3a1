"""Orchestration: for every host, connect, discover, plan, then run the stages in order;
hosts in parallel. The only layer that decides when a host's run stops.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from deploy_guard.clock import Clock
from deploy_guard.config import PreflightCheck
from deploy_guard.errors import DeployGuardError, ExitCode, internal_error, without_host
from deploy_guard.events import (
    EventSink,
    HostConnecting,
    HostFinished,
    HostPlanned,
    HostWarning,
    StageFinished,
    StageStarted,
)
from deploy_guard.guard.discovery import StageSpec, discover, plan_host, with_manifest
from deploy_guard.guard.preflight import run_preflight
from deploy_guard.guard.proof import (
    ProofSettings,
    Prover,
    ProveStage,
    describe_plan,
    no_proof,
    plan_proof,
)
from deploy_guard.guard.recovery import Recovery
from deploy_guard.guard.stage import EngineSettings, StageContext, run_stage
from deploy_guard.manifest import MANIFEST_PATH, load_manifest
from deploy_guard.model import (
    HostPlan,
    HostResult,
    Outcome,
    PreflightReport,
    RunReport,
    StageOutcome,
    StagePlan,
    StageResult,
    UnitResult,
    host_exit_code,
    worst,
)
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.base import Transport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HostTarget:
    """One host to guard: its name, how to reach it, and its stages."""

    name: str
    destination: str
    become: tuple[str, ...] = ()
    specs: tuple[StageSpec, ...] = ()
    ssh_config: Path | None = None
    preflight: tuple[PreflightCheck, ...] = ()
    # Who switches the system (apply's nixos-rebuild --target-host): `deploy_target`, else the
    # flake inventory's target; None: none is known, the guard destination is used.
    deploy_destination: str | None = None
    # --stage left some configured stages out: the run cannot prove the whole host (no
    # last-success receipt, no last-success metric; issue 11, case 7).
    stage_subset: bool = False
    proof: ProofSettings = field(default_factory=ProofSettings)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """Everything a `run` or `plan` needs, built by the CLI."""

    command: str
    hosts: tuple[HostTarget, ...]
    parallel: int = 4
    settings: EngineSettings = field(default_factory=EngineSettings)


@dataclass(frozen=True, slots=True)
class PlanResult:
    """`plan` for one host: the plan, or why there is none."""

    host: str
    plan: HostPlan | None
    error: str | None = None
    preflight: PreflightReport | None = None
    proofs: dict[str, str] = field(default_factory=dict)  # unit -> what will prove it


Connector = Callable[[HostTarget], Transport]


def new_run_id(clock: Clock) -> str:
    """Sortable and unique: 20261127T101500Z-3f9a1c."""
    return f"{clock.now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def connect_and_plan(target: HostTarget, connect: Connector) -> tuple[SystemdClient, HostPlan]:
    transport = connect(target)
    client = SystemdClient(transport)
    try:
        _version, text = client.version_and_file(MANIFEST_PATH)  # one round trip
        specs = target.specs
        if text is not None:  # the host says exactly which backup units it has
            manifest = load_manifest(text)
            specs = with_manifest(specs, manifest)
        else:
            manifest = None
        plan = plan_host(target.name, specs, discover(client, specs))
        return client, replace(plan, proofs=manifest.proofs if manifest else ())
    except BaseException:
        transport.close()
        raise


def _not_started(stage: StagePlan, reason: str) -> StageResult:
    units = tuple(UnitResult(unit, Outcome.NOT_STARTED, reason=reason) for unit in stage.units)
    return StageResult(stage.name, stage.critical, StageOutcome.NOT_STARTED, units, reason)


def _empty_stage(stage: StagePlan, host: str, warnings: list[str]) -> StageResult:
    if stage.critical and not stage.allow_empty:
        reason = "no unit matched this critical stage (set allow_empty = true if that is expected)"
        return StageResult(stage.name, True, StageOutcome.FAILED, (), reason)
    # In the report too (hosts[].warnings), not only in the live view (issue 11, case 5).
    what = ", ".join(stage.unmatched) or "(the host's manifest lists no unit)"
    warnings.append(f"stage {stage.name}: no unit matched {what}")
    return StageResult(stage.name, stage.critical, StageOutcome.SUCCEEDED, (), "no unit matched")


def nothing_guarded(plan: HostPlan) -> str | None:
    """Issue 11, case 5: a host where no stage has a unit to run (every stage empty, or
    disabled for it) proves nothing. The reason, unless every stage it has left says
    allow_empty = true."""
    if any(stage.units for stage in plan.stages):
        return None
    if plan.stages and all(stage.allow_empty for stage in plan.stages):
        return None
    return f"no backup unit found on {plan.host}"


def _run_stages(
    plan: HostPlan, context: StageContext, warnings: list[str], prove: ProveStage = no_proof
) -> tuple[tuple[StageResult, ...], str | None]:
    host, emit = plan.host, context.emit
    results: list[StageResult] = []
    stop_reason: str | None = None
    error: str | None = None
    for stage in plan.stages:
        if stop_reason is not None:
            results.append(_not_started(stage, stop_reason))
            continue
        emit(StageStarted(host, stage))
        if stage.units:
            run = run_stage(context, stage)
            result, error = run.result, run.fatal
            if error is None:  # stage 4: the units that succeeded left their artifact
                result = prove(stage, result)
        else:
            before = len(warnings)
            result = _empty_stage(stage, host, warnings)
            for warning in warnings[before:]:
                emit(HostWarning(host, warning))
        results.append(result)
        emit(StageFinished(host, result))
        if error is not None:
            stop_reason = f"host lost during stage {stage.name}"
        elif result.outcome is StageOutcome.FAILED and stage.critical:
            stop_reason = f"critical stage {stage.name} failed"
    return tuple(results), error


def host_error(error: DeployGuardError, host: str) -> str:
    """An error's message for a host's `error` field: messages name the host already
    ("forge: host key ..."), and the report has it apart."""
    return without_host(error, host)


def _manifest_units(plan: HostPlan) -> tuple[str, ...]:
    """Units the host's manifest says must exist (pre-flight checks them first)."""
    return tuple(
        unit for stage in plan.stages if stage.source == "manifest" for unit in stage.units
    )


def run_host(
    target: HostTarget, connect: Connector, context: Callable[[SystemdClient], StageContext]
) -> HostResult:
    """Guard one host. Never raises: every problem ends up in the `HostResult`."""
    try:
        client, plan = connect_and_plan(target, connect)
    except DeployGuardError as exc:
        message = host_error(exc, target.name)
        return HostResult(target.name, max(exc.exit_code, ExitCode.CRITICAL), error=message)
    except Exception as exc:  # a bug must not turn into a green host or kill the others
        log.debug("%s: internal error", target.name, exc_info=True)
        return HostResult(target.name, ExitCode.CRITICAL, error=internal_error(exc))
    try:
        stage_context = context(client)
        recovery = stage_context.recovery
        if target.preflight:  # its unit checks run under this recovery: boot id first
            recovery.boot_id = client.boot_id()
        stage_context.emit(HostPlanned(target.name, plan))
        preflight = run_preflight(
            client, target.preflight, required_units=_manifest_units(plan), context=stage_context
        )
        # Otherwise pre-flight's own reading (before any unit started) is the reference.
        recovery.boot_id = recovery.boot_id or preflight.boot_id or client.boot_id()
        if not preflight.ok:  # a backup that cannot succeed is not started (exit 2)
            reason = preflight.summary()
            stages = tuple(_not_started(stage, reason) for stage in plan.stages)
            return HostResult(
                target.name, ExitCode.CRITICAL, stages, error=reason, preflight=preflight
            )
        warnings: list[str] = []
        prover = Prover(stage_context, target.proof, {p.unit: p for p in plan.proofs})
        stages, error = _run_stages(plan, stage_context, warnings, prover)
    except DeployGuardError as exc:
        return HostResult(target.name, ExitCode.CRITICAL, error=host_error(exc, target.name))
    except Exception as exc:
        log.debug("%s: internal error", target.name, exc_info=True)
        return HostResult(target.name, ExitCode.CRITICAL, error=internal_error(exc))
    finally:
        client.transport.close()
    recovery = stage_context.recovery
    if stage_context.cancel.is_set():
        code = ExitCode.INTERRUPTED
    else:
        code = ExitCode.CRITICAL if error else host_exit_code(stages)
    if error is None and (nothing := nothing_guarded(plan)) is not None:
        code, error = max(code, ExitCode.PARTIAL), nothing
    warnings += recovery.notes
    return HostResult(
        target.name,
        code,
        stages,
        error=error,
        warnings=tuple(warnings),
        reconnects=recovery.reconnects,
        preflight=preflight,
        boot_ids=recovery.boot_ids,
        stage_subset=target.stage_subset,
    )


def plan_hosts(
    targets: Sequence[HostTarget], connect: Connector, parallel: int
) -> list[PlanResult]:
    """Connect to each host and plan its stages; starts nothing."""

    def one(target: HostTarget) -> PlanResult:
        try:
            client, plan = connect_and_plan(target, connect)
        except DeployGuardError as exc:
            return PlanResult(target.name, None, host_error(exc, target.name))
        try:  # read-only: check units are not started by `plan`
            units = _manifest_units(plan)
            preflight = run_preflight(
                client, target.preflight, required_units=units, start_units=False
            )
        finally:
            client.transport.close()
        error = None if preflight.ok else preflight.summary()
        return PlanResult(target.name, plan, error, preflight, describe_proofs(plan, target.proof))

    return in_parallel([functools.partial(one, target) for target in targets], parallel)


def describe_proofs(plan: HostPlan, settings: ProofSettings) -> dict[str, str]:
    """What `plan` shows for each unit's stage-4 proof."""
    if not settings.enabled:
        return {}
    proofs = {proof.unit: proof for proof in plan.proofs}
    return {
        unit: describe_plan(plan_proof(unit, stage.name, settings, proofs), settings)
        for stage in plan.stages
        for unit in stage.units
    }


def in_parallel(jobs: Sequence[Callable[[], T]], limit: int) -> list[T]:
    """Run ``jobs`` on at most ``limit`` daemon threads; results in job order.

    Daemon threads, so that an interrupted run can exit without waiting for a host that
    no longer answers. A job that raised re-raises here: a lost result must never look
    like a host that was simply not there.
    """
    results: list[tuple[bool, T | BaseException]] = [(False, RuntimeError("not run"))] * len(jobs)
    slots = threading.Semaphore(max(1, limit))

    def worker(index: int) -> None:
        with slots:
            try:
                results[index] = (True, jobs[index]())
            except BaseException as exc:
                results[index] = (False, exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    values: list[T] = []
    for ok, value in results:
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        values.append(value)  # type: ignore[arg-type]
    return values


def run_hosts(
    request: RunRequest,
    connect: Connector,
    clock: Clock,
    emit: EventSink,
    cancel: threading.Event | None = None,
) -> RunReport:
    """Guard every host of ``request`` and gather one report. Setting ``cancel`` (the first
    Ctrl-C) stops the watching everywhere; the report then says what is known."""
    run_id = new_run_id(clock)
    started = clock.now()
    cancel = cancel or threading.Event()

    def context(client: SystemdClient) -> StageContext:
        recovery = Recovery(None, request.settings.reconnect_limit)
        return StageContext(client, clock, request.settings, emit, recovery, cancel)

    def one(target: HostTarget) -> HostResult:
        emit(HostConnecting(target.name, target.destination))
        result = run_host(target, connect, context)
        emit(HostFinished(result))
        return result

    hosts = in_parallel(
        [functools.partial(one, target) for target in request.hosts], request.parallel
    )
    code = ExitCode.INTERRUPTED if cancel.is_set() else worst([host.exit_code for host in hosts])
    return RunReport(run_id, request.command, started, clock.now(), code, tuple(hosts))
