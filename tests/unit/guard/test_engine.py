"""The stage runner and the host orchestration against the in-memory systemd of fakesystemd.

No real sleeping: the fake clock moves only when the engine sleeps, so every time asserted
here is the engine's own notion of time, and "how long did the stage take" is exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest

from deploy_guard.config import Config
from deploy_guard.errors import ConnectionLost, ExitCode, HostUnreachable
from deploy_guard.events import Event, HostWarning, UnitFinished, UnitStarted
from deploy_guard.guard.discovery import StageSpec, stage_specs
from deploy_guard.guard.engine import HostTarget, RunRequest, plan_hosts, run_hosts
from deploy_guard.guard.stage import EngineSettings, StageContext, StageRun, run_stage
from deploy_guard.model import HostResult, Outcome, RunReport, StageOutcome, StagePlan, UnitResult
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.base import CommandResult
from tests.unit.fakesystemd import EPOCH, FakeClock, FakeHost, SimUnit

DEFAULT_SPECS = stage_specs(Config(), "host")


def stage_plan(
    *units: str,
    critical: bool = False,
    timeout: float = 600.0,
    max_parallel: int | None = None,
) -> StagePlan:
    return StagePlan("applications", critical, timeout, max_parallel, False, units)


def spec(
    name: str,
    *patterns: str,
    critical: bool = False,
    max_parallel: int | None = None,
    allow_empty: bool = False,
) -> StageSpec:
    return StageSpec(name, critical, 600.0, patterns, (), max_parallel, allow_empty)


class StageHarness:
    """Runs one stage on one fake host and keeps every event with the time it was emitted."""

    def __init__(self, clock: FakeClock, units: Sequence[SimUnit], **host_options: object):
        self.clock = clock
        self.host = FakeHost("web1", clock, units, **host_options)  # type: ignore[arg-type]
        self.events: list[tuple[float, Event]] = []

    def run(self, plan: StagePlan, **settings: float) -> StageRun:
        context = StageContext(
            SystemdClient(self.host),
            self.clock,
            EngineSettings(**settings),  # type: ignore[arg-type]
            lambda event: self.events.append((self.clock.monotonic(), event)),
        )
        return run_stage(context, plan)

    def finished_at(self, unit: str) -> float:
        """The engine time at which the unit's final result was emitted."""
        times = [
            at
            for at, event in self.events
            if isinstance(event, UnitFinished) and event.result.unit == unit
        ]
        assert len(times) == 1, times
        return times[0]


def results(run: StageRun) -> dict[str, UnitResult]:
    return {unit.unit: unit for unit in run.result.units}


def guard(
    hosts: Mapping[str, FakeHost],
    clock: FakeClock,
    specs: tuple[StageSpec, ...] = DEFAULT_SPECS,
    events: list[Event] | None = None,
    unreachable: Sequence[str] = (),
) -> RunReport:
    """`run_hosts` over fake hosts, one host at a time so that the shared clock is exact;
    connecting to an ``unreachable`` host fails."""

    def connect(target: HostTarget) -> FakeHost:
        if target.name not in hosts:
            raise HostUnreachable(target.name, "connection refused")
        return hosts[target.name]

    targets = tuple(HostTarget(name, name, specs=specs) for name in [*hosts, *unreachable])
    request = RunRequest("run", targets, parallel=1, settings=EngineSettings())
    sink = events.append if events is not None else (lambda event: None)
    return run_hosts(request, connect, clock, sink)


def host_result(report: RunReport, name: str) -> HostResult:
    return next(host for host in report.hosts if host.host == name)


def unit_outcomes(report: RunReport, name: str) -> dict[str, Outcome]:
    host = host_result(report, name)
    return {unit.unit: unit.outcome for stage in host.stages for unit in stage.units}


# -- one stage -----------------------------------------------------------------------------


def test_all_units_of_a_stage_are_started_in_one_start_call(clock: FakeClock) -> None:
    units = [SimUnit("a.service", duration=3), SimUnit("b.service", duration=7),
             SimUnit("c.service", type="simple", duration=5)]  # fmt: skip
    harness = StageHarness(clock, units)

    run = harness.run(stage_plan("a.service", "b.service", "c.service"))

    assert harness.host.commands("start") == [(0.0, ("a.service", "b.service", "c.service"))]
    assert {unit: result.outcome for unit, result in results(run).items()} == {
        "a.service": Outcome.SUCCEEDED,
        "b.service": Outcome.SUCCEEDED,
        "c.service": Outcome.SUCCEEDED,
    }
    assert run.result.outcome is StageOutcome.SUCCEEDED


