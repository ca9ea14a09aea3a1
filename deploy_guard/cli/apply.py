"""`apply`: guard, gate, then deploy with nixos-rebuild, colmena, deploy-rs or any command."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click

from deploy_guard import report
from deploy_guard.apply import (
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
from deploy_guard.cli.common import (
    Common,
    all_option,
    common_options,
    connector,
    console,
    host_arguments,
    load_targets,
    max_age_option,
    parallel_option,
)
from deploy_guard.cli.guard import cancel_remote_option, finish, guard_hosts, save
from deploy_guard.clock import SystemClock
from deploy_guard.config import Config
from deploy_guard.deploy import DeployHost, DeployPlan, plan_deploy
from deploy_guard.engine import HostTarget, in_parallel
from deploy_guard.errors import ExitCode, UsageError
from deploy_guard.model import DeployOutcome, DeployStep, HostResult, Outcome, Override, RunReport
from deploy_guard.preflight import PreflightReport
from deploy_guard.render import print_deploy, print_summary
from deploy_guard.transport.base import Transport
from deploy_guard.verify import VerifyRequest, VerifySettings, attempted_hosts, connect_and_verify

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
        every = [DeployHost(target.name, target.destination) for target in targets]
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


@click.command()
@host_arguments
@all_option
@parallel_option
@click.option(
    "--tool",
    type=click.Choice(TOOLS),
    default=None,
    help="Deploy tool (default: [deploy] tool; 'command' when -- CMD is given).",
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
@common_options
def apply(common: Common, hosts: tuple[str, ...], all_hosts: bool, parallel: int | None,
          tool: str | None, keep_going: bool, override: str | None, max_age: float | None,
          cancel_remote: bool, rollback_on_failure: bool) -> int:  # fmt: skip
    """Guard each HOST, then deploy: only when every guard passed, or on the record.

    Add `-- CMD...` to deploy with any command ({host} runs it once per host, {hosts}
    expands to all of them).
    """
    deploy_command = tuple(click.get_current_context().find_root().obj["deploy_command"])
    reason = _override_reason(override)
    config, targets = load_targets(common, hosts, (), all_hosts)
    tool = tool or ("command" if deploy_command else config.deploy.tool)
    every = [DeployHost(target.name, target.destination) for target in targets]
    plan_deploy(tool, every, config.deploy, deploy_command)  # usage errors before guarding

    result, gate, warnings = guard_and_gate(
        common, config, targets,
        GateRequest("apply", parallel, keep_going, reason, tool, deploy_command, max_age,
                    cancel_remote),
    )  # fmt: skip
    chosen = [host for host in every if host.name in gate.deploy]
    plan = plan_deploy(tool, chosen or every, config.deploy, deploy_command)
    outcome = DeployOutcome(tool, tuple(DeployStep(c.argv, c.hosts) for c in plan.commands),
                            gate.deploy, gate.skipped, gate.refused)  # fmt: skip
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
