"""The live view's model: what each host and unit is doing, and which layout fits.

Pure: `FleetState.apply` folds progress events into per-host progress; `compact_rows` is the
layout for a fleet (one row per host: current stage, units done, failures so far, and only
failing hosts expanded to their failed units); `fits_in_detail` says whether the per-unit
tables fit the terminal instead (issue 14: an 8-host fan-out of 15 units each was 120 rows).
`render.LiveRenderer` draws either with rich.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from deploy_guard.events import (
    Event,
    HostConnecting,
    HostFinished,
    HostPlanned,
    StageStarted,
    UnitFinished,
    UnitStarted,
    UnitStopping,
)
from deploy_guard.model import Outcome, UnitResult

# Lines a per-host rich table takes besides its unit rows: title, borders, header, rule.
TABLE_OVERHEAD: Final = 5

STYLE: Final = {
    Outcome.SUCCEEDED: "green",
    Outcome.FRESH: "green",
    Outcome.FAILED: "bold red",
    Outcome.TIMED_OUT: "bold red",
    Outcome.CANCELLED: "bold red",
    Outcome.UNKNOWN: "bold red",
    Outcome.SKIPPED: "yellow",
    Outcome.NOT_STARTED: "dim",
}


def inline_reason(result: UnitResult) -> str:
    """A finished unit's state in a few words: ``failed: exit 3``, ``failed: signal``,
    ``timed-out``, ``unknown: <why>``; a success is its outcome alone."""
    outcome = result.outcome
    if outcome.is_success or outcome is Outcome.TIMED_OUT:
        return outcome.value
    if result.exit_status not in (None, 0):
        return f"{outcome.value}: exit {result.exit_status}"
    if result.result and result.result not in ("success", "exit-code"):
        return f"{outcome.value}: {result.result}"
    if result.reason:
        return f"{outcome.value}: {result.reason}"
    return outcome.value


@dataclass(slots=True)
class UnitLine:
    """One unit of a host's plan, as the detailed view shows it."""

    stage: str
    unit: str
    state: str = "waiting"
    style: str = "dim"
    started: datetime | None = None
    deadline: datetime | None = None
    finished: datetime | None = None
    outcome: Outcome | None = None


@dataclass(slots=True)
class HostProgress:
    """One host: its status line, current stage and units in plan order."""

    host: str
    status: str
    stage: str = ""
    units: dict[str, UnitLine] = field(default_factory=dict)
    finished: bool = False

    @property
    def done(self) -> int:
        return sum(line.outcome is not None for line in self.units.values())

    @property
    def failures(self) -> list[UnitLine]:
        return [
            line
            for line in self.units.values()
            if line.outcome is not None and not line.outcome.is_success
        ]


@dataclass(slots=True)
class FleetState:
    """Every host's progress, in the order the hosts were first seen."""

    hosts: dict[str, HostProgress] = field(default_factory=dict)

    def _host(self, name: str) -> HostProgress:
        return self.hosts.setdefault(name, HostProgress(name, "waiting"))

    def apply(self, event: Event, now: datetime) -> None:
        """Fold one event in; ``now`` stamps finished units."""
        match event:
            case HostConnecting(host, destination):
                self._host(host).status = f"connecting to {destination}"
            case HostPlanned(host, plan):
                progress = self._host(host)
                progress.status = "running"
                for stage in plan.stages:
                    for unit in stage.units:
                        progress.units[unit] = UnitLine(stage.name, unit)
            case StageStarted(host, stage):
                self._host(host).stage = stage.name
            case UnitStarted(host, stage, unit, joined, started, deadline):
                state = "joined" if joined else "running"
                self._host(host).units[unit] = UnitLine(
                    stage, unit, state, "cyan", started, deadline
                )
            case UnitStopping(host, _stage, unit) if unit in self._host(host).units:
                self._host(host).units[unit].state = "stopping (deadline)"
            case UnitFinished(host, stage, result):
                line = self._host(host).units.setdefault(result.unit, UnitLine(stage, result.unit))
                line.state, line.style = inline_reason(result), STYLE[result.outcome]
                line.outcome, line.finished = result.outcome, now
            case HostFinished(result):
                progress = self._host(result.host)
                progress.finished = True
                progress.status = f"exit {int(result.exit_code)}" + (
                    f": {result.error}" if result.error else ""
                )
            case _:
                pass


def detail_lines(state: FleetState) -> int:
    """Terminal lines the per-unit tables take."""
    return sum(len(host.units) + TABLE_OVERHEAD for host in state.hosts.values())


def fits_in_detail(state: FleetState, height: int) -> bool:
    """Whether one table per host with a row per unit fits ``height`` lines."""
    return detail_lines(state) <= height - 1


@dataclass(frozen=True, slots=True)
class CompactRow:
    """A row of the fleet view: a host (``unit`` empty), or a failed unit under its host."""

    host: str
    stage: str
    done: int
    total: int
    failed: int
    status: str
    unit: str = ""


def compact_rows(state: FleetState) -> list[CompactRow]:
    """One row per host; a host with failures is followed by one row per failed unit."""
    rows = []
    for host in state.hosts.values():
        failures = host.failures
        rows.append(
            CompactRow(
                host.host, host.stage, host.done, len(host.units), len(failures), host.status
            )
        )
        rows += [
            CompactRow(host.host, line.stage, 0, 0, 0, line.state, line.unit) for line in failures
        ]
    return rows
