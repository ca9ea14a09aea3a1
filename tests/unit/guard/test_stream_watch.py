"""Watching a stage through `journalctl --follow` (issue 15): the stream decides when to
look, `show` and the journal still decide what happened, and polling takes over when the
stream breaks. Calls are counted on the transport; no timing is asserted beyond the fake
clock's."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from deploy_guard.model import Outcome, StageOutcome
from deploy_guard.systemd.client import SystemdClient
from tests.unit.fakesystemd import FakeClock, FakeHost, SimUnit
from tests.unit.guard.test_engine import StageHarness, results, stage_plan

STEP = 0.125  # the fake stream's time step: exact in binary, so times compare exactly


class FakeFollow:
    """`journalctl --follow` on a fake host, as `LineStream`: time moves while it waits."""

    def __init__(self, host: StreamingHost, argv: Sequence[str], breaks_at: float | None):
        self.host, self.breaks_at, self.ended = host, breaks_at, False
        words = list(argv[argv.index("journalctl") + 1 :])
        assert "--follow" in words, words
        self.query = [w for w in words if w not in ("--follow", "--lines=0")]
        self.query = [w for w in self.query if w not in ("--no-pager", "--quiet", "--boot")]
        self.seen = {json.loads(line)["__CURSOR"] for line in self._read()}
        if any(w.startswith("--cursor=") for w in words):
            self.seen.discard(next(w for w in words if w.startswith("--cursor=")).partition("=")[2])

    def _read(self) -> list[str]:
        clock = self.host.clock
        self.host._advance(clock.monotonic())
        _status, out, _err = self.host._journalctl(self.query, clock.monotonic())
        return out.splitlines()

    def lines(self, timeout: float) -> list[str] | None:
        waited = 0.0
        while True:
            if self.breaks_at is not None and self.host.clock.monotonic() >= self.breaks_at:
                self.ended = True
                return None
            new = [line for line in self._read() if json.loads(line)["__CURSOR"] not in self.seen]
            self.seen |= {json.loads(line)["__CURSOR"] for line in new}
            if new or waited >= timeout:
                return new
            step = min(STEP, timeout - waited)
            self.host.clock.sleep(step)
            waited += step

    def close(self) -> None:
        self.host.closed_streams += 1


class StreamingHost(FakeHost):
    """A fake host whose transport can stream; every stream opened is counted."""

    def __init__(self, *args: object, breaks_at: float | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.breaks_at = breaks_at
        self.streams: list[tuple[float, tuple[str, ...]]] = []
        self.closed_streams = 0

    def open_stream(self, argv: Sequence[str]) -> FakeFollow:
        self.streams.append((self.clock.monotonic(), tuple(argv)))
        return FakeFollow(self, argv, self.breaks_at)


def harness(clock: FakeClock, units: Sequence[SimUnit], **options: object) -> StageHarness:
    made = StageHarness(clock, [])
    made.host = StreamingHost("web1", clock, units, **options)
    return made


def test_a_stage_is_watched_with_one_stream_and_one_show_per_end(clock: FakeClock) -> None:
    units = [SimUnit("a.service", duration=2.5), SimUnit("b.service", duration=4.5),
             SimUnit("c.service", duration=6.5)]  # fmt: skip
    stage = harness(clock, units)

    run = stage.run(stage_plan("a.service", "b.service", "c.service"), sweep_interval=60.0)

    host = stage.host
    assert isinstance(host, StreamingHost)
    assert len(host.streams) == 1
    assert host.closed_streams == 1
    assert "--follow" in host.streams[0][1]
    shows = host.commands("show")
    assert [units for _at, units in shows] == [
        ("a.service", "b.service", "c.service"),  # the baseline
        ("a.service",),  # each unit is read when systemd says it ended
        ("b.service",),
        ("c.service",),
    ]
    # ... within the short wait for the rest of a burst of messages (fake time)
    assert [at for at, _units in shows] == pytest.approx([0.0, 2.5, 4.5, 6.5], abs=0.1)
    finished = [stage.finished_at(u) for u in ("a.service", "b.service", "c.service")]
    assert finished == pytest.approx([2.5, 4.5, 6.5], abs=0.1)
    assert all(r.outcome is Outcome.SUCCEEDED and r.invocation_id for r in results(run).values())


def test_the_stream_only_says_when_show_and_the_journal_say_what(clock: FakeClock) -> None:
    units = [
        SimUnit("ok.service", duration=1.0),
        SimUnit("bad.service", duration=2.0, exit_status=3),
        SimUnit("skip.service", duration=1.0, condition_met=False),
    ]
    stage = harness(clock, units)

    run = stage.run(stage_plan("ok.service", "bad.service", "skip.service"))

    found = results(run)
    assert found["ok.service"].outcome is Outcome.SUCCEEDED
    assert found["bad.service"].outcome is Outcome.FAILED
    assert found["bad.service"].exit_status == 3
    assert found["skip.service"].outcome is Outcome.SKIPPED
    assert run.result.outcome is StageOutcome.FAILED


def test_polling_takes_over_when_the_stream_keeps_breaking(clock: FakeClock) -> None:
    units = [SimUnit("a.service", duration=2.5), SimUnit("b.service", duration=6.5)]
    stage = harness(clock, units, breaks_at=0.0)

    run = stage.run(stage_plan("a.service", "b.service"), poll_interval=1.0)

    host = stage.host
    assert isinstance(host, StreamingHost)
    assert len(host.streams) == 3  # reopened from the cursor twice, then given up
    assert all(r.outcome is Outcome.SUCCEEDED for r in results(run).values())
    shows = [at for at, _units in host.commands("show")]
    assert shows[-3:] == [5.0, 6.0, 7.0]  # polling every poll_interval to the end


def test_a_transport_that_cannot_stream_is_polled(clock: FakeClock) -> None:
    host = FakeHost("web1", clock, [SimUnit("a.service", duration=2.5)])

    assert SystemdClient(host).follow_journal(None, ["a.service"]) is None
