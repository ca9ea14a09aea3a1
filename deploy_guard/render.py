"""Human output on stderr: a live view on a terminal, timestamped lines otherwise, and the
final summary. Results for machines go to stdout as JSON (report.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from deploy_guard.durations import format_duration
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
from deploy_guard.fleetview import STYLE, FleetState, compact_rows, fits_in_detail
from deploy_guard.guard.engine import PlanResult
from deploy_guard.model import BuildOutcome, DeployStep, Outcome, RunReport, UnitResult
from deploy_guard.transport.base import quote_argv

_STYLE = STYLE  # outcome -> rich style, shared with the live view
EXIT_MEANING = {
    0: "all backups succeeded",
    1: "partial failure",
    2: "critical failure",
    3: "configuration or usage error",
    4: "the deploy command failed",
    5: "unhealthy after the deploy",
    130: "interrupted",
}


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


def say(console: Console, text: str, style: str = "", *, soft_wrap: bool | None = None) -> None:
    """One message in one style, as text: rich markup in it is not read (a unit or host name,
    a reason from a host, can hold brackets)."""
    console.print(Text(text, style=style), soft_wrap=soft_wrap)


class LineRenderer:
    """One timestamped line per event: for logs, CI and anything that is not a terminal."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._lock = threading.Lock()

    def _line(self, host: str, text: str, style: str = "") -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self._lock:
            self.console.print(
                Text(f"{stamp} [{host}] ") + Text(text, style=style),
                highlight=False,
                soft_wrap=True,
            )

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
                self._line(
                    host,
                    f"stage {stage.name}: {len(stage.units)} units, "
                    f"deadline {format_duration(stage.timeout_s)} each",
                )
            case UnitStarted(host, stage, unit, joined, _started, _deadline):
                verb = "joined running" if joined else "started"
                self._line(host, f"{stage}: {verb} {unit}")
            case UnitStopping(host, stage, unit):
                self._line(host, f"{stage}: {unit} passed its deadline; stopping it", "red")
            case UnitFinished(host, stage, result):
                self._line(
                    host, f"{stage}: {result.unit} {_describe(result)}", _STYLE[result.outcome]
                )
            case StageFinished(host, result):
                self._line(host, f"stage {result.name}: {result.outcome.value}")
            case HostWarning(host, message):
                self._line(host, f"warning: {message}", "yellow")
            case HostFinished(result):
                self._line(
                    result.host,
                    f"done: exit {int(result.exit_code)}"
                    + (f" ({result.error})" if result.error else ""),
                )

    def close(self) -> None:
        """Nothing to tear down."""


