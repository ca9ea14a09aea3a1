"""`apply`: guard, gate, then deploy with nixos-rebuild, colmena, deploy-rs or any command."""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.text import Text

from deploy_guard.cli.common import (
    Common,
    all_option,
    common_options,
    connector,
    console,
    examples,
    host_arguments,
    load_targets,
    max_age_option,
    parallel_option,
    show_trace_option,
)
from deploy_guard.cli.guard import (
    cancel_remote_option,
    finish,
    guard_hosts,
    plan_with_destinations,
    save,
)
from deploy_guard.clock import SystemClock
from deploy_guard.config import Config
from deploy_guard.deploy.check import DeployCheck, DeployCheckFailed, check_deploy, deploy_hosts
from deploy_guard.deploy.gate import (
    DeployInterrupted,
    GateDecision,
    OverrideRecord,
    decide_gate,
    deploy_environment,
    guard_failures,
    journal_override,
    local_user,
    run_deploy,
    write_audit,
)
from deploy_guard.deploy.tools import DeployPlan, build_first, plan_build, plan_deploy
from deploy_guard.deploy.verify import (
    VerifyRequest,
    VerifySettings,
    attempted_hosts,
    connect_and_verify,
)
from deploy_guard.errors import ExitCode, UsageError
from deploy_guard.guard.engine import HostTarget, in_parallel, new_run_id
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
from deploy_guard.render import print_commands, print_deploy, print_plan, print_summary
from deploy_guard.transport.base import Transport

TOOLS = ("nixos-rebuild", "colmena", "deploy-rs", "command")