def test_each_poll_reads_every_watched_unit_with_one_show_call(clock: FakeClock) -> None:
    units = [SimUnit("a.service", duration=2.5), SimUnit("b.service", duration=4.5),
             SimUnit("c.service", duration=6.5)]  # fmt: skip
    harness = StageHarness(clock, units)

    harness.run(stage_plan("a.service", "b.service", "c.service"), poll_interval=1.0)

    every, later, last = (
        ("a.service", "b.service", "c.service"),
        ("b.service", "c.service"),
        ("c.service",),
    )
    assert harness.host.commands("show") == [
        (0.0, every),  # the baseline, before the start call
        (1.0, every), (2.0, every), (3.0, every),  # a ended at 2.5, seen at 3
        (4.0, later), (5.0, later),  # b ended at 4.5
        (6.0, last), (7.0, last),
    ]  # fmt: skip


def test_stage_lasts_as_long_as_its_slowest_unit_not_the_sum(clock: FakeClock) -> None:
    units = [SimUnit("a.service", duration=30), SimUnit("b.service", duration=60),
             SimUnit("c.service", type="simple", duration=90)]  # fmt: skip
    harness = StageHarness(clock, units)

    run = harness.run(stage_plan("a.service", "b.service", "c.service"), poll_interval=1.0)

    assert run.result.outcome is StageOutcome.SUCCEEDED
    assert 90.0 <= clock.monotonic() <= 91.0  # one after another would take 180 s
    assert harness.finished_at("a.service") == 30.0


def test_max_parallel_runs_the_units_in_waves(clock: FakeClock) -> None:
    names = ("a.service", "b.service", "c.service", "d.service")
    harness = StageHarness(clock, [SimUnit(name, duration=10) for name in names])

    run = harness.run(stage_plan(*names, max_parallel=2), poll_interval=1.0)

    assert harness.host.commands("start") == [
        (0.0, ("a.service", "b.service")),
        (10.0, ("c.service", "d.service")),
    ]
    assert all(result.outcome is Outcome.SUCCEEDED for result in results(run).values())
    assert clock.monotonic() == 20.0


def test_unit_past_its_deadline_is_stopped_and_timed_out_although_systemd_says_success(
    clock: FakeClock,
) -> None:
    # Type=simple: SIGTERM is a clean exit for it, not for a oneshot (which gets
    # Result=signal; recorded: simple-stopped, oneshot-stopped). This test used a oneshot
    # until the simulated systemd was grounded in recordings.
    hung = SimUnit("hung.service", type="simple", duration=1000)
    harness = StageHarness(clock, [hung])

    run = harness.run(stage_plan("hung.service", timeout=60), poll_interval=1.0, stop_grace=15)

    assert harness.host.commands("stop") == [(60.0, ("hung.service",))]
    assert harness.host.commands("kill") == []
    # SIGTERM is a clean exit for Type=simple: systemd logs success for the run it stopped
    # (a oneshot gets Result=signal instead; testbed). Our own stop is `timed-out`, not
    # `cancelled` (issue 11, case 2).
    assert "hung.service: Deactivated successfully." in harness.host.messages("hung.service")
    assert results(run)["hung.service"].outcome is Outcome.TIMED_OUT
    assert run.result.outcome is StageOutcome.FAILED


def test_unit_ignoring_sigterm_is_killed_after_stop_grace_and_timed_out(clock: FakeClock) -> None:
    stubborn = SimUnit("stubborn.service", type="simple", duration=1000, ignores_sigterm=True)
    harness = StageHarness(clock, [stubborn])

    run = harness.run(stage_plan("stubborn.service", timeout=60), poll_interval=1.0, stop_grace=15)

    assert harness.host.commands("stop") == [(60.0, ("stubborn.service",))]
    assert harness.host.commands("kill") == [(75.0, ("stubborn.service",))]
    assert any("--signal=SIGKILL" in argv for _, argv in harness.host.calls)
    result = results(run)["stubborn.service"]
    assert result.outcome is Outcome.TIMED_OUT
    assert result.result == "signal"
    assert harness.finished_at("stubborn.service") == 76.0


