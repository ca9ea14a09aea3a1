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

_STYLE = {
    Outcome.SUCCEEDED: "green",
    Outcome.FAILED: "bold red",
    Outcome.TIMED_OUT: "bold red",
    Outcome.UNKNOWN: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.NOT_STARTED: "dim",
}
EXIT_MEANING = {0: "all backups succeeded", 1: "partial failure", 2: "critical failure",
                130: "interrupted"}  # fmt: skip


def _describe(result: UnitResult) -> str:
    parts = [result.outcome.value]
    if result.joined:
        parts.append("(joined a run already in progress)")
    if result.outcome is not Outcome.SUCCEEDED:
        details = [
            f"result={result.result}" if result.result else "",
            f"status={result.exit_status}" if result.exit_status not in (None, 0) else "",
        ]
        parts += [detail for detail in details if detail]
        if result.reason:
            parts.append(f"- {result.reason}")
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


def print_summary(console: Console, report: RunReport, log_lines: int = 5) -> None:
    """Always printed: each failure with its reason and the last lines of its run's log."""
    console.print()
    for host in report.hosts:
        if host.error:
            console.print(Text(f"{host.host}: {host.error}", style="bold red"))
        for stage in host.stages:
            for unit in stage.units:
                if unit.outcome is Outcome.SUCCEEDED:
                    continue
                console.print(Text(f"{host.host} {stage.name} {unit.unit}: {_describe(unit)}",
                                   style=_STYLE[unit.outcome]))  # fmt: skip
                for line in unit.log_tail[-log_lines:]:
                    console.print(Text(f"    | {line}", style="dim"), highlight=False)
            if stage.reason and not stage.units:
                console.print(Text(f"{host.host} {stage.name}: {stage.reason}", style="yellow"))
        succeeded = sum(u.outcome is Outcome.SUCCEEDED for s in host.stages for u in s.units)
        total = sum(len(s.units) for s in host.stages)
        console.print(
            f"{host.host}: {succeeded}/{total} units succeeded, exit {int(host.exit_code)}"
        )
    code = int(report.exit_code)
    style = "bold green" if code == 0 else "bold red"
    console.print(Text(f"deploy-guard: exit {code} ({EXIT_MEANING.get(code, 'error')}); "
                       f"run {report.run_id}", style=style))  # fmt: skip


def print_plan(console: Console, plans: Sequence[PlanResult]) -> None:
    """The human form of `plan`."""
    for result in plans:
        if result.plan is None:
            console.print(Text(f"{result.host}: {result.error}", style="bold red"))
            continue
        console.print(Text(result.host, style="bold"))
        for number, stage in enumerate(result.plan.stages, 1):
            flags = ", critical" if stage.critical else ""
            console.print(f"  {number}. {stage.name} (deadline {format_duration(stage.timeout_s)}"
                          f"{flags})")  # fmt: skip
            for unit in stage.units:
                console.print(f"       run      {unit}")
            for excluded in stage.excluded:
                console.print(
                    Text(f"       exclude  {excluded.unit}: {excluded.reason}", style="dim")
                )
            for pattern in stage.unmatched:
                console.print(Text(f"       no match {pattern}", style="yellow"))
            if not stage.units:
                console.print(Text("       (no unit)", style="yellow"))