class LiveRenderer:
    """Redrawn in place on a terminal: a table per host with each unit's state, elapsed time
    and deadline when that fits the terminal, else one row per host (stage, progress bar,
    failures) with only the failed units of failing hosts under it (`fleetview`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = FleetState()
        self._lock = threading.Lock()
        self._live = Live(
            console=console, refresh_per_second=4, transient=False, get_renderable=self._render
        )
        self._live.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.state.apply(event, datetime.now(UTC))

    def _render(self) -> Group | Table:
        with self._lock:
            if fits_in_detail(self.state, self.console.size.height):
                return detail_view(self.state, datetime.now(UTC))
            return fleet_view(self.state)

    def close(self) -> None:
        self._live.stop()


def detail_view(state: FleetState, now: datetime) -> Group:
    """A table per host, a row per unit: for a few hosts."""
    tables = []
    for host in state.hosts.values():
        table = Table(title=f"{host.host}  {host.status}", title_justify="left", expand=False)
        for column in ("stage", "unit", "state", "elapsed", "deadline in"):
            table.add_column(column)
        for row in host.units.values():
            end = row.finished or now
            elapsed = format_duration((end - row.started).total_seconds()) if row.started else ""
            left = ""
            if row.deadline and not row.finished:
                left = format_duration(max(0.0, (row.deadline - now).total_seconds()))
            table.add_row(row.stage, row.unit, Text(row.state, style=row.style), elapsed, left)
        tables.append(table)
    return Group(*tables)


def fleet_view(state: FleetState) -> Table:
    """One row per host, failed units under their host: for a fleet."""
    table = Table(expand=False, box=None, pad_edge=False)
    for column in ("host", "stage", "units done", "", "failed", "status"):
        table.add_column(column)
    for row in compact_rows(state):
        if row.unit:
            table.add_row(
                "",
                Text(row.stage, style="dim"),
                Text(f"  {row.unit}", style="red"),
                "",
                "",
                Text(row.status, style="bold red"),
            )
            continue
        bar = ProgressBar(total=max(row.total, 1), completed=row.done, width=20)
        failed = Text(str(row.failed), style="bold red" if row.failed else "green")
        table.add_row(row.host, row.stage, bar, f"{row.done}/{row.total}", failed, row.status)
    return table


def print_summary(
    console: Console, report: RunReport, log_lines: int = 5, *, final: bool = True
) -> None:
    """Always printed: each failure with its reason and the last lines of its run's log."""
    console.print()
    for host in report.hosts:
        if not host.stages:  # never connected, or failed before planning: nothing was run
            error = f": {host.error}" if host.error else ""
            say(
                console, f"{host.host}: not reached (exit {int(host.exit_code)}){error}", "bold red"
            )
            continue
        if host.error:
            say(console, f"{host.host}: {host.error}", "bold red")
        for stage in host.stages:
            for unit in stage.units:
                if unit.outcome.is_success:
                    continue
                say(
                    console,
                    f"{host.host} {stage.name} {unit.unit}: {_describe(unit)}",
                    _STYLE[unit.outcome],
                )
                for line in unit.log_tail[-log_lines:]:
                    console.print(Text(f"    | {line}", style="dim"), highlight=False)
            if stage.reason and not stage.units:
                say(console, f"{host.host} {stage.name}: {stage.reason}", "yellow")
        units = [unit for stage in host.stages for unit in stage.units]
        succeeded = sum(unit.outcome.is_success for unit in units)
        fresh = sum(unit.outcome is Outcome.FRESH for unit in units)
        note = f" ({fresh} fresh)" if fresh else ""
        console.print(
            f"{host.host}: {succeeded}/{len(units)} units succeeded{note}, "
            f"exit {int(host.exit_code)}"
        )
    if final:
        _final_line(console, report)


def _final_line(console: Console, report: RunReport) -> None:
    code = int(report.exit_code)
    meaning = "deployed" if code == 0 and report.deploy else EXIT_MEANING.get(code, "error")
    style = "bold green" if code == 0 else "bold red"
    say(console, f"deploy-guard: exit {code} ({meaning}); run {report.run_id}", style)


def print_deploy(console: Console, report: RunReport, warnings: Sequence[str] = ()) -> None:
    """After `apply`: the override, what was deployed, skipped or refused, and the exit."""
    for warning in warnings:
        say(console, f"warning: {warning}", "yellow")
    if report.override is not None:
        override = report.override
        say(
            console,
            f"OVERRIDE by {override.by}: {override.reason} (recorded in the audit "
            "log and each host's journal)",
            "bold yellow",
        )
    deploy = report.deploy
    build = deploy.build if deploy is not None else None
    if build is not None:
        _print_build(console, build)
    if build is not None and build.exit_code not in (None, 0):
        say(
            console,
            "build failed: nothing was started on the hosts and nothing was deployed.",
            "bold red",
        )
    elif deploy is not None and deploy.refused and report.exit_code == 130:
        say(console, "interrupted: nothing was deployed.", "bold red")
    elif deploy is not None and deploy.refused:
        say(
            console,
            "deploy refused: the guard did not pass on "
            f"{', '.join(deploy.skipped_hosts)}; nothing was deployed. "
            "Fix the backups, or deploy the hosts that passed with "
            "--keep-going, or --override REASON.",
            "bold red",
        )
    elif deploy is not None:
        if deploy.skipped_hosts:
            say(console, f"skipped (guard failed): {', '.join(deploy.skipped_hosts)}", "bold red")
        _print_steps(console, "deploy", deploy.steps)
    _print_verification(console, report)
    _final_line(console, report)