@pytest.mark.parametrize(
    ("journal_readable", "expected"),
    [
        pytest.param(True, Outcome.SUCCEEDED, id="journal-proves-the-run"),
        pytest.param(False, Outcome.UNKNOWN, id="no-journal-no-proof"),
    ],
)
def test_garbage_collected_oneshot_is_succeeded_only_with_journal_evidence(
    clock: FakeClock, journal_readable: bool, expected: Outcome
) -> None:
    # Exits in 0.1 s and is unloaded before the first poll: `show` prints the defaults.
    fast = SimUnit("restic-backups-home.service", duration=0.1)
    harness = StageHarness(clock, [fast], journal_readable=journal_readable)

    run = harness.run(stage_plan(fast.name), poll_interval=1.0, evidence_grace=10.0)

    result = results(run)[fast.name]
    assert result.outcome is expected
    if expected is Outcome.SUCCEEDED:
        assert result.invocation_id == f"{1:032x}"
        assert result.finished_at == EPOCH + timedelta(seconds=0.1)
        assert harness.finished_at(fast.name) == 1.0
    else:
        # Unaccounted from the first poll (t=1) until evidence_grace has passed.
        assert harness.finished_at(fast.name) == 11.0
        assert result.invocation_id is None


def test_journal_written_late_is_waited_for_within_evidence_grace(clock: FakeClock) -> None:
    fast = SimUnit("restic-backups-home.service", duration=0.1)
    harness = StageHarness(clock, [fast], journal_delay=3.0)

    run = harness.run(stage_plan(fast.name), poll_interval=1.0, evidence_grace=10.0)

    assert results(run)[fast.name].outcome is Outcome.SUCCEEDED
    assert harness.finished_at(fast.name) == 4.0


def test_simple_unit_is_not_succeeded_until_it_deactivates(clock: FakeClock) -> None:
    # "Started X." (job done) is logged at once for Type=simple: it proves only a start.
    borg = SimUnit("borgbackup-job-home.service", type="simple", duration=5.5)
    harness = StageHarness(clock, [borg])

    run = harness.run(stage_plan(borg.name), poll_interval=1.0)

    assert harness.host.messages(borg.name)[0] == f"Started {borg.name}."
    assert harness.finished_at(borg.name) == 6.0
    result = results(run)[borg.name]
    assert result.outcome is Outcome.SUCCEEDED
    assert result.finished_at == EPOCH + timedelta(seconds=5.5)


def test_condition_skipped_unit_is_skipped_and_fails_the_stage(clock: FakeClock) -> None:
    skipped = SimUnit("btrbk-home.service", condition_met=False)
    harness = StageHarness(clock, [skipped])

    run = harness.run(stage_plan(skipped.name))

    result = results(run)[skipped.name]
    assert result.outcome is Outcome.SKIPPED
    assert result.result == "unmet-condition"
    assert run.result.outcome is StageOutcome.FAILED


@pytest.mark.parametrize("unit_type", ["oneshot", "simple"])
def test_starting_a_running_unit_joins_its_run_instead_of_running_it_twice(
    clock: FakeClock, unit_type: str
) -> None:
    # A running oneshot's start merges into its job; for an active Type=simple unit the start
    # prints a new job id that never reaches the journal. Either way there is one run.
    restic = SimUnit("restic-backups-home.service", type=unit_type, duration=10)
    harness = StageHarness(clock, [restic])
    harness.host.trigger(restic.name)  # its timer fired at t=0
    clock.sleep(3)

    run = harness.run(stage_plan(restic.name), poll_interval=1.0)

    result = results(run)[restic.name]
    assert result.outcome is Outcome.SUCCEEDED
    assert result.joined is True
    assert result.invocation_id == f"{1:032x}"
    assert harness.finished_at(restic.name) == 10.0
    messages = harness.host.messages(restic.name)
    assert len([m for m in messages if m.startswith(("Starting", "Started"))]) == 1


