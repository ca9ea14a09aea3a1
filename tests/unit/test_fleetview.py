"""The live view at fleet scale: the row model as pure code, drawn by rich on a fixed-size
console (issue 14: 8 hosts of 15 units each were 120 rows)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, Group
from rich.table import Table

from deploy_guard.events import (
    HostFinished,
    HostPlanned,
    StageStarted,
    UnitFinished,
    UnitStarted,
)
from deploy_guard.fleetview import (
    CompactRow,
    FleetState,
    compact_rows,
    fits_in_detail,
    inline_reason,
)
from deploy_guard.model import ExitCode, HostPlan, HostResult, Outcome, StagePlan, UnitResult
from deploy_guard.render import LiveRenderer, fleet_view

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stage(name: str, units: list[str]) -> StagePlan:
    return StagePlan(name, False, 600.0, None, False, tuple(units))


def fleet(hosts: int = 8, units: int = 15) -> FleetState:
    """``hosts`` hosts of ``units`` units in two stages; on web-3, the first unit of the
    second stage has failed with exit 3, every other unit of the first stage succeeded."""
    state = FleetState()
    for number in range(1, hosts + 1):
        host = f"web-{number}"
        first = [f"snap-{n}.service" for n in range(5)]
        second = [f"restic-backups-{n}.service" for n in range(units - 5)]
        state.apply(HostPlanned(host, HostPlan(host, (stage("snapshots", first),
                                                      stage("offsite", second)))), NOW)  # fmt: skip
        state.apply(StageStarted(host, stage("snapshots", first)), NOW)
        for unit in first:
            state.apply(UnitFinished(host, "snapshots", UnitResult(unit, Outcome.SUCCEEDED)), NOW)
        state.apply(StageStarted(host, stage("offsite", second)), NOW)
        state.apply(UnitStarted(host, "offsite", second[0], False, NOW,
                                NOW + timedelta(hours=1)), NOW)  # fmt: skip
        if number == 3:
            failed = UnitResult(second[0], Outcome.FAILED, result="exit-code", exit_status=3)
            state.apply(UnitFinished(host, "offsite", failed), NOW)
    return state


@pytest.mark.parametrize(
    ("result", "text"),
    [
        (UnitResult("a", Outcome.FAILED, result="exit-code", exit_status=3), "failed: exit 3"),
        (UnitResult("a", Outcome.FAILED, result="signal"), "failed: signal"),
        (UnitResult("a", Outcome.UNKNOWN, reason="host lost"), "unknown: host lost"),
        (UnitResult("a", Outcome.TIMED_OUT, result="timeout"), "timed-out"),
        (UnitResult("a", Outcome.SUCCEEDED, result="success"), "succeeded"),
    ],
)
def test_a_finished_unit_says_why_in_a_few_words(result: UnitResult, text: str) -> None:
    assert inline_reason(result) == text


def test_a_fleet_that_does_not_fit_gets_one_row_per_host_and_failing_units_only() -> None:
    state = fleet()

    assert not fits_in_detail(state, height=40)
    rows = compact_rows(state)

    assert [row.host for row in rows if not row.unit] == [f"web-{n}" for n in range(1, 9)]
    assert rows[2] == CompactRow("web-3", "offsite", 6, 15, 1, "running")
    assert rows[3] == CompactRow("web-3", "offsite", 0, 0, 0, "failed: exit 3",
                                 unit="restic-backups-0.service")  # fmt: skip
    assert rows[1] == CompactRow("web-2", "offsite", 5, 15, 0, "running")
    assert len(rows) == 9


def test_a_few_hosts_that_fit_keep_a_row_per_unit() -> None:
    state = fleet(hosts=2, units=6)

    assert fits_in_detail(state, height=40)
    assert not fits_in_detail(state, height=20)


def test_a_finished_host_shows_its_exit_code() -> None:
    state = fleet(hosts=1, units=6)

    state.apply(HostFinished(HostResult("web-1", ExitCode.PARTIAL, error=None)), NOW)

    assert compact_rows(state)[0].status == "exit 1"


def test_the_fleet_view_of_8_hosts_of_15_units_fits_a_24_line_terminal() -> None:
    output = io.StringIO()
    terminal = Console(file=output, width=120, height=24, color_system=None)

    terminal.print(fleet_view(fleet()))

    lines = output.getvalue().splitlines()
    assert len(lines) == 10  # the header, 8 hosts, 1 failed unit
    assert lines[3].split()[0] == "web-3"
    assert "6/15" in lines[3]
    assert "restic-backups-0.service" in lines[4]
    assert lines[4].rstrip().endswith("failed: exit 3")


def test_live_renderer_switches_to_the_fleet_view_when_the_tables_do_not_fit() -> None:
    terminal = Console(file=io.StringIO(), width=120, height=24, color_system=None)
    renderer = LiveRenderer(terminal)
    try:
        renderer.state = fleet(hosts=2, units=6)
        assert isinstance(renderer._render(), Group)  # a table per host
        renderer.state = fleet()
        assert isinstance(renderer._render(), Table)  # one table, a row per host
    finally:
        renderer.close()
