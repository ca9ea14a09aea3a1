"""Human output on stderr: a live view on a terminal, timestamped lines otherwise, and the
final summary. Results for machines go to stdout as JSON (report.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deploy_guard.durations import format_duration
from deploy_guard.engine import PlanResult
from deploy_guard.events import (
    Event,
    HostConnecting,
    HostFinished,
    HostPlanned,
    HostWarning,
    StageFinished,
    StageStarted,
    UnitFinished,
    UnitStarted,
    UnitStopping,
)
from deploy_guard.model import Outcome, RunReport, UnitResult
from deploy_guard.verify import HostVerification

_STYLE = {
    Outcome.SUCCEEDED: "green",
    Outcome.FRESH: "green",
    Outcome.FAILED: "bold red",
    Outcome.TIMED_OUT: "bold red",
    Outcome.UNKNOWN: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.NOT_STARTED: "dim",
}
EXIT_MEANING = {0: "all backups succeeded", 1: "partial failure", 2: "critical failure",
                3: "configuration or usage error", 4: "the deploy command failed",
                130: "interrupted"}  # fmt: skip


def _describe(result: UnitResult) -> str:
    parts = [result.outcome.value]
    if result.outcome is Outcome.FRESH and result.age_s is not None:
        parts.append(f"(last success {format_duration(result.age_s)} ago, not run again)")
    if result.joined:
        parts.append("(joined a run already in progress)")
    if not result.outcome.is_success:
        details = [
            f"result={result.result}" if result.result else "",
            f"status={result.exit_status}" if result.exit_status not in (None, 0) else "",
        ]
        parts += [detail for detail in details if detail]
        if result.reason:
            parts.append(f"- {result.reason}")
    elif result.artifact is not None:
        found = result.artifact
        parts.append(f"({found.kind} {found.status.value}{f' {found.id}' if found.id else ''})")
    return " ".join(parts)


class LineRenderer:
    """One timestamped line per event: for logs, CI and anything that is not a terminal."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._lock = threading.Lock()

    def _line(self, host: str, text: str, style: str = "") -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self._lock:
            self.console.print(Text(f"{stamp} [{host}] ") + Text(text, style=style),
                               highlight=False, soft_wrap=True)  # fmt: skip

    def __call__(self, event: Event) -> None:
        if self.quiet and not isinstance(event, HostWarning):
            return
        match event:
            case HostConnecting(host, destination):
                self._line(host, f"connecting to {destination}")
            case HostPlanned(host, plan):
                total = sum(len(stage.units) for stage in plan.stages)
                self._line(host, f"{total} backup units in {len(plan.stages)} stages")
            case StageStarted(host, stage):
                self._line(host, f"stage {stage.name}: {len(stage.units)} units, "
                                 f"deadline {format_duration(stage.timeout_s)} each")  # fmt: skip
            case UnitStarted(host, stage, unit, joined, _started, _deadline):
                verb = "joined running" if joined else "started"
                self._line(host, f"{stage}: {verb} {unit}")
            case UnitStopping(host, stage, unit):
                self._line(host, f"{stage}: {unit} passed its deadline; stopping it", "red")
            case UnitFinished(host, stage, result):
                self._line(host, f"{stage}: {result.unit} {_describe(result)}",
                           _STYLE[result.outcome])  # fmt: skip
            case StageFinished(host, result):
                self._line(host, f"stage {result.name}: {result.outcome.value}")
            case HostWarning(host, message):
                self._line(host, f"warning: {message}", "yellow")
            case HostFinished(result):
                self._line(result.host, f"done: exit {int(result.exit_code)}"
                           + (f" ({result.error})" if result.error else ""))  # fmt: skip

    def close(self) -> None:
        """Nothing to tear down."""


@dataclass(slots=True)
class _Row:
    host: str
    stage: str
    unit: str
    state: str
    style: str
    started: datetime | None = None
    deadline: datetime | None = None
    finished: datetime | None = None