def test_unit_already_active_after_a_remain_after_exit_run_is_skipped_not_started(
    clock: FakeClock,
) -> None:
    # Starting an active (exited) RemainAfterExit=yes unit runs nothing and "succeeds".
    done = SimUnit("zfs-snapshot-daily.service", remain_after_exit=True, gc=False,
                   active="active", sub="exited", invocation=f"{99:032x}")  # fmt: skip
    harness = StageHarness(clock, [done])

    run = harness.run(stage_plan(done.name))

    assert results(run)[done.name].outcome is Outcome.SKIPPED
    assert harness.host.commands("start") == []


def test_failed_unit_is_failed_with_exit_status_and_log_tail(clock: FakeClock) -> None:
    restic = SimUnit("restic-backups-home.service", duration=2, exit_status=3)
    harness = StageHarness(clock, [restic])

    run = harness.run(stage_plan(restic.name), log_lines=20)

    result = results(run)[restic.name]
    assert result.outcome is Outcome.FAILED
    assert result.result == "exit-code"
    assert result.exit_status == 3
    assert f"{restic.name}: backup ended with status 3" in result.log_tail
    assert f"{restic.name}: Failed with result 'exit-code'." in result.log_tail


@pytest.mark.parametrize(
    ("unit", "reason"),
    [
        pytest.param(None, "no such unit", id="not-found"),
        pytest.param(SimUnit("a.service", start_denied=True), "Access denied", id="start-denied"),
    ],
)
def test_unit_that_cannot_be_started_is_failed_and_the_others_still_run(
    clock: FakeClock, unit: SimUnit | None, reason: str
) -> None:
    units = [SimUnit("ok.service", duration=2), *([unit] if unit else [])]
    harness = StageHarness(clock, units)

    run = harness.run(stage_plan("a.service", "ok.service"))

    outcome = results(run)
    assert outcome["a.service"].outcome is Outcome.FAILED
    assert reason in (outcome["a.service"].reason or "")
    assert outcome["ok.service"].outcome is Outcome.SUCCEEDED


def test_unit_seen_running_then_gone_without_a_record_keeps_its_invocation_id(
    clock: FakeClock,
) -> None:
    restic = SimUnit("restic-backups-home.service", duration=1.5)
    harness = StageHarness(clock, [restic], journal_readable=False)

    run = harness.run(stage_plan(restic.name), poll_interval=1.0, evidence_grace=10.0)

    result = results(run)[restic.name]
    assert result.outcome is Outcome.UNKNOWN
    assert result.invocation_id == f"{1:032x}"  # seen activating at t=1


