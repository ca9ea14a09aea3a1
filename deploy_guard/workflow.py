"""What the commands do, in order: guard the hosts -> gate -> (record an override) -> deploy ->
verify -> observe. `run`, `apply` and the pre-push hook share these steps; the CLI parses, builds
a `Session` and a request, calls one function here and renders what it returns.

Longer than most modules on purpose: the whole sequence reads top to bottom in one file, each
step a call into a role package (`guard`, `deploy`, `observe`).

Progress is spoken through the session (the live view or log lines, and a few lines on
stderr); results are returned, never printed as the result: rendering them is the CLI's job.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from deploy_guard.clock import SystemClock
from deploy_guard.deploy.check import (
    DeployCheck,
    DeployCheckFailed,
    check_deploy,
    deploy_hosts,
    routes,
)
from deploy_guard.deploy.gate import GateDecision, decide_gate
from deploy_guard.deploy.override import (
    OverrideRecord,
    journal_override,
    local_user,
    write_audit,
)
from deploy_guard.deploy.runner import DeployInterrupted, deploy_environment, run_deploy
from deploy_guard.deploy.tools import DeployPlan, build_first, plan_build, plan_deploy
from deploy_guard.deploy.verify import (
    VerifyRequest,
    VerifySettings,
    attempted_hosts,
    connect_and_verify,
)
from deploy_guard.errors import ExitCode
from deploy_guard.guard.engine import (
    HostTarget,
    PlanResult,
    RunRequest,
    in_parallel,
    new_run_id,
    plan_hosts,
    run_hosts,
)
from deploy_guard.guard.stage import EngineSettings
from deploy_guard.model import (
    BuildOutcome,
    DeployOutcome,
    DeployStep,
    HostResult,
    Outcome,
    Override,
    PreflightReport,
    RunReport,
)
from deploy_guard.observe import report
from deploy_guard.observe.report import guard_failures
from deploy_guard.observe.run import observe
from deploy_guard.render import print_summary, say
from deploy_guard.transport.process import git_revision

if TYPE_CHECKING:
    from rich.console import Console

    from deploy_guard.config import Config
    from deploy_guard.events import Event
    from deploy_guard.transport.base import Transport

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Where a guard's events go (the live view or log lines); closed after the guard."""

    def __call__(self, event: Event, /) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """What a command hands the workflow: the configuration, how to reach a host, and where
    to speak (``output``: stderr; ``progress`` opens the view of one guard)."""

    config: Config
    connect: Callable[[HostTarget], Transport]
    output: Console
    progress: Callable[[], Progress]
    json: bool = False  # --json: stdout carries the report, the deploy's output goes to stderr


def engine_settings(config: Config, max_age: float | None = None) -> EngineSettings:
    """Engine timing from the configuration; ``max_age`` (--max-age) wins over `max_age`."""
    return EngineSettings(
        poll_interval=config.poll_interval,
        stop_grace=config.stop_grace,
        log_lines=config.log_lines,
        max_age=max_age if max_age is not None else config.max_age,
        reconnect_limit=config.reconnect_limit,
    )


# -- plan and guard ---------------------------------------------------------------------------


def plan_with_destinations(
    session: Session, targets: tuple[HostTarget, ...], parallel: int | None, tool: str
) -> tuple[list[PlanResult], dict[str, tuple[str, str]]]:
    """Each host's plan, and its guard and deploy destinations as `plan` shows them."""
    config = session.config
    results = plan_hosts(targets, session.connect, parallel or config.parallel)
    destinations = {}
    for name, route in routes(targets, tool, config.deploy.guard_user).items():
        deploy = route.deploy if route.problem is None else f"NONE: {route.problem}"
        destinations[name] = (route.guard, deploy)
    return list(results), destinations


@dataclass(frozen=True, slots=True)
class GuardRequest:
    """One guard of the targets: for which command, how many hosts at once, --max-age, and
    whether Ctrl-C stops the backups in flight."""

    command: str
    parallel: int | None = None
    max_age: float | None = None
    cancel_remote: bool = False


