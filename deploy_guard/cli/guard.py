"""`plan` and `run`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

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
    renderer,
    settings,
    show_trace_option,
    stage_option,
)
from deploy_guard.errors import ExitCode

if TYPE_CHECKING:  # the rest is imported where used: `run --help` must stay instant
    from deploy_guard.config import Config
    from deploy_guard.guard.engine import HostTarget, PlanResult
    from deploy_guard.model import RunReport

log = logging.getLogger(__name__)


@click.command(epilog=examples(
    "deploy-guard plan forge",
    "deploy-guard plan --on @db --stage snapshots",
    "deploy-guard plan --all --json > plan.json",
))  # fmt: skip
@host_arguments
@all_option
@stage_option
@parallel_option
@show_trace_option
@common_options
def plan(common: Common, hosts: tuple[str, ...], all_hosts: bool, stages: tuple[str, ...],
         parallel: int | None, show_trace: bool) -> int:  # fmt: skip
    """Show which units each stage would run on each HOST, and where the guard and the
    deploy log in. Starts nothing."""
    config, targets = load_targets(common, hosts, stages, all_hosts, show_trace=show_trace)
    return show_plan(common, config, targets, parallel)


def plan_with_destinations(
    config: Config, targets: tuple[HostTarget, ...], parallel: int | None, tool: str
) -> tuple[list[PlanResult], dict[str, tuple[str, str]]]:
    """Each host's plan, and its guard and deploy destinations as `plan` shows them."""
    from deploy_guard.deploy.check import routes  # noqa: PLC0415
    from deploy_guard.guard.engine import plan_hosts  # noqa: PLC0415

    results = plan_hosts(targets, connector(config), parallel or config.parallel)
    destinations = {}
    for name, route in routes(targets, tool, config.deploy.guard_user).items():
        deploy = route.deploy if route.problem is None else f"NONE: {route.problem}"
        destinations[name] = (route.guard, deploy)
    return list(results), destinations


def show_plan(common: Common, config: Config, targets: tuple[HostTarget, ...],
              parallel: int | None) -> int:  # fmt: skip
    from deploy_guard.observe import report  # noqa: PLC0415
    from deploy_guard.render import print_plan  # noqa: PLC0415

    results, destinations = plan_with_destinations(config, targets, parallel,
                                                   config.deploy.tool)  # fmt: skip
    if common.json:
        click.echo(report.dumps(report.plan_json(results, destinations)), nl=False)
    print_plan(console(common), results, destinations)
    return int(ExitCode.CRITICAL if any(r.error for r in results) else ExitCode.OK)


def guard_hosts(
    common: Common, config: Config, targets: tuple[HostTarget, ...], command: str,
    parallel: int | None, max_age: float | None = None, cancel_remote: bool = False,
) -> RunReport:  # fmt: skip
    """Run the stages on every target with the live view or log lines; returns the report.

    The first Ctrl-C stops the watching and yields the partial report (exit 130; backups
    already started keep running unless ``cancel_remote``); a second one exits at once.
    """
    from deploy_guard.clock import SystemClock  # noqa: PLC0415
    from deploy_guard.guard.engine import RunRequest, run_hosts  # noqa: PLC0415

    engine_settings = replace(settings(config, max_age), cancel_remote=cancel_remote)
    request = RunRequest(command, targets, parallel or config.parallel, engine_settings)
    output = renderer(common, console(common))
    cancel = threading.Event()

    def on_interrupt(_signal: int, _frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        what = "stopping the backups in flight" if cancel_remote else "backups keep running"
        sys.stderr.write(f"\ninterrupted: finishing the report ({what}); "
                         "Ctrl-C again to exit at once\n")  # fmt: skip

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        return run_hosts(request, connector(config), SystemClock(), output, cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
        output.close()


cancel_remote_option = click.option(
    "--cancel-remote", is_flag=True,
    help="On Ctrl-C, stop the backups in flight instead of leaving them to finish.",
)  # fmt: skip


def finish(
    common: Common, config: Config, targets: tuple[HostTarget, ...], result: RunReport
) -> RunReport:
    """After the verdict: notifications, metrics and receipts (their failures are warnings,
    never a verdict), then the report is saved."""
    from rich.text import Text  # noqa: PLC0415

    from deploy_guard.observe.run import git_revision, observe  # noqa: PLC0415

    revision = git_revision(Path.cwd())
    warnings = observe(result, config, targets, connector(config), git_revision=revision)
    output = console(common)
    for warning in warnings:
        output.print(Text(f"warning: {warning}", style="yellow"))
    config_file = str(config.source) if config.source else None
    result = replace(result, warnings=(*result.warnings, *warnings), config_file=config_file)
    save(common, result)
    return result


def save(common: Common, result: RunReport) -> str | None:
    """Save the report; a failure to save is a warning, never a verdict."""
    from deploy_guard.observe import report  # noqa: PLC0415

    try:
        path = report.save_run(result, os.environ)
    except OSError as exc:
        console(common).print(f"warning: could not save the report: {exc}", style="yellow")
        return None
    log.info("report saved to %s", path)
    return str(path)


@click.command(epilog=examples(
    "deploy-guard run forge",
    "deploy-guard run --on @prod --stage snapshots --limit 8",
    "deploy-guard run --all --max-age 6h --json > report.json",
))  # fmt: skip
@host_arguments
@all_option
@stage_option
@parallel_option
@max_age_option
@cancel_remote_option
@click.option("--dry-run", is_flag=True, help="Same as 'plan': show what would run.")
@show_trace_option
@common_options
def run(common: Common, hosts: tuple[str, ...], all_hosts: bool, stages: tuple[str, ...],
        parallel: int | None, max_age: float | None, cancel_remote: bool,
        dry_run: bool, show_trace: bool) -> int:  # fmt: skip
    """Run every backup stage on each HOST now and report what really happened."""
    config, targets = load_targets(common, hosts, stages, all_hosts, show_trace=show_trace)
    if dry_run:
        return show_plan(common, config, targets, parallel)
    from deploy_guard.observe import report  # noqa: PLC0415
    from deploy_guard.render import print_summary  # noqa: PLC0415

    result = guard_hosts(common, config, targets, "run", parallel, max_age, cancel_remote)
    result = finish(common, config, targets, result)
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    print_summary(console(common), result, log_lines=5)
    return int(result.exit_code)
