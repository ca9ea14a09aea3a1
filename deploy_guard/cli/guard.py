"""`plan` and `run`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

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
    stage_option,
)
from deploy_guard.errors import ExitCode

if TYPE_CHECKING:  # the rest is imported where used: `run --help` must stay instant
    from deploy_guard.config import Config
    from deploy_guard.guard.engine import HostTarget


@click.command(
    epilog=examples(
        "deploy-guard plan forge",
        "deploy-guard plan --on @db --stage snapshots",
        "deploy-guard plan --all --json > plan.json",
    )
)
@host_arguments
@all_option
@stage_option
@parallel_option
@show_trace_option
@common_options
def plan(
    common: Common,
    hosts: tuple[str, ...],
    all_hosts: bool,
    stages: tuple[str, ...],
    parallel: int | None,
    show_trace: bool,
) -> int:
    """Show which units each stage would run on each HOST, and where the guard and the
    deploy log in. Starts nothing."""
    config, targets = load_targets(common, hosts, stages, all_hosts, show_trace=show_trace)
    return show_plan(common, config, targets, parallel)


def show_plan(
    common: Common, config: Config, targets: tuple[HostTarget, ...], parallel: int | None
) -> int:
    from deploy_guard.observe import report  # noqa: PLC0415
    from deploy_guard.render import print_plan  # noqa: PLC0415
    from deploy_guard.workflow import plan_with_destinations  # noqa: PLC0415

    results, destinations = plan_with_destinations(
        session(common, config), targets, parallel, config.deploy.tool
    )
    if common.json:
        click.echo(report.dumps(report.plan_json(results, destinations)), nl=False)
    print_plan(console(common), results, destinations)
    return int(ExitCode.CRITICAL if any(r.error for r in results) else ExitCode.OK)


cancel_remote_option = click.option(
    "--cancel-remote",
    is_flag=True,
    help="On Ctrl-C, stop the backups in flight instead of leaving them to finish.",
)


@click.command(
    epilog=examples(
        "deploy-guard run forge",
        "deploy-guard run --on @prod --stage snapshots --limit 8",
        "deploy-guard run --all --max-age 6h --json > report.json",
    )
)
@host_arguments
@all_option
@stage_option
@parallel_option
@max_age_option
@cancel_remote_option
@click.option("--dry-run", is_flag=True, help="Same as 'plan': show what would run.")
@show_trace_option
@common_options
def run(
    common: Common,
    hosts: tuple[str, ...],
    all_hosts: bool,
    stages: tuple[str, ...],
    parallel: int | None,
    max_age: float | None,
    cancel_remote: bool,
    dry_run: bool,
    show_trace: bool,
) -> int:
    """Run every backup stage on each HOST now and report what really happened."""
    config, targets = load_targets(common, hosts, stages, all_hosts, show_trace=show_trace)
    if dry_run:
        return show_plan(common, config, targets, parallel)
    from deploy_guard import workflow  # noqa: PLC0415
    from deploy_guard.observe import report  # noqa: PLC0415
    from deploy_guard.render import print_summary  # noqa: PLC0415

    request = workflow.GuardRequest("run", parallel, max_age, cancel_remote)
    result = workflow.run(session(common, config), targets, request)
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    print_summary(console(common), result, log_lines=5)
    return int(result.exit_code)
