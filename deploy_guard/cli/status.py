"""`status`: the last run of every backup unit, read from systemd; changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.table import Table
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
    parallel_option,
    show_trace_option,
    status_max_age_option,
)
from deploy_guard.durations import format_duration
from deploy_guard.errors import ExitCode
from deploy_guard.guard.status import HostStatus, hosts_status
from deploy_guard.observe import report
from deploy_guard.render import say


def status_json(statuses: Sequence[HostStatus], max_age: float | None) -> report.Json:
    hosts = []
    for host in statuses:
        units = []
        for unit in host.units:
            last = unit.last
            units.append(
                {
                    "unit": unit.unit,
                    "stage": unit.stage,
                    "result": last.result if last else None,
                    "succeeded": last.succeeded if last else None,
                    "invocation_id": last.invocation_id if last else None,
                    "finished_at": report.time_text(last.finished_at) if last else None,
                    "age_s": unit.age_s,
                    "duration_s": unit.duration_s,
                    "running": unit.running,
                    "fresh": unit.fresh_within(max_age) if max_age is not None else None,
                }
            )
        hosts.append(
            {
                "host": host.host,
                "error": host.error,
                "checked_at": report.time_text(host.checked_at),
                "units": units,
            }
        )
    return {
        "schema": report.SCHEMA_VERSION,
        "command": "status",
        "max_age_s": max_age,
        "hosts": hosts,
    }


def _print(common: Common, statuses: Sequence[HostStatus], max_age: float | None) -> None:
    output = console(common)
    for host in statuses:
        if host.error:
            say(output, f"{host.host}: {host.error}", "bold red")
            continue
        table = Table(title=host.host, title_justify="left")
        for column in ("stage", "unit", "last result", "ended", "took", ""):
            table.add_column(column)
        for unit in host.units:
            last = unit.last
            stale = max_age is not None and not unit.fresh_within(max_age)
            good = last is not None and last.succeeded and not stale
            result = Text(last.result if last else "no record", style="green" if good else "red")
            ago = f"{format_duration(unit.age_s)} ago" if unit.age_s is not None else ""
            took = format_duration(unit.duration_s) if unit.duration_s is not None else ""
            table.add_row(
                unit.stage, unit.unit, result, ago, took, "running now" if unit.running else ""
            )
        output.print(table)


@click.command(
    epilog=examples(
        "deploy-guard status forge",
        "deploy-guard status --all --max-age 26h",
        "deploy-guard status --on @db --json",
    )
)
@host_arguments
@all_option
@parallel_option
@status_max_age_option
@show_trace_option
@common_options
def status(
    common: Common,
    hosts: tuple[str, ...],
    all_hosts: bool,
    parallel: int | None,
    max_age: float | None,
    show_trace: bool,
) -> int:
    """Show each backup unit's last run on each HOST. Starts nothing.

    With --max-age, exit 0 only when every unit succeeded within that age (else 1).
    """
    config, targets = load_targets(common, hosts, (), all_hosts, show_trace=show_trace)
    statuses = hosts_status(targets, connector(config), parallel or config.parallel)
    if common.json:
        click.echo(report.dumps(status_json(statuses, max_age)), nl=False)
    _print(common, statuses, max_age)
    if any(host.error for host in statuses):
        return int(ExitCode.CRITICAL)
    if max_age is not None:
        stale = [unit for host in statuses for unit in host.units if not unit.fresh_within(max_age)]
        return int(ExitCode.PARTIAL if stale else ExitCode.OK)
    return int(ExitCode.OK)
