"""Round trips of a stage (issue 15): the cursor and the baseline `show` of a stage are one
round trip (in that order), the start another, and a stage of N units is watched with one
stream and a number of remote calls that does not grow with N. Calls are counted on the
transport; the simulated host answers each command of a batch as fakesystemd answers it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from deploy_guard.guard.preflight import run_preflight
from deploy_guard.model import Outcome
from deploy_guard.systemd.client import BATCH_SCRIPT, SystemdClient
from deploy_guard.transport.base import CommandResult
from tests.unit.fakesystemd import FakeClock, SimUnit
from tests.unit.guard.test_engine import StageHarness, results, stage_plan
from tests.unit.guard.test_stream_watch import StreamingHost


class BatchingHost(StreamingHost):
    """A streaming fake host that runs `SystemdClient.batch` scripts: each command of the
    batch is answered as if run alone, and the batch counts as one round trip."""

    runs_sh = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips: list[list[tuple[str, ...]]] = []

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        if list(argv[:3]) != ["sh", "-c", BATCH_SCRIPT]:
            self.round_trips.append([tuple(argv)])
            return super().run(argv, timeout=timeout, check=check)
        marker, words = argv[4], list(argv[5:])
        commands: list[tuple[str, ...]] = []
        while words:
            count = int(words[0])
            commands.append(tuple(words[1 : 1 + count]))
            words = words[1 + count :]
        self.round_trips.append(commands)
        out = ""
        for command in commands:
            result = super().run(command, timeout=timeout, check=False)
            out += f"{marker} {result.exit_status}\n{result.stdout}\n{marker}\n"
            out += f"{result.stderr}\n{marker}\n"
        return CommandResult(tuple(argv), 0, out, "")


def _verb(argv: tuple[str, ...]) -> str:
    if argv[0] == "journalctl":
        return "cursor" if "--show-cursor" in argv else "journal"
    words = [word for word in argv[1:] if not word.startswith("-")]
    return words[0] if argv[0] == "systemctl" else argv[0]


def _harness(clock: FakeClock, units: Sequence[SimUnit]) -> tuple[StageHarness, BatchingHost]:
    made = StageHarness(clock, [])
    host = BatchingHost("web1", clock, units)
    made.host = host
    return made, host


def test_a_stage_takes_its_cursor_and_baseline_in_one_round_trip_then_starts(
    clock: FakeClock,
) -> None:
    stage, host = _harness(clock, [SimUnit("a.service", duration=2.0)])

    run = stage.run(stage_plan("a.service"), sweep_interval=60.0)

    assert results(run)["a.service"].outcome is Outcome.SUCCEEDED
    verbs = [[_verb(argv) for argv in trip] for trip in host.round_trips]
    # The cursor is taken before the baseline `show`, and both before the start.
    assert verbs[:2] == [["cursor", "show"], ["start"]]


@pytest.mark.parametrize("count", [3, 200])
def test_remote_calls_of_a_stage_do_not_grow_with_its_units(clock: FakeClock, count: int) -> None:
    units = [SimUnit(f"u{index:04}.service", duration=2.0) for index in range(count)]
    stage, host = _harness(clock, units)

    run = stage.run(stage_plan(*(unit.name for unit in units)), sweep_interval=60.0)

    assert {r.outcome for r in results(run).values()} == {Outcome.SUCCEEDED}
    assert len(host.streams) == 1
    verbs = [[_verb(argv) for argv in trip] for trip in host.round_trips]
    # cursor + baseline, start, then one `show` + journal read when they all ended.
    assert verbs == [["cursor", "show"], ["start"], ["show", "journal"]]


def test_preflight_records_failed_units_and_boot_id_in_one_round_trip(clock: FakeClock) -> None:
    broken = SimUnit("broken.service", active="failed", sub="failed", result="exit-code")
    host = BatchingHost("web1", clock, [broken])

    report = run_preflight(SystemdClient(host), ())

    assert report.ok
    assert report.failed_units == ("broken.service",)
    assert report.boot_id == "0a1b2c3d000040008000000000000001"
    assert [[_verb(argv) for argv in trip] for trip in host.round_trips] == [["list-units", "cat"]]


@pytest.mark.parametrize("count", [2, 50])
def test_log_tails_of_failed_runs_are_read_in_one_round_trip(clock: FakeClock, count: int) -> None:
    units = [SimUnit(f"u{index:04}.service", duration=2.0, exit_status=3) for index in range(count)]
    stage, host = _harness(clock, units)

    run = stage.run(stage_plan(*(unit.name for unit in units)), sweep_interval=60.0)

    assert {r.outcome for r in results(run).values()} == {Outcome.FAILED}
    assert all(r.log_tail for r in results(run).values())
    verbs = [[_verb(argv) for argv in trip] for trip in host.round_trips]
    assert verbs == [["cursor", "show"], ["start"], ["show", "journal"], ["journal"] * count]


def test_units_that_ignore_sigterm_get_sigkill_in_one_call(clock: FakeClock) -> None:
    units = [
        SimUnit(f"u{index}.service", duration=100.0, ignores_sigterm=True) for index in range(3)
    ]
    stage, host = _harness(clock, units)

    plan = stage_plan(*(unit.name for unit in units), timeout=5.0)

    run = stage.run(plan, stop_grace=2.0, sweep_interval=60.0)

    assert {r.outcome for r in results(run).values()} == {Outcome.TIMED_OUT}
    kills = host.commands("kill")
    assert [units for _at, units in kills] == [("u0.service", "u1.service", "u2.service")]
