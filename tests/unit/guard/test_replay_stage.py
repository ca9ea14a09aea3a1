"""A whole stage run by the engine over the transport seam, every command answered from a
recording of real systemd 252 (tests/fixtures/systemd-252/).

The tests of issue 11's cases replay recordings in which the earlier code reported a false
green.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploy_guard.guard.stage import EngineSettings, StageContext, run_stage
from deploy_guard.model import Outcome, StagePlan, UnitResult
from deploy_guard.systemd.client import SystemdClient
from tests.unit.fakesystemd import FakeClock, FakeHost, SimUnit
from tests.unit.recordings import Recorded, ReplayTransport, load

# -- a whole stage over the transport seam, answered from a recording ------------------------------


class RecordedHost(ReplayTransport):
    """The engine's commands answered from one recorded scenario: `show` from the recorded
    baseline until the start, then from the final step; `start` from the start step; the
    journal read from the journal step (all of it at once, as after the run)."""

    def __init__(self, recorded: Recorded, *, baseline: str | None, start: str, final: str,
                 journal: str) -> None:  # fmt: skip
        super().__init__()
        self.recorded = recorded
        self.baseline, self.start, self.final, self.journal = baseline, start, final, journal
        self.started = False

    def answer(self, argv: Sequence[str]) -> tuple[int, str, str]:
        words = [word for word in argv if word != "--"]
        if words[0] == "systemctl" and "show" in words:
            label = self.final if self.started else self.baseline
            if label is None:  # the recording has no `show` from before: one that never ran
                return 0, load("oneshot-success-gc").show_text("before").replace(
                    "rec-oneshot-ok.service", words[-1]), ""  # fmt: skip
            return 0, self.recorded.show_text(label), ""
        if words[0] == "systemctl" and "start" in words:
            self.started = True
            step = self.recorded.step(self.start)
            return step["exit_status"], step["stdout"], step["stderr"]
        if words[0] == "journalctl" and "--show-cursor" in words:
            return 0, "-- cursor: s=recorded;i=0\n", ""
        if words[0] == "journalctl" and "--output=json" in words:
            return 0, self.recorded.journal_text(self.journal) if self.started else "", ""
        if words[0] == "journalctl" and "--output=cat" in words:  # a failed run's log tail
            return 0, "", ""
        raise AssertionError(f"not in the recording: {words}")


def replay_stage(name: str, unit: str, **steps: str | None) -> UnitResult:
    """Run one stage with ``unit`` over a transport answering from scenario ``name``."""
    clock = FakeClock()
    host = RecordedHost(load(name), **steps)  # type: ignore[arg-type]
    context = StageContext(SystemdClient(host), clock, EngineSettings(), lambda event: None)

    run = run_stage(context, StagePlan("applications", False, 600.0, None, False, (unit,)))

    (result,) = run.result.units
    return result


def test_stage_replayed_from_a_recorded_success_is_succeeded() -> None:
    result = replay_stage("oneshot-success-gc", "rec-oneshot-ok.service", baseline="before",
                          start="start", final="after", journal="journal")  # fmt: skip

    assert result.outcome is Outcome.SUCCEEDED
    assert result.invocation_id == "00000000000000000000000000000001"


def test_stage_replayed_from_a_recorded_failure_is_failed() -> None:
    result = replay_stage("oneshot-failure", "rec-oneshot-fail.service", baseline=None,
                          start="start", final="after", journal="journal")  # fmt: skip

    assert (result.outcome, result.result, result.exit_status) == (Outcome.FAILED, "exit-code", 3)


def test_stage_replayed_from_a_recorded_condition_skip_after_a_success_is_skipped() -> None:
    result = replay_stage("condition-skip-after-success", "rec-cond-after-ok.service",
                          baseline="after-first", start="second-start", final="after-second",
                          journal="journal-second")  # fmt: skip

    assert result.outcome is Outcome.SKIPPED


def test_stage_replayed_from_a_recorded_stop_from_outside_is_cancelled() -> None:
    result = replay_stage("simple-stopped", "rec-simple-stopped.service", baseline=None,
                          start="start", final="after", journal="journal")  # fmt: skip

    assert result.outcome.value == "cancelled"


def test_unit_whose_journal_cannot_be_read_is_unknown_not_proven_by_show_alone() -> None:
    # The simulated host answers the journal read as real journalctl does for a user outside
    # the systemd-journal group (recorded: journal-unreadable); the unit stays loaded (a timer
    # references it), so `show` alone still describes the finished run.
    clock = FakeClock()
    unit = SimUnit("restic-backups-home.service", duration=3, gc=False)
    host = FakeHost("web1", clock, [unit], journal_readable=False)
    context = StageContext(SystemdClient(host), clock, EngineSettings(), lambda event: None)

    run = run_stage(context, StagePlan("applications", False, 600.0, None, False, (unit.name,)))

    (result,) = run.result.units
    assert result.outcome is Outcome.UNKNOWN
