"""`apply`: guard, gate, then deploy with nixos-rebuild, colmena, deploy-rs or any command.

The sequence itself is `workflow.apply`; this module parses, calls it and renders.
"""

from __future__ import annotations

import click

from deploy_guard import workflow
from deploy_guard.cli.common import (
    Common,
    all_option,
    common_options,
    console,
    examples,
    host_arguments,
    load_targets,
    max_age_option,
    parallel_option,
    session,
    show_trace_option,
)
from deploy_guard.cli.guard import cancel_remote_option
from deploy_guard.config import DEPLOY_TOOLS, Config
from deploy_guard.errors import ExitCode, UsageError
from deploy_guard.guard.engine import HostTarget
from deploy_guard.observe import report
from deploy_guard.render import print_commands, print_deploy, print_plan, print_summary, say


def _override_reason(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise UsageError("--override needs a reason: --override 'why this deploy cannot wait'")
    return value.strip()


def _dry_run(
    common: Common,
    config: Config,
    targets: tuple[HostTarget, ...],
    plans: workflow.ApplyPlans,
    parallel: int | None,
) -> int:
    """The guard's plan with both destinations per host, then the build and deploy commands
    that would run, and what the deploy checks found; starts nothing on any host and runs no
    build. Exit 3 when a check failed, 2 when a host could not be planned."""
    results, destinations = workflow.plan_with_destinations(
        session(common, config), targets, parallel, plans.tool
    )
    builds = [command.argv for command in plans.build.commands]
    deploys = [command.argv for command in plans.deploy.commands]
    if common.json:
        document = report.plan_json(results, destinations)
        document |= {
            "command": "apply --dry-run",
            "deploy": {
                "tool": plans.tool,
                "build": [list(argv) for argv in builds],
                "commands": [list(argv) for argv in deploys],
                "problems": list(plans.problems),
            },
        }
        click.echo(report.dumps(document), nl=False)
    output = console(common)
    print_plan(output, results, destinations)
    print_commands(output, "build", builds)
    print_commands(output, "deploy", deploys)
    for problem in plans.problems:
        say(output, f"deploy check failed: {problem}", "bold red", soft_wrap=True)
    output.print("dry run: nothing was started and nothing was deployed")
    if plans.problems:
        return int(ExitCode.CONFIG)
    return int(ExitCode.CRITICAL if any(r.error for r in results) else ExitCode.OK)


@click.command(
    epilog=examples(
        "deploy-guard apply forge",
        "deploy-guard apply --on @web --keep-going --tool colmena",
        "deploy-guard apply forge --override 'backup disk replaced, restic repo re-initialised'",
    )
)
@host_arguments
@all_option
@parallel_option
@click.option(
    "--tool",
    type=click.Choice(DEPLOY_TOOLS),
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
def apply(
    common: Common,
    hosts: tuple[str, ...],
    all_hosts: bool,
    parallel: int | None,
    tool: str | None,
    keep_going: bool,
    override: str | None,
    max_age: float | None,
    cancel_remote: bool,
    rollback_on_failure: bool,
    dry_run: bool,
    show_trace: bool,
) -> int:
    """Guard each HOST, then deploy: only when every guard passed, or on the record.

    Add `-- CMD...` to deploy with any command ({host} runs it once per host, {hosts}
    expands to all of them); with --tool, `-- ARGS...` are appended to the tool's command.
    """
    arguments = tuple(click.get_current_context().find_root().obj["deploy_command"])
    reason = _override_reason(override)
    config, targets = load_targets(common, hosts, (), all_hosts, show_trace=show_trace)
    tool = tool or ("command" if arguments else config.deploy.tool)
    plans = workflow.plan_apply(config, targets, tool, arguments, show_trace)
    if dry_run:
        return _dry_run(common, config, targets, plans, parallel)
    guard = workflow.GuardRequest("apply", parallel, max_age, cancel_remote)
    request = workflow.ApplyRequest(
        plans, arguments, guard, keep_going, reason, rollback_on_failure
    )
    applied = workflow.apply(session(common, config), targets, request)
    output = console(common)
    if applied.result is None:
        output.print("interrupted during the build: nothing was started on the hosts")
        return int(applied.code)
    if common.json:
        click.echo(report.dumps(report.run_json(applied.result)), nl=False)
    if applied.gate is not None and applied.gate.refused:
        print_summary(output, applied.result, log_lines=5, final=False)
    print_deploy(output, applied.result, applied.warnings)
    return int(applied.code)
