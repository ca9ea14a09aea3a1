"""Losing a host mid-run: reconnect and keep watching, a reboot fails what was in flight,
a host that stays away leaves its units `unknown`, and Ctrl-C stops the watching."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from deploy_guard.config import Config
from deploy_guard.errors import ConnectionLost, ExitCode
from deploy_guard.guard.discovery import stage_specs
from deploy_guard.guard.engine import HostTarget, RunRequest, run_hosts
from deploy_guard.guard.stage import EngineSettings
from deploy_guard.model import HostResult, Outcome, RunReport
from deploy_guard.transport.base import CommandResult
from tests.unit.fakesystemd import FakeClock, FakeHost, SimUnit

SPECS = stage_specs(Config(), "web1")
BOOT_AFTER_REBOOT = "ffffffff-0000-4000-8000-000000000002\n"
BOOT_BEFORE_REBOOT = "0a1b2c3d000040008000000000000001"  # what fakesystemd answers


def units() -> list[SimUnit]:
    return [
        SimUnit("sanoid.service", type="simple", duration=3),
        SimUnit("syncoid-tank-data.service", type="simple", duration=20),
        SimUnit("restic-backups-home.service", duration=8),
    ]


class OutageHost(FakeHost):
    """Answers nothing between ``start`` and ``end`` (fake seconds); can come back rebooted."""

    def __init__(self, clock: FakeClock, start: float, end: float, *, rebooted: bool = False,
                 cancel_at: tuple[threading.Event, float] | None = None) -> None:  # fmt: skip
        super().__init__("web1", clock, units())
        self.start, self.end, self.rebooted = start, end, rebooted
        self.cancel_at = cancel_at

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        now = self.clock.monotonic()
        if self.cancel_at is not None and now >= self.cancel_at[1]:
            self.cancel_at[0].set()
        if self.start <= now < self.end:
            raise ConnectionLost(self.name, "connection reset by peer")
        if self.rebooted and now >= self.end and argv[0] == "cat":
            return CommandResult(tuple(argv), 0, BOOT_AFTER_REBOOT, "")
        return super().run(argv, timeout=timeout, check=check)


def guard(
    host: FakeHost,
    clock: FakeClock,
    *,
    limit: float = 300.0,
    cancel: threading.Event | None = None,
    cancel_remote: bool = False,
) -> RunReport:
    settings = EngineSettings(reconnect_limit=limit, cancel_remote=cancel_remote)
    request = RunRequest("run", (HostTarget("web1", "web1", specs=SPECS),), 1, settings)
    return run_hosts(request, lambda target: host, clock, lambda event: None, cancel)


def outcomes(host: HostResult) -> dict[str, Outcome]:
    return {unit.unit: unit.outcome for stage in host.stages for unit in stage.units}


def test_a_short_outage_is_survived_with_the_same_outcomes_and_noted() -> None:
    calm = FakeClock()
    undisturbed = guard(FakeHost("web1", calm, units()), calm)
    clock = FakeClock()

    report = guard(OutageHost(clock, start=6, end=15), clock)

    (host,) = report.hosts
    assert outcomes(host) == outcomes(undisturbed.hosts[0])
    assert set(outcomes(host).values()) == {Outcome.SUCCEEDED}
    assert host.reconnects >= 1
    assert report.exit_code is ExitCode.OK


def test_a_host_that_comes_back_rebooted_fails_the_runs_in_flight() -> None:
    clock = FakeClock()

    report = guard(OutageHost(clock, start=6, end=15, rebooted=True), clock)

    (host,) = report.hosts
    result = outcomes(host)
    assert result["syncoid-tank-data.service"] is Outcome.FAILED
    reason = next(u.reason for s in host.stages for u in s.units if u.unit.startswith("syncoid"))
    assert reason is not None
    assert "rebooted" in reason
    assert result["restic-backups-home.service"] is Outcome.NOT_STARTED
    assert report.exit_code is ExitCode.CRITICAL
    assert host.boot_ids == (BOOT_BEFORE_REBOOT, BOOT_AFTER_REBOOT.strip().replace("-", ""))


def test_a_host_that_comes_back_unrebooted_reports_its_one_boot_id() -> None:
    clock = FakeClock()

    report = guard(OutageHost(clock, start=6, end=15), clock)

    assert report.hosts[0].boot_ids == (BOOT_BEFORE_REBOOT,)


def test_a_host_that_stays_away_past_the_limit_leaves_its_units_unknown() -> None:
    clock = FakeClock()

    report = guard(OutageHost(clock, start=6, end=10_000), clock, limit=60)

    (host,) = report.hosts
    result = outcomes(host)
    assert result["syncoid-tank-data.service"] is Outcome.UNKNOWN
    assert Outcome.SUCCEEDED not in {result["syncoid-tank-data.service"],
                                     result["restic-backups-home.service"]}  # fmt: skip
    assert host.error is not None
    assert "unreachable for 60s" in host.error
    assert report.exit_code is ExitCode.CRITICAL
    assert clock.monotonic() < 6 + 60 + 31  # gave up at the limit, not later


def test_interrupt_stops_watching_and_leaves_the_backups_running() -> None:
    clock, cancel = FakeClock(), threading.Event()
    host = OutageHost(clock, start=-1, end=-1, cancel_at=(cancel, 8))

    report = guard(host, clock, cancel=cancel)

    result = outcomes(report.hosts[0])
    assert result["sanoid.service"] is Outcome.SUCCEEDED
    assert result["syncoid-tank-data.service"] is Outcome.UNKNOWN
    assert result["restic-backups-home.service"] is Outcome.NOT_STARTED
    assert report.exit_code is ExitCode.INTERRUPTED
    assert host.commands("stop") == []


def test_interrupt_with_cancel_remote_stops_the_backups_in_flight() -> None:
    clock, cancel = FakeClock(), threading.Event()
    host = OutageHost(clock, start=-1, end=-1, cancel_at=(cancel, 8))

    report = guard(host, clock, cancel=cancel, cancel_remote=True)

    assert [units for _at, units in host.commands("stop")] == [("syncoid-tank-data.service",)]
    assert report.exit_code is ExitCode.INTERRUPTED
