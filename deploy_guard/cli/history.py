"""`history`: past runs and overrides, newest first (README, "History")."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import click

from deploy_guard.cli.common import Common, common_options, console, examples
from deploy_guard.cli.complete import complete_hosts
from deploy_guard.errors import ExitCode
from deploy_guard.observe import report
from deploy_guard.observe.history import HistoryEntry, load_history, select
from deploy_guard.render import EXIT_MEANING, say


def describe(entry: HistoryEntry) -> str:
    """The outcome in words: the exit code's meaning, refined by what the command did."""
    code = entry.exit_code
    if code is None:
        return "no report (only the audit log knows this run)"
    if entry.override is not None and code == 0:
        done = (
            "; deployed" if entry.deployed else "; push allowed" if entry.command == "hook" else ""
        )
        return "guard failed, overridden" + done
    if code == 0 and entry.deployed:
        return "deployed"
    meaning = EXIT_MEANING.get(code, "error")
    if entry.command == "hook":
        return "push allowed" if code == 0 else f"{meaning}; push blocked"
    return meaning


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    override = entry.override
    return {
        "run_id": entry.run_id,
        "command": entry.command,
        "started_at": _time(entry.started_at),
        "finished_at": _time(entry.finished_at),
        "hosts": list(entry.hosts),
        "exit_code": entry.exit_code,
        "outcome": describe(entry),
        "override": None
        if override is None
        else {
            "reason": override.reason,
            "by": override.by,
            "at": _time(override.at),
            "audited": override.audited,
        },
        "failures": list(entry.failures),
        "report": str(entry.report) if entry.report else None,
    }


def _line(entry: HistoryEntry) -> str:
    code = "exit ?" if entry.exit_code is None else f"exit {entry.exit_code}"
    return (
        f"{_time(entry.started_at)}  {entry.command or '?'}  {', '.join(entry.hosts) or '-'}"
        f"  {code} ({describe(entry)})  {entry.run_id}"
    )


@click.command(
    epilog=examples(
        "deploy-guard history",
        "deploy-guard history --host forge --limit 5",
        "deploy-guard history --json",
    )
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    shell_complete=complete_hosts,
    help="Only runs that guarded HOST (a name or glob; repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many runs, newest first (0: all).",
)
@common_options
def history(common: Common, hosts: tuple[str, ...], limit: int) -> int:
    """Past runs (run, apply, hook) and their overrides, newest first."""
    entries, warnings = load_history(report.state_dir(os.environ))
    errors = console(common)
    for warning in warnings:
        say(errors, f"warning: {warning}", "yellow", soft_wrap=True)
    chosen = select(entries, hosts, limit)
    if common.json:
        document = {
            "schema": report.SCHEMA_VERSION,
            "command": "history",
            "runs": [entry_json(entry) for entry in chosen],
        }
        click.echo(report.dumps(document), nl=False)
        return int(ExitCode.OK)
    if not chosen:
        say(errors, "no runs recorded" + (f" for {', '.join(hosts)}" if hosts else ""))
    for entry in chosen:
        click.echo(_line(entry))
        if entry.override is not None:
            where = "audit log" if entry.override.audited else "report only, not in the audit log"
            click.echo(f"    override by {entry.override.by}: {entry.override.reason} ({where})")
    return int(ExitCode.OK)
