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
    host_arguments,
    load_targets,
    max_age_option,
    parallel_option,
    renderer,
    settings,
    stage_option,
)
from deploy_guard.errors import ExitCode

if TYPE_CHECKING:  # the rest is imported where used: `run --help` must stay instant
    from deploy_guard.config import Config
    from deploy_guard.engine import HostTarget
    from deploy_guard.model import RunReport

log = logging.getLogger(__name__)


@click.command()
@host_arguments
@all_option
@stage_option
@parallel_option
@common_options
def plan(common: Common, hosts: tuple[str, ...], all_hosts: bool, stages: tuple[str, ...],
         parallel: int | None) -> int:  # fmt: skip
    """Show which units each stage would run on each HOST. Starts nothing."""
    return show_plan(common, hosts, all_hosts, stages, parallel)


def show_plan(common: Common, hosts: tuple[str, ...], all_hosts: bool, stages: tuple[str, ...],
              parallel: int | None) -> int:  # fmt: skip
    from deploy_guard import report  # noqa: PLC0415
    from deploy_guard.engine import plan_hosts  # noqa: PLC0415
    from deploy_guard.render import print_plan  # noqa: PLC0415

    config, targets = load_targets(common, hosts, stages, all_hosts)
    results = plan_hosts(targets, connector(config), parallel or config.parallel)
    if common.json:
        click.echo(report.dumps(report.plan_json(results)), nl=False)
    print_plan(console(common), results)
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
    from deploy_guard.engine import RunRequest, run_hosts  # noqa: PLC0415

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

    from deploy_guard.observe import git_revision, observe  # noqa: PLC0415

    revision = git_revision(Path.cwd())
    warnings = observe(result, config, targets, connector(config), git_revision=revision)
    output = console(common)
    for warning in warnings:
        output.print(Text(f"warning: {warning}", style="yellow"))
    result = replace(result, warnings=(*result.warnings, *warnings))
    save(common, result)
    return result


def save(common: Common, result: RunReport) -> str | None:
    """Save the report; a failure to save is a warning, never a verdict."""
    from deploy_guard import report  # noqa: PLC0415

    try:
        path = report.save_run(result, os.environ)
    except OSError as exc:
        console(common).print(f"warning: could not save the report: {exc}", style="yellow")
        return None
    log.info("report saved to %s", path)
    return str(path)


@click.command()
@host_arguments
@all_option
@stage_option
@parallel_option
@max_age_option
@cancel_remote_option
@click.option("--dry-run", is_flag=True, help="Same as 'plan': show what would run.")
@common_options
def run(common: Common, hosts: tuple[str, ...], all_hosts: bool, stages: tuple[str, ...],
        parallel: int | None, max_age: float | None, cancel_remote: bool,
        dry_run: bool) -> int:  # fmt: skip
    """Run every backup stage on each HOST now and report what really happened."""
    if dry_run:
        return show_plan(common, hosts, all_hosts, stages, parallel)
    from deploy_guard import report  # noqa: PLC0415
    from deploy_guard.render import print_summary  # noqa: PLC0415

    config, targets = load_targets(common, hosts, stages, all_hosts)
    result = guard_hosts(common, config, targets, "run", parallel, max_age, cancel_remote)
    result = finish(common, config, targets, result)
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    print_summary(console(common), result, log_lines=5)
    return int(result.exit_code)