def guard_hosts(
    session: Session, targets: tuple[HostTarget, ...], request: GuardRequest
) -> RunReport:
    """Run the stages on every target with the live view or log lines; returns the report.

    The first Ctrl-C stops the watching and yields the partial report (exit 130; backups
    already started keep running unless ``cancel_remote``); a second one exits at once.
    """
    config = session.config
    settings = replace(
        engine_settings(config, request.max_age), cancel_remote=request.cancel_remote
    )
    run = RunRequest(request.command, targets, request.parallel or config.parallel, settings)
    output = session.progress()
    cancel = threading.Event()

    def on_interrupt(_signal: int, _frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        what = "stopping the backups in flight" if request.cancel_remote else "backups keep running"
        sys.stderr.write(
            f"\ninterrupted: finishing the report ({what}); Ctrl-C again to exit at once\n"
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        return run_hosts(run, session.connect, SystemClock(), output, cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
        output.close()


def save(session: Session, result: RunReport) -> str | None:
    """Save the report; a failure to save is a warning, never a verdict."""
    try:
        path = report.save_run(result, os.environ)
    except OSError as exc:
        session.output.print(f"warning: could not save the report: {exc}", style="yellow")
        return None
    log.info("report saved to %s", path)
    return str(path)


def finish(session: Session, targets: tuple[HostTarget, ...], result: RunReport) -> RunReport:
    """After the verdict: notifications, metrics and receipts (their failures are warnings,
    never a verdict), then the report is saved."""

    config = session.config
    revision = git_revision(Path.cwd())
    warnings = observe(result, config, targets, session.connect, git_revision=revision)
    for warning in warnings:
        say(session.output, f"warning: {warning}", "yellow")
    config_file = str(config.source) if config.source else None
    result = replace(result, warnings=(*result.warnings, *warnings), config_file=config_file)
    save(session, result)
    return result


def run(session: Session, targets: tuple[HostTarget, ...], request: GuardRequest) -> RunReport:
    """`run`: guard every target, then observe and save."""
    return finish(session, targets, guard_hosts(session, targets, request))


# -- the gate ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateRequest:
    """How to guard and what the gate may do (apply, and the pre-push hook)."""

    guard: GuardRequest
    keep_going: bool = False
    override: str | None = None
    tool: str = "command"
    deploy_command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Gated:
    """The guard's report, the gate's decision, and the warnings of recording an override."""

    result: RunReport
    gate: GateDecision
    warnings: tuple[str, ...] = ()


def _record_override(
    session: Session,
    result: RunReport,
    reason: str,
    targets: tuple[HostTarget, ...],
    plan: DeployPlan,
) -> tuple[RunReport, list[str]]:
    """Audit log first (no record, no override), then each host's journal."""
    override = Override(reason, local_user(), datetime.now(UTC))
    names = tuple(target.name for target in targets)
    commands = tuple(command.argv for command in plan.commands)
    record = OverrideRecord(override, result.run_id, names, guard_failures(result), commands)
    write_audit(record, report.state_dir(os.environ))
    by_name = {target.name: target for target in targets}

    def open_host(name: str) -> Transport:
        return session.connect(by_name[name])

    warnings = journal_override(record, names, open_host)
    return replace(result, override=override), warnings


def guard_and_gate(
    session: Session, targets: tuple[HostTarget, ...], request: GateRequest
) -> Gated:
    """Guard every target, decide the gate, and record an override that opened it.

    Raises:
        OverrideNotRecorded: the override could not be written to the audit log.
    """
    result = guard_hosts(session, targets, request.guard)
    gate = decide_gate(result, keep_going=request.keep_going, override=request.override)
    warnings: list[str] = []
    if gate.overridden and request.override:
        every = deploy_hosts(targets)
        plan = (
            plan_deploy(request.tool, every, session.config.deploy, request.deploy_command)
            if request.guard.command == "apply"
            else DeployPlan(())
        )
        result, warnings = _record_override(session, result, request.override, targets, plan)
    return Gated(result, gate, tuple(warnings))


def guard_push(session: Session, targets: tuple[HostTarget, ...], override: str | None) -> Gated:
    """The pre-push hook: guard the hosts, decide the gate (an override on the record lets
    the push through), then observe and save."""
    request = GateRequest(
        GuardRequest("hook", max_age=session.config.hook.max_age), override=override
    )
    gated = guard_and_gate(session, targets, request)
    result = replace(gated.result, exit_code=gated.gate.exit_code)
    return replace(gated, result=finish(session, targets, result))


# -- apply: build, deploy, verify --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyPlans:
    """What `apply` would run: the tool, the build (`build_first`) and the deploy of every
    host, and what the deploy checks found (``problems``: apply stops with exit 3)."""

    tool: str
    build: DeployPlan
    deploy: DeployPlan
    problems: tuple[str, ...] = ()


def plan_apply(
    config: Config,
    targets: tuple[HostTarget, ...],
    tool: str,
    arguments: tuple[str, ...],
    show_trace: bool,
) -> ApplyPlans:
    """The build and deploy commands, then the deploy checks (`check_deploy`), whose problems
    are returned rather than raised (--dry-run shows them).

    Raises:
        UsageError: the tool and the deploy command do not fit together.
    """
    every = deploy_hosts(targets)
    full_plan = plan_deploy(tool, every, config.deploy, arguments)  # usage errors first
    builds = (
        plan_build(tool, every, config.deploy, arguments, show_trace=show_trace)
        if build_first(tool, config.deploy)
        else DeployPlan(())
    )
    try:
        check_deploy(DeployCheck(tool, config.deploy, (builds, full_plan), targets, show_trace))
    except DeployCheckFailed as exc:
        return ApplyPlans(tool, builds, full_plan, exc.problems)
    return ApplyPlans(tool, builds, full_plan)


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    """`apply` after its checks: the plans, the gate's options, the guard's, and rollback."""

    plans: ApplyPlans
    arguments: tuple[str, ...]
    guard: GuardRequest
    keep_going: bool = False
    override: str | None = None
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    """How `apply` ended. ``result`` None: interrupted during the build (nothing was started
    on any host, nothing saved); ``gate`` None: the build failed (no host was guarded)."""

    code: ExitCode
    result: RunReport | None = None
    gate: GateDecision | None = None
    warnings: tuple[str, ...] = ()


def _failed_before_deploy(host: HostResult) -> PreflightReport | None:
    """The failed units to compare against after the deploy: those pre-flight found, plus
    the backups that failed during the guard (the deploy did not break those)."""
    if host.preflight is None:
        return None
    failed_backups = {
        unit.unit
        for stage in host.stages
        for unit in stage.units
        if unit.outcome in (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CANCELLED)
    }
    units = tuple(sorted({*host.preflight.failed_units, *failed_backups}))
    return replace(host.preflight, failed_units=units)


def _build(session: Session, plan: DeployPlan) -> BuildOutcome | None:
    """Build every host's system before the guard (`[deploy] build_first`).

    Raises:
        DeployInterrupted: Ctrl-C during the build; nothing was started on the hosts.
    """
    if not plan.commands:
        return None
    session.output.print(f"building {len(plan.commands)} system(s) before the guard")
    started = time.monotonic()
    steps = run_deploy(plan, {}, sys.stderr if session.json else None)
    return BuildOutcome(steps, time.monotonic() - started)


def _build_failed(
    session: Session, plans: ApplyPlans, build: BuildOutcome, started: datetime
) -> Applied:
    """The build failed: the report says so (exit 4); no host was contacted, so nothing is
    observed."""
    names = tuple(host for command in plans.deploy.commands for host in command.hosts)
    steps = tuple(DeployStep(command.argv, command.hosts) for command in plans.deploy.commands)
    outcome = DeployOutcome(plans.tool, steps, (), names, True, build=build)
    result = RunReport(
        new_run_id(SystemClock()),
        "apply",
        started,
        datetime.now(UTC),
        ExitCode.DEPLOY_FAILED,
        (),
        deploy=outcome,
    )
    save(session, result)
    return Applied(ExitCode.DEPLOY_FAILED, result)


def _deploy(
    session: Session, result: RunReport, plan: DeployPlan, outcome: DeployOutcome
) -> tuple[RunReport, bool]:
    """Run the deploy; the report is saved first so the command can read it."""
    result = replace(result, deploy=outcome)
    path = save(session, result)
    env = deploy_environment(result.run_id, outcome.deployed_hosts, Path(path) if path else None)
    interrupted = False
    try:
        steps = run_deploy(plan, env, sys.stderr if session.json else None)
    except DeployInterrupted as exc:
        interrupted, steps = True, exc.steps
    return replace(result, deploy=replace(outcome, steps=steps)), interrupted


def _verify(
    session: Session, targets: tuple[HostTarget, ...], result: RunReport, rollback: bool
) -> tuple[RunReport, bool]:
    """Post-deploy verification of every host whose deploy command ran; True if one failed."""
    if result.deploy is None:
        return result, False
    config = session.config
    names = attempted_hosts(result.deploy)
    by_name = {target.name: target for target in targets}
    hosts = {host.host: host for host in result.hosts}
    settings = VerifySettings.from_config(
        config.verify, log_lines=config.log_lines, rollback=rollback
    )
    jobs = []
    for name in names:
        request = VerifyRequest(
            _failed_before_deploy(hosts[name]), tuple(config.health), settings, SystemClock()
        )
        opener = functools.partial(session.connect, by_name[name])
        jobs.append(functools.partial(connect_and_verify, name, opener, request))
    if jobs:
        session.output.print(f"verifying {', '.join(names)} after the deploy")
    verified = {v.host: v for v in in_parallel(jobs, config.parallel)}
    updated = tuple(
        replace(host, verification=verified[host.host]) if host.host in verified else host
        for host in result.hosts
    )
    unhealthy = any(v.exit_code is ExitCode.UNHEALTHY for v in verified.values())
    return replace(result, hosts=updated), unhealthy


def apply(session: Session, targets: tuple[HostTarget, ...], request: ApplyRequest) -> Applied:
    """`apply`: build first (when asked), guard and gate, deploy the hosts the gate let
    through, verify them, then observe and save.

    Raises:
        DeployCheckFailed: the deploy checks found problems (exit 3); nothing was started.
        OverrideNotRecorded: the override could not be written to the audit log.
    """
    started = datetime.now(UTC)
    plans, config = request.plans, session.config
    if plans.problems:
        raise DeployCheckFailed(plans.problems)
    try:
        build = _build(session, plans.build)
    except DeployInterrupted:
        return Applied(ExitCode.INTERRUPTED)
    if build is not None and build.exit_code != 0:
        return _build_failed(session, plans, build, started)

    gate_request = GateRequest(
        request.guard, request.keep_going, request.override, plans.tool, request.arguments
    )
    gated = guard_and_gate(session, targets, gate_request)
    result, gate, warnings = gated.result, gated.gate, list(gated.warnings)
    every = deploy_hosts(targets)
    chosen = [host for host in every if host.name in gate.deploy]
    plan = plan_deploy(plans.tool, chosen or every, config.deploy, request.arguments)
    outcome = DeployOutcome(
        plans.tool,
        tuple(DeployStep(c.argv, c.hosts) for c in plan.commands),
        gate.deploy,
        gate.skipped,
        gate.refused,
        build,
    )
    code = gate.exit_code
    if gate.refused:
        result = replace(result, deploy=outcome)
    else:
        print_summary(session.output, result, log_lines=5, final=False)
        result, interrupted = _deploy(session, result, plan, outcome)
        deploy_code = result.deploy.exit_code if result.deploy else None
        if interrupted:
            code = ExitCode.INTERRUPTED
        else:
            if deploy_code not in (None, 0):
                code = ExitCode.DEPLOY_FAILED
            result, unhealthy = _verify(session, targets, result, request.rollback)
            code = ExitCode.UNHEALTHY if unhealthy else code
    if request.override and not gate.overridden and not gate.refused:
        warnings.append("--override was not needed: every guard passed; nothing was recorded")
    result = finish(session, targets, replace(result, exit_code=code))
    return Applied(code, result, gate, tuple(warnings))