def _override_reason(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise UsageError("--override needs a reason: --override 'why this deploy cannot wait'")
    return value.strip()


def _record_override(
    result: RunReport, reason: str, targets: tuple[HostTarget, ...], plan: DeployPlan,
    config: Config,
) -> tuple[RunReport, list[str]]:  # fmt: skip
    """Audit log first (no record, no override), then each host's journal."""
    override = Override(reason, local_user(), datetime.now(UTC))
    names = tuple(target.name for target in targets)
    commands = tuple(command.argv for command in plan.commands)
    record = OverrideRecord(override, result.run_id, names, guard_failures(result), commands)
    write_audit(record, report.state_dir(os.environ))
    by_name = {target.name: target for target in targets}

    def open_host(name: str) -> Transport:
        return connector(config)(by_name[name])

    warnings = journal_override(record, names, open_host)
    return replace(result, override=override), warnings


def _deploy(common: Common, result: RunReport, plan: DeployPlan, outcome: DeployOutcome
            ) -> tuple[RunReport, bool]:  # fmt: skip
    """Run the deploy; the report is saved first so the command can read it."""
    result = replace(result, deploy=outcome)
    path = save(common, result)
    env = deploy_environment(result.run_id, outcome.deployed_hosts,
                             Path(path) if path else None)  # fmt: skip
    interrupted = False
    try:
        steps = run_deploy(plan, env, sys.stderr if common.json else None)
    except DeployInterrupted as exc:
        interrupted, steps = True, exc.steps
    return replace(result, deploy=replace(outcome, steps=steps)), interrupted


@dataclass(frozen=True, slots=True)
class GateRequest:
    """How to guard and what the gate may do (apply, and the pre-push hook)."""

    command: str
    parallel: int | None
    keep_going: bool
    override: str | None
    tool: str = "command"
    deploy_command: tuple[str, ...] = ()
    max_age: float | None = None
    cancel_remote: bool = False


def guard_and_gate(
    common: Common, config: Config, targets: tuple[HostTarget, ...], request: GateRequest
) -> tuple[RunReport, GateDecision, list[str]]:
    """Guard every target, decide the gate, and record an override that opened it.

    Raises:
        OverrideNotRecorded: the override could not be written to the audit log.
    """
    result = guard_hosts(common, config, targets, request.command, request.parallel,
                         request.max_age, request.cancel_remote)  # fmt: skip
    gate = decide_gate(result, keep_going=request.keep_going, override=request.override)
    warnings: list[str] = []
    if gate.overridden and request.override:
        every = deploy_hosts(targets)
        plan = (
            plan_deploy(request.tool, every, config.deploy, request.deploy_command)
            if request.command == "apply"
            else DeployPlan(())
        )
        result, warnings = _record_override(result, request.override, targets, plan, config)
    return result, gate, warnings


def _failed_before_deploy(host: HostResult) -> PreflightReport | None:
    """The failed units to compare against after the deploy: those pre-flight found, plus
    the backups that failed during the guard (the deploy did not break those)."""
    if host.preflight is None:
        return None
    failed_backups = {unit.unit for stage in host.stages for unit in stage.units
                      if unit.outcome in (Outcome.FAILED, Outcome.TIMED_OUT,
                                          Outcome.CANCELLED)}  # fmt: skip
    units = tuple(sorted({*host.preflight.failed_units, *failed_backups}))
    return replace(host.preflight, failed_units=units)


def _verify(
    common: Common, config: Config, targets: tuple[HostTarget, ...], result: RunReport,
    rollback: bool,
) -> tuple[RunReport, bool]:  # fmt: skip
    """Post-deploy verification of every host whose deploy command ran; True if one failed."""
    if result.deploy is None:
        return result, False
    names = attempted_hosts(result.deploy)
    by_name = {target.name: target for target in targets}
    hosts = {host.host: host for host in result.hosts}
    settings = VerifySettings.from_config(config.verify, log_lines=config.log_lines,
                                          rollback=rollback)  # fmt: skip
    jobs = []
    for name in names:
        request = VerifyRequest(_failed_before_deploy(hosts[name]), tuple(config.health),
                                settings, SystemClock())  # fmt: skip
        opener = functools.partial(connector(config), by_name[name])
        jobs.append(functools.partial(connect_and_verify, name, opener, request))
    if jobs:
        console(common).print(f"verifying {', '.join(names)} after the deploy")
    verified = {v.host: v for v in in_parallel(jobs, config.parallel)}
    updated = tuple(
        replace(host, verification=verified[host.host]) if host.host in verified else host
        for host in result.hosts
    )
    unhealthy = any(v.exit_code is ExitCode.UNHEALTHY for v in verified.values())
    return replace(result, hosts=updated), unhealthy


def _build(common: Common, plan: DeployPlan) -> BuildOutcome | None:
    """Build every host's system before the guard (`[deploy] build_first`).

    Raises:
        DeployInterrupted: Ctrl-C during the build; nothing was started on the hosts.
    """
    if not plan.commands:
        return None
    console(common).print(f"building {len(plan.commands)} system(s) before the guard")
    started = time.monotonic()
    steps = run_deploy(plan, {}, sys.stderr if common.json else None)
    return BuildOutcome(steps, time.monotonic() - started)


def _build_failed(common: Common, tool: str, plan: DeployPlan, build: BuildOutcome,
                  started: datetime) -> int:  # fmt: skip
    """The build failed: report it (exit 4); no host was contacted, so nothing is observed."""
    names = tuple(host for command in plan.commands for host in command.hosts)
    steps = tuple(DeployStep(command.argv, command.hosts) for command in plan.commands)
    outcome = DeployOutcome(tool, steps, (), names, True, build=build)
    result = RunReport(new_run_id(SystemClock()), "apply", started, datetime.now(UTC),
                       ExitCode.DEPLOY_FAILED, (), deploy=outcome)  # fmt: skip
    save(common, result)
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    print_deploy(console(common), result)
    return int(ExitCode.DEPLOY_FAILED)


@dataclass(frozen=True, slots=True)
class DryRun:
    """`apply --dry-run`: what the plan shows, and the commands that would run."""

    tool: str
    build: DeployPlan
    deploy: DeployPlan
    parallel: int | None
    problems: tuple[str, ...] = ()  # what check_deploy found: apply would stop with exit 3


def _dry_run(common: Common, config: Config, targets: tuple[HostTarget, ...],
             request: DryRun) -> int:  # fmt: skip
    """The guard's plan with both destinations per host, then the build and deploy commands
    that would run, and what the deploy checks found; starts nothing on any host and runs no
    build. Exit 3 when a check failed, 2 when a host could not be planned."""
    results, destinations = plan_with_destinations(config, targets, request.parallel,
                                                   request.tool)  # fmt: skip
    builds = [command.argv for command in request.build.commands]
    deploys = [command.argv for command in request.deploy.commands]
    if common.json:
        document = report.plan_json(results, destinations)
        document |= {"command": "apply --dry-run", "deploy": {
            "tool": request.tool,
            "build": [list(argv) for argv in builds],
            "commands": [list(argv) for argv in deploys],
            "problems": list(request.problems),
        }}  # fmt: skip
        click.echo(report.dumps(document), nl=False)
    output = console(common)
    print_plan(output, results, destinations)
    print_commands(output, "build", builds)
    print_commands(output, "deploy", deploys)
    for problem in request.problems:
        output.print(Text(f"deploy check failed: {problem}", style="bold red"), soft_wrap=True)
    output.print("dry run: nothing was started and nothing was deployed")
    if request.problems:
        return int(ExitCode.CONFIG)
    return int(ExitCode.CRITICAL if any(r.error for r in results) else ExitCode.OK)


@click.command(epilog=examples(
    "deploy-guard apply forge",
    "deploy-guard apply --on @web --keep-going --tool colmena",
    "deploy-guard apply forge --override 'backup disk replaced, restic repo re-initialised'",
))  # fmt: skip
@host_arguments
@all_option
@parallel_option
@click.option(
    "--tool",
    type=click.Choice(TOOLS),
    default=None,
    help="Deploy tool (default: [deploy] tool; 'command' when -- CMD is given without it).",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Deploy the hosts whose guard passed; skip the others (exit 1 at least).",
)
@click.option(
    "--override",
    "override",
    metavar="REASON",
    help="Deploy even though the guard failed; recorded with REASON.",
)
@max_age_option
@cancel_remote_option
@click.option(
    "--rollback-on-failure",
    is_flag=True,
    help="Roll back a deployed host that fails verification (also: [verify] rollback).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan the guard, check the deploy, print the commands; start and build nothing.",
)
@show_trace_option
@common_options
def apply(common: Common, hosts: tuple[str, ...], all_hosts: bool, parallel: int | None,
          tool: str | None, keep_going: bool, override: str | None, max_age: float | None,
          cancel_remote: bool, rollback_on_failure: bool, dry_run: bool,
          show_trace: bool) -> int:  # fmt: skip
    """Guard each HOST, then deploy: only when every guard passed, or on the record.

    Add `-- CMD...` to deploy with any command ({host} runs it once per host, {hosts}
    expands to all of them); with --tool, `-- ARGS...` are appended to the tool's command.
    """
    arguments = tuple(click.get_current_context().find_root().obj["deploy_command"])
    reason = _override_reason(override)
    started = datetime.now(UTC)
    config, targets = load_targets(common, hosts, (), all_hosts, show_trace=show_trace)
    tool = tool or ("command" if arguments else config.deploy.tool)
    every = deploy_hosts(targets)
    full_plan = plan_deploy(tool, every, config.deploy, arguments)  # usage errors first
    builds = (
        plan_build(tool, every, config.deploy, arguments, show_trace=show_trace)
        if build_first(tool, config.deploy)
        else DeployPlan(())
    )
    problems: tuple[str, ...] = ()
    try:
        check_deploy(DeployCheck(tool, config.deploy, (builds, full_plan), targets, show_trace))
    except DeployCheckFailed as exc:
        if not dry_run:
            raise
        problems = exc.problems
    if dry_run:
        request = DryRun(tool, builds, full_plan, parallel, problems)
        return _dry_run(common, config, targets, request)
    try:
        build = _build(common, builds)
    except DeployInterrupted:
        console(common).print("interrupted during the build: nothing was started on the hosts")
        return int(ExitCode.INTERRUPTED)
    if build is not None and build.exit_code != 0:
        return _build_failed(common, tool, full_plan, build, started)

    result, gate, warnings = guard_and_gate(
        common, config, targets,
        GateRequest("apply", parallel, keep_going, reason, tool, arguments, max_age,
                    cancel_remote),
    )  # fmt: skip
    chosen = [host for host in every if host.name in gate.deploy]
    plan = plan_deploy(tool, chosen or every, config.deploy, arguments)
    outcome = DeployOutcome(tool, tuple(DeployStep(c.argv, c.hosts) for c in plan.commands),
                            gate.deploy, gate.skipped, gate.refused, build)  # fmt: skip
    code = gate.exit_code
    interrupted = False
    if gate.refused:
        result = replace(result, deploy=outcome)
    else:
        print_summary(console(common), result, log_lines=5, final=False)
        result, interrupted = _deploy(common, result, plan, outcome)
        deploy_code = result.deploy.exit_code if result.deploy else None
        if interrupted:
            code = ExitCode.INTERRUPTED
        else:
            if deploy_code not in (None, 0):
                code = ExitCode.DEPLOY_FAILED
            result, unhealthy = _verify(common, config, targets, result, rollback_on_failure)
            code = ExitCode.UNHEALTHY if unhealthy else code
    if reason and not gate.overridden and not gate.refused:
        warnings.append("--override was not needed: every guard passed; nothing was recorded")
    result = finish(common, config, targets, replace(result, exit_code=code))
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    if gate.refused:
        print_summary(console(common), result, log_lines=5, final=False)
    print_deploy(console(common), result, warnings)
    return int(code)