class LiveRenderer:
    """A table per host, stage and unit with state, elapsed time and deadline, redrawn in
    place; fits a 20-minute run because it shows only durations that change."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[tuple[str, str], _Row] = {}
        self.hosts: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=4, transient=False,
                          get_renderable=self._render)  # fmt: skip
        self._live.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        match event:
            case HostConnecting(host, destination):
                self.hosts[host] = f"connecting to {destination}"
            case HostPlanned(host, plan):
                self.hosts[host] = "running"
                for stage in plan.stages:
                    for unit in stage.units:
                        self.rows[(host, unit)] = _Row(host, stage.name, unit, "waiting", "dim")
            case UnitStarted(host, stage, unit, joined, started, deadline):
                state = "joined" if joined else "running"
                self.rows[(host, unit)] = _Row(host, stage, unit, state, "cyan", started, deadline)
            case UnitStopping(host, _stage, unit) if (host, unit) in self.rows:
                self.rows[(host, unit)].state = "stopping (deadline)"
            case UnitFinished(host, stage, result):
                row = self.rows.setdefault((host, result.unit), _Row(host, stage, result.unit,
                                                                     "", ""))  # fmt: skip
                row.state, row.style = result.outcome.value, _STYLE[result.outcome]
                row.finished = datetime.now(UTC)
            case HostFinished(result):
                self.hosts[result.host] = f"exit {int(result.exit_code)}" + (
                    f": {result.error}" if result.error else "")  # fmt: skip
            case _:
                pass

    def _render(self) -> Group:
        with self._lock:
            now = datetime.now(UTC)
            tables = []
            for host, status in self.hosts.items():
                table = Table(title=f"{host}  {status}", title_justify="left", expand=False)
                for column in ("stage", "unit", "state", "elapsed", "deadline in"):
                    table.add_column(column)
                for row in (r for r in self.rows.values() if r.host == host):
                    end = row.finished or now
                    elapsed = (
                        format_duration((end - row.started).total_seconds()) if row.started else ""
                    )
                    left = ""
                    if row.deadline and not row.finished:
                        left = format_duration(max(0.0, (row.deadline - now).total_seconds()))
                    table.add_row(row.stage, row.unit, Text(row.state, style=row.style),
                                  elapsed, left)  # fmt: skip
                tables.append(table)
            return Group(*tables)

    def close(self) -> None:
        self._live.stop()


def print_summary(console: Console, report: RunReport, log_lines: int = 5,
                  *, final: bool = True) -> None:  # fmt: skip
    """Always printed: each failure with its reason and the last lines of its run's log."""
    console.print()
    for host in report.hosts:
        if host.error:
            console.print(Text(f"{host.host}: {host.error}", style="bold red"))
        for stage in host.stages:
            for unit in stage.units:
                if unit.outcome.is_success:
                    continue
                console.print(Text(f"{host.host} {stage.name} {unit.unit}: {_describe(unit)}",
                                   style=_STYLE[unit.outcome]))  # fmt: skip
                for line in unit.log_tail[-log_lines:]:
                    console.print(Text(f"    | {line}", style="dim"), highlight=False)
            if stage.reason and not stage.units:
                console.print(Text(f"{host.host} {stage.name}: {stage.reason}", style="yellow"))
        units = [unit for stage in host.stages for unit in stage.units]
        succeeded = sum(unit.outcome.is_success for unit in units)
        fresh = sum(unit.outcome is Outcome.FRESH for unit in units)
        note = f" ({fresh} fresh)" if fresh else ""
        console.print(f"{host.host}: {succeeded}/{len(units)} units succeeded{note}, "
                      f"exit {int(host.exit_code)}")  # fmt: skip
    if final:
        _final_line(console, report)


def _final_line(console: Console, report: RunReport) -> None:
    code = int(report.exit_code)
    meaning = "deployed" if code == 0 and report.deploy else EXIT_MEANING.get(code, "error")
    style = "bold green" if code == 0 else "bold red"
    console.print(Text(f"deploy-guard: exit {code} ({meaning}); run {report.run_id}", style=style))