def _print_steps(console: Console, what: str, steps: Sequence[DeployStep]) -> None:
    """One line per command of the build or the deploy: its hosts, argv and exit status."""
    for step in steps:
        status = "not run" if step.exit_code is None else f"exit {step.exit_code}"
        style = "green" if step.exit_code == 0 else "bold red"
        text = f"{what} {', '.join(step.hosts)}: {' '.join(step.argv)}: {status}"
        say(console, text, style, soft_wrap=True)


def _print_build(console: Console, build: BuildOutcome) -> None:
    _print_steps(console, "build", build.steps)
    console.print(f"build took {format_duration(build.duration_s)}")


def print_commands(console: Console, verb: str, argvs: Sequence[Sequence[str]]) -> None:
    """`apply --dry-run`: the commands that would run, one per line, quoted for a shell."""
    for argv in argvs:
        say(console, f"would {verb}: {quote_argv(argv)}", soft_wrap=True)


def _print_verification(console: Console, report: RunReport) -> None:
    """`apply`: each deployed host's health after the deploy, and any rollback."""
    for host in report.hosts:
        verification = host.verification
        if verification is None:
            continue
        verify = verification.verify
        if verify.ok:
            say(console, f"{host.host}: healthy after the deploy", "green")
            continue
        say(console, f"{host.host}: UNHEALTHY after the deploy", "bold red")
        for unit in verify.new_failed_units:
            say(console, f"    new failed unit {unit.unit} ({unit.result})", "red")
            for line in unit.log_tail[-5:]:
                console.print(Text(f"      | {line}", style="dim"), highlight=False)
        for check in verify.failed_checks:
            say(
                console,
                f"    check {check.name} failed after {check.attempts} tries: {check.message}",
                "red",
            )
        for problem in verify.problems:
            say(console, f"    {problem}", "red")
        if verification.rollback is not None:
            state = "rolled back" if verification.rollback.ok else "ROLLBACK FAILED"
            after = verification.after_rollback
            healthy = " and healthy again" if after is not None and after.ok else ""
            say(console, f"    {state}{healthy}", "yellow")


def print_plan(
    console: Console,
    plans: Sequence[PlanResult],
    destinations: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """The human form of `plan`; ``destinations``: each host's guard and deploy destination."""
    for result in plans:
        if result.plan is None:
            say(console, f"{result.host}: {result.error}", "bold red")
            continue
        say(console, result.host, "bold")
        if destinations is not None and result.host in destinations:
            guard, deploy = destinations[result.host]
            console.print(f"  guard as   {guard}", soft_wrap=True)
            console.print(f"  deploy via {deploy}", soft_wrap=True)
        for number, stage in enumerate(result.plan.stages, 1):
            flags = ", critical" if stage.critical else ""
            flags += ", units from the host's manifest" if stage.source == "manifest" else ""
            console.print(
                f"  {number}. {stage.name} (deadline {format_duration(stage.timeout_s)}{flags})"
            )
            for unit in stage.units:
                console.print(f"       run      {unit}")
                if unit in result.proofs:
                    say(console, f"         proof  {result.proofs[unit]}", "dim")
            for excluded in stage.excluded:
                say(console, f"       exclude  {excluded.unit}: {excluded.reason}", "dim")
            for pattern in stage.unmatched:
                say(console, f"       no match {pattern}", "yellow")
            if not stage.units:
                say(console, "       (no unit)", "yellow")