class ConnectionLostAfter(FakeHost):
    """The host carries out the first ``verb`` call, then the connection dies before the answer
    arrives (for `start`: the units run on the host, unwatched)."""

    def __init__(self, verb: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.verb = verb

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        result = super().run(argv, timeout=timeout, check=check)
        if self.verb in argv:
            raise ConnectionLost(self.name, "connection reset by peer")
        return result


@pytest.mark.parametrize(
    ("verb", "expected"),
    [("show", Outcome.NOT_STARTED), ("start", Outcome.UNKNOWN)],
)
def test_units_whose_start_was_cut_off_by_a_lost_connection_are_reported_and_not_green(
    clock: FakeClock, verb: str, expected: Outcome
) -> None:
    units = [SimUnit("a.service", duration=3), SimUnit("b.service", duration=3)]
    host = ConnectionLostAfter(verb, "web1", clock, units)
    context = StageContext(SystemdClient(host), clock, EngineSettings(), lambda event: None)

    run = run_stage(context, stage_plan("a.service", "b.service", critical=True))

    assert run.fatal is not None
    assert run.result.outcome is StageOutcome.FAILED
    assert {unit: result.outcome for unit, result in results(run).items()} == {
        "a.service": expected,
        "b.service": expected,
    }


# -- hosts and stages ---------------------------------------------------------------------


def nixos_units(**overrides: SimUnit) -> list[SimUnit]:
    units = {
        "sanoid.service": SimUnit("sanoid.service", type="simple", duration=3),
        "syncoid-tank-data.service": SimUnit("syncoid-tank-data.service", type="simple"),
        "syncoid-tank-home.service": SimUnit("syncoid-tank-home.service", type="simple"),
        "restic-backups-home.service": SimUnit("restic-backups-home.service", duration=8),
        "pgbackrest-main-full.service": SimUnit("pgbackrest-main-full.service", duration=4),
    }
    return list((units | overrides).values())


def test_critical_stage_failure_leaves_later_stages_not_started_and_exits_2(
    clock: FakeClock,
) -> None:
    sanoid = SimUnit("sanoid.service", type="simple", duration=3, exit_status=1)
    host = FakeHost("web1", clock, nixos_units(**{"sanoid.service": sanoid}))

    report = guard({"web1": host}, clock)

    assert report.exit_code is ExitCode.CRITICAL
    stages = {stage.name: stage.outcome for stage in host_result(report, "web1").stages}
    assert stages == {
        "snapshots": StageOutcome.FAILED,
        "replication": StageOutcome.NOT_STARTED,
        "applications": StageOutcome.NOT_STARTED,
    }
    outcomes = unit_outcomes(report, "web1")
    assert outcomes.pop("sanoid.service") is Outcome.FAILED
    assert set(outcomes.values()) == {Outcome.NOT_STARTED}
    assert host.commands("start") == [(0.0, ("sanoid.service",))]


def test_non_critical_failure_lets_the_other_units_run_and_exits_1(clock: FakeClock) -> None:
    failing = SimUnit("syncoid-tank-data.service", type="simple", exit_status=2)
    host = FakeHost("web1", clock, nixos_units(**{failing.name: failing}))

    report = guard({"web1": host}, clock)

    assert report.exit_code is ExitCode.PARTIAL
    assert unit_outcomes(report, "web1") == {
        "sanoid.service": Outcome.SUCCEEDED,
        "syncoid-tank-data.service": Outcome.FAILED,
        "syncoid-tank-home.service": Outcome.SUCCEEDED,
        "pgbackrest-main-full.service": Outcome.SUCCEEDED,
        "restic-backups-home.service": Outcome.SUCCEEDED,
    }


def test_never_started_unit_known_only_from_its_unit_file_is_run(clock: FakeClock) -> None:
    # No timer, never started: only list-unit-files knows it (FIELD-NOTES, original design).
    host = FakeHost("web1", clock, nixos_units())
    assert (
        "restic-backups-home.service"
        not in host.run(
            ["systemctl", "list-units", "--all", "--type=service", "--no-legend", "--plain"],
            timeout=5,
            check=True,
        ).stdout
    )

    report = guard({"web1": host}, clock)

    assert unit_outcomes(report, "web1")["restic-backups-home.service"] is Outcome.SUCCEEDED
    assert report.exit_code is ExitCode.OK


def test_host_lost_mid_stage_reports_in_flight_units_unknown_and_spares_other_hosts(
    clock: FakeClock,
) -> None:
    specs = (
        spec("applications", "restic-backups-*.service", max_parallel=2),
        spec("late", "late-*.service"),
    )
    durations = {"a": 2, "b": 100, "c": 100, "d": 100}
    lost_units = [SimUnit(f"restic-backups-{n}.service", duration=d) for n, d in durations.items()]
    lost = FakeHost("lost", clock, [*lost_units, SimUnit("late-x.service")], drop_after_start=5)
    healthy = FakeHost("healthy", clock, [SimUnit("restic-backups-a.service", duration=2)])

    report = guard({"lost": lost, "healthy": healthy}, clock, specs)

    assert unit_outcomes(report, "lost") == {
        "restic-backups-a.service": Outcome.SUCCEEDED,  # finished before the connection died
        "restic-backups-b.service": Outcome.UNKNOWN,
        "restic-backups-c.service": Outcome.UNKNOWN,  # started at t=2 when a finished
        "restic-backups-d.service": Outcome.NOT_STARTED,
        "late-x.service": Outcome.NOT_STARTED,
    }
    lost_result = host_result(report, "lost")
    assert lost_result.exit_code is ExitCode.CRITICAL
    assert "connection reset" in (lost_result.error or "")
    assert lost.closed
    assert host_result(report, "healthy").exit_code is ExitCode.OK
    assert report.exit_code is ExitCode.CRITICAL


def test_unreachable_host_is_critical_and_the_others_are_still_guarded(clock: FakeClock) -> None:
    healthy = FakeHost("healthy", clock, nixos_units())

    report = guard({"healthy": healthy}, clock, unreachable=["down"])

    assert host_result(report, "down").exit_code is ExitCode.CRITICAL
    assert "connection refused" in (host_result(report, "down").error or "")
    assert host_result(report, "healthy").exit_code is ExitCode.OK
    assert report.exit_code is ExitCode.CRITICAL


@pytest.mark.parametrize(
    ("critical", "allow_empty", "exit_code", "outcome"),
    [
        (True, False, ExitCode.CRITICAL, StageOutcome.FAILED),
        (True, True, ExitCode.OK, StageOutcome.SUCCEEDED),
        # The only stage, empty: nothing was guarded (issue 11, case 5).
        (False, False, ExitCode.PARTIAL, StageOutcome.SUCCEEDED),
    ],
)
def test_empty_stage_fails_the_host_only_when_critical_without_allow_empty(
    clock: FakeClock,
    critical: bool,
    allow_empty: bool,
    exit_code: ExitCode,
    outcome: StageOutcome,
) -> None:
    specs = (spec("snapshots", "sanoid.service", critical=critical, allow_empty=allow_empty),)
    host = FakeHost("web1", clock, [SimUnit("unrelated.service")])
    events: list[Event] = []

    report = guard({"web1": host}, clock, specs, events)

    assert report.exit_code is exit_code
    assert host_result(report, "web1").stages[0].outcome is outcome
    assert host.commands("start") == []
    if outcome is StageOutcome.SUCCEEDED:
        assert any(isinstance(event, HostWarning) for event in events)


def test_plan_starts_nothing_and_closes_each_connection(clock: FakeClock) -> None:
    host = FakeHost("web1", clock, nixos_units())
    targets = [HostTarget("web1", "web1", specs=DEFAULT_SPECS), HostTarget("down", "down")]

    def connect(target: HostTarget) -> FakeHost:
        if target.name == "down":
            raise HostUnreachable("down", "connection refused")
        return host

    plans = plan_hosts(targets, connect, parallel=2)

    assert [plan.host for plan in plans] == ["web1", "down"]
    assert plans[0].plan is not None
    assert plans[0].plan.stages[2].units == (
        "pgbackrest-main-full.service",
        "restic-backups-home.service",
    )
    assert plans[1].plan is None
    assert "connection refused" in (plans[1].error or "")
    assert host.commands("start") == []
    assert host.closed


def test_host_error_does_not_repeat_the_host_name(clock: FakeClock) -> None:
    specs = (spec("applications", "restic-backups-*.service"),)
    lost = FakeHost("lost", clock, [SimUnit("restic-backups-a.service", duration=100)],
                    drop_after_start=5)  # fmt: skip

    report = guard({"lost": lost}, clock, specs, unreachable=["down"])

    errors = [host_result(report, name).error or "" for name in ("lost", "down")]
    assert "connection reset" in errors[0]
    assert errors[1] == "connection refused"
    assert not any(error.startswith(("lost:", "down:")) for error in errors), errors


# -- issue 11, case 5: nothing to guard ---------------------------------------------------------


def test_host_with_no_unit_in_any_stage_is_not_a_success(clock: FakeClock) -> None:
    specs = (spec("snapshots", "sanoid.service"), spec("applications", "restic-backups-*"))
    host = FakeHost("web1", clock, [SimUnit("unrelated.service")])

    report = guard({"web1": host}, clock, specs)

    result = host_result(report, "web1")
    assert result.exit_code is ExitCode.PARTIAL
    assert result.error == "no backup unit found on web1"
    # The empty-stage warnings are in the report, not only in the live view.
    assert result.warnings == (
        "stage snapshots: no unit matched sanoid.service",
        "stage applications: no unit matched restic-backups-*",
    )


def test_host_whose_every_stage_allows_empty_may_have_no_unit(clock: FakeClock) -> None:
    specs = (spec("snapshots", "sanoid.service", allow_empty=True),
             spec("applications", "restic-backups-*", allow_empty=True))  # fmt: skip
    host = FakeHost("web1", clock, [SimUnit("unrelated.service")])

    result = host_result(guard({"web1": host}, clock, specs), "web1")

    assert (result.exit_code, result.error) == (ExitCode.OK, None)
    assert len(result.warnings) == 2


def test_host_with_every_stage_disabled_is_not_a_success(clock: FakeClock) -> None:
    host = FakeHost("web1", clock, [SimUnit("sanoid.service")])

    result = host_result(guard({"web1": host}, clock, ()), "web1")

    assert (result.exit_code, result.error) == (ExitCode.PARTIAL, "no backup unit found on web1")


# -- issue 11: cases 1, 2 and 4 through the engine ------------------------------------------------

PREVIOUS_RUN = "fedcba9876543210fedcba9876543210"


@pytest.mark.parametrize(
    ("active", "result", "status"),
    [("inactive", "success", 0), ("failed", "exit-code", 3)],
    ids=["earlier-success", "earlier-failure"],
)
def test_condition_skip_of_a_unit_that_ran_before_is_skipped(
    clock: FakeClock, active: str, result: str, status: int
) -> None:
    # Still loaded (a timer references it) after an earlier run: the skip's job-done message
    # carries that run's INVOCATION_ID.
    unit = SimUnit("restic-backups-home.service", condition_met=False, gc=False, active=active,
                   sub="dead" if active == "inactive" else "failed", result=result,
                   invocation=PREVIOUS_RUN, code=1, status=status, condition="yes")  # fmt: skip
    harness = StageHarness(clock, [unit])

    run = harness.run(stage_plan(unit.name), poll_interval=1.0)

    judged = results(run)[unit.name]
    assert (judged.outcome, judged.result, judged.invocation_id) == (
        Outcome.SKIPPED, "unmet-condition", None)  # fmt: skip


@pytest.mark.parametrize("unit_type", ["simple", "oneshot"])
def test_unit_stopped_from_outside_mid_run_is_cancelled(clock: FakeClock, unit_type: str) -> None:
    unit = SimUnit("syncoid-tank.service", type=unit_type, duration=30.0)
    harness = StageHarness(clock, [unit])

    def stop_when_started(plan: StagePlan, **settings: float) -> StageRun:
        def emit(event: Event) -> None:
            harness.events.append((clock.monotonic(), event))
            if isinstance(event, UnitStarted):
                harness.host.stop_from_outside(unit.name)

        context = StageContext(SystemdClient(harness.host), clock,
                               EngineSettings(**settings), emit)  # type: ignore[arg-type]  # fmt: skip
        return run_stage(context, plan)

    run = stop_when_started(stage_plan(unit.name), poll_interval=1.0)

    judged = results(run)[unit.name]
    assert judged.outcome is Outcome.CANCELLED
    assert judged.reason is not None
    assert "stop job" in judged.reason


def test_unreadable_journal_makes_a_run_shown_successful_unknown(clock: FakeClock) -> None:
    # Stays loaded (gc=False), so `show` alone describes a finished successful run.
    unit = SimUnit("restic-backups-home.service", duration=1.5, gc=False)
    harness = StageHarness(clock, [unit], journal_readable=False)

    run = harness.run(stage_plan(unit.name), poll_interval=1.0)

    judged = results(run)[unit.name]
    assert judged.outcome is Outcome.UNKNOWN
    assert "insufficient permissions" in (judged.reason or "")


# -- issue 11, case 6: units the host's manifest requires ---------------------------------------


def test_masked_unit_the_manifest_requires_fails_the_host_naming_it(clock: FakeClock) -> None:
    masked = SimUnit("restic-backups-etc.service", file_state="masked")
    host = FakeHost("web1", clock, [SimUnit("restic-backups-home.service"), masked])
    host.files["/etc/deploy-guard/manifest.json"] = json.dumps({"schema_version": 1, "stages": [
        {"name": "applications",
         "units": ["restic-backups-home.service", "restic-backups-etc.service"]}]})  # fmt: skip
    specs = (spec("applications", "restic-backups-*"),)

    result = host_result(guard({"web1": host}, clock, specs), "web1")

    assert result.exit_code is ExitCode.CRITICAL
    assert "restic-backups-etc.service (masked)" in (result.error or "")
    assert host.commands("start") == []