def print_deploy(console: Console, report: RunReport, warnings: Sequence[str] = ()) -> None:
    """After `apply`: the override, what was deployed, skipped or refused, and the exit."""
    for warning in warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    if report.override is not None:
        override = report.override
        console.print(Text(f"OVERRIDE by {override.by}: {override.reason} (recorded in the audit "
                           "log and each host's journal)", style="bold yellow"))  # fmt: skip
    deploy = report.deploy
    if deploy is not None and deploy.refused and report.exit_code == 130:
        console.print(Text("interrupted: nothing was deployed.", style="bold red"))
    elif deploy is not None and deploy.refused:
        console.print(Text("deploy refused: the guard did not pass on "
                           f"{', '.join(deploy.skipped_hosts)}; nothing was deployed. "
                           "Fix the backups, or deploy the hosts that passed with "
                           "--keep-going, or --override REASON.", style="bold red"))  # fmt: skip
    elif deploy is not None:
        if deploy.skipped_hosts:
            console.print(Text(f"skipped (guard failed): {', '.join(deploy.skipped_hosts)}",
                               style="bold red"))  # fmt: skip
        for step in deploy.steps:
            status = "not run" if step.exit_code is None else f"exit {step.exit_code}"
            style = "green" if step.exit_code == 0 else "bold red"
            console.print(Text(f"deploy {', '.join(step.hosts)}: {' '.join(step.argv)}: {status}",
                               style=style), soft_wrap=True)  # fmt: skip
    _print_verification(console, report)
    _final_line(console, report)


def _print_verification(console: Console, report: RunReport) -> None:
    """`apply`: each deployed host's health after the deploy, and any rollback."""
    for host in report.hosts:
        verification = host.verification
        if not isinstance(verification, HostVerification):
            continue
        verify = verification.verify
        if verify.ok:
            console.print(Text(f"{host.host}: healthy after the deploy", style="green"))
            continue
        console.print(Text(f"{host.host}: UNHEALTHY after the deploy", style="bold red"))
        for unit in verify.new_failed_units:
            console.print(Text(f"    new failed unit {unit.unit} ({unit.result})", style="red"))
            for line in unit.log_tail[-5:]:
                console.print(Text(f"      | {line}", style="dim"), highlight=False)
        for check in verify.failed_checks:
            console.print(Text(f"    check {check.name} failed after {check.attempts} tries: "
                               f"{check.message}", style="red"))  # fmt: skip
        for problem in verify.problems:
            console.print(Text(f"    {problem}", style="red"))
        if verification.rollback is not None:
            state = "rolled back" if verification.rollback.ok else "ROLLBACK FAILED"
            after = verification.after_rollback
            healthy = " and healthy again" if after is not None and after.ok else ""
            console.print(Text(f"    {state}{healthy}", style="yellow"))


def print_plan(console: Console, plans: Sequence[PlanResult]) -> None:
    """The human form of `plan`."""
    for result in plans:
        if result.plan is None:
            console.print(Text(f"{result.host}: {result.error}", style="bold red"))
            continue
        console.print(Text(result.host, style="bold"))
        for number, stage in enumerate(result.plan.stages, 1):
            flags = ", critical" if stage.critical else ""
            flags += ", units from the host's manifest" if stage.source == "manifest" else ""
            console.print(f"  {number}. {stage.name} (deadline {format_duration(stage.timeout_s)}"
                          f"{flags})")  # fmt: skip
            for unit in stage.units:
                console.print(f"       run      {unit}")
                if unit in result.proofs:
                    console.print(Text(f"         proof  {result.proofs[unit]}", style="dim"))
            for excluded in stage.excluded:
                console.print(
                    Text(f"       exclude  {excluded.unit}: {excluded.reason}", style="dim")
                )
            for pattern in stage.unmatched:
                console.print(Text(f"       no match {pattern}", style="yellow"))
            if not stage.units:
                console.print(Text("       (no unit)", style="yellow"))
