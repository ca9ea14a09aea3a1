"""Running one stage on one host: start its units together, watch them with one `show` and
one journal read per poll, enforce each unit's deadline, and judge each run (verdict.judge).

When the transport can stream, a poll happens when `journalctl --follow` pushes one of
systemd's messages about a watched unit (and `show` reads only the units it named), with a
full poll every `sweep_interval` as a safety net; when the stream breaks, polling every
`poll_interval` takes over. The stream decides when to look, never what happened.

Longer than most modules on purpose: one stage's watch is one state machine (`_StageRunner`),
whose steps share the watches, the stream and the deadlines; split across files it would
need those passed back and forth.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from deploy_guard.clock import Clock
from deploy_guard.errors import (
    CommandTimeout,
    ConnectionLost,
    DeployGuardError,
    HostRebooted,
    HostUnreachable,
    Interrupted,
    without_host,
)
from deploy_guard.events import EventSink, UnitFinished, UnitStarted, UnitStopping
from deploy_guard.guard.freshness import fresh_units, last_runs
from deploy_guard.guard.recovery import Recovery
from deploy_guard.guard.verdict import Judgement, Phase, Tracking, UnitJournal, judge
from deploy_guard.model import Outcome, StageOutcome, StagePlan, StageResult, UnitResult
from deploy_guard.systemd.client import JournalFollow, SystemdClient
from deploy_guard.systemd.parse import MESSAGE_UNIT_STARTING, UnitState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Timing knobs of the engine (config: poll_interval, stop_grace, log_lines)."""

    poll_interval: float = 0.5
    stop_grace: float = 15.0
    log_lines: int = 20
    # journald writes asynchronously (FIELD-NOTES): how long a unit may show no trace of a
    # run before we stop waiting for evidence and call it unknown.
    evidence_grace: float = 10.0
    # --max-age: a unit whose last run succeeded this recently is `fresh`, not started again.
    max_age: float | None = None
    # How long a host may stay unreachable mid-run before its units in flight are `unknown`.
    reconnect_limit: float = 300.0
    # Ask the server for a keepalive answer within this before each poll (a dead server
    # that keeps the TCP connection open is seen by nothing else; FIELD-NOTES).
    keepalive_timeout: float = 10.0
    # On interrupt: stop the units in flight instead of leaving them to finish.
    cancel_remote: bool = False
    # Watch with `journalctl --follow` when the transport can stream (polling otherwise).
    stream: bool = True
    # While streaming: a full poll at least this often (and 5x the last full `show`).
    sweep_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage needs from its host run."""

    client: SystemdClient
    clock: Clock
    settings: EngineSettings
    emit: EventSink
    recovery: Recovery = field(default_factory=lambda: Recovery(None, 300.0))
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class StageRun:
    """A stage's result, and the error that ended it early when the host was lost."""

    result: StageResult
    fatal: str | None = None


@dataclass(slots=True)
class _Watch:
    tracking: Tracking
    started_at: datetime
    deadline: float
    journal: UnitJournal = field(default_factory=UnitJournal)
    invocation_id: str | None = None
    stop_requested: float | None = None
    killed: float | None = None
    unaccounted_since: float | None = None


def _joins_running_run(state: UnitState) -> bool:
    """Starting a unit that is already running merges into that run (FIELD-NOTES): we join
    it. A unit that is stopping gets a new run after the stop, so that is not a join."""
    return state.active_state in ("activating", "reloading") or (
        state.active_state == "active" and state.sub_state != "exited"
    )


MANIFEST_UNIT_MISSING: Final = (
    "listed in the host's manifest but unknown to systemd (the job was dropped from the "
    "configuration, or failed to build)"
)


def _load_problem(state: UnitState, source: str) -> tuple[Outcome, str] | None:
    if state.load_state == "not-found" and source == "manifest":
        return Outcome.FAILED, MANIFEST_UNIT_MISSING
    if state.load_state != "loaded" and source == "manifest":
        return Outcome.FAILED, (
            f"listed in the host's manifest but systemd cannot start it "
            f"(LoadState={state.load_state})"
        )
    if state.load_state == "not-found":
        return Outcome.FAILED, "no such unit on the host"
    if state.load_state != "loaded":
        return Outcome.FAILED, f"unit cannot be started (LoadState={state.load_state})"
    if state.active_state == "active" and state.sub_state == "exited":
        return Outcome.SKIPPED, "already active (RemainAfterExit=yes): starting it runs nothing"
    return None


class _StageRunner:
    def __init__(self, context: StageContext, stage: StagePlan) -> None:
        self.context = context
        self.client = context.client
        self.clock = context.clock
        self.stage = stage
        self.queue = list(dict.fromkeys(stage.units))
        self.watches: dict[str, _Watch] = {}
        self.results: dict[str, UnitResult] = {}
        # Units between "taken off the queue" and "watched" must still get a result when the
        # connection is lost there: not started while checked, perhaps started while starting.
        self.checking: list[str] = []
        self.launching: list[str] = []
        self.aliases: dict[str, str] = {}
        self.cursor: str | None = None
        self.stage_cursor: str | None = None  # where this stage began in the journal
        self.cursor_taken = False  # with the first batch's baseline `show`
        self.follow: JournalFollow | None = None
        self.stream_failures = 0
        self.sweep_due = 0.0  # monotonic time of the next full poll while streaming
        self.full_show_seconds = 0.0

    def run(self) -> StageRun:
        fatal = None
        try:
            self._skip_fresh()
            while self.queue or self.watches:
                self._check_interrupt()
                self._launch_next()
                if self.watches:
                    only = self._wait()
                    self._check_interrupt()
                    self._poll_or_recover(only)
            self._close_follow()
            self._attach_log_tails()
        except Interrupted as exc:
            fatal = str(exc)
            self._abandon_interrupted()
        except HostRebooted as exc:
            fatal = exc.reason
            self._abandon(fatal, Outcome.FAILED)
        except DeployGuardError as exc:
            fatal = without_host(exc, self.client.host)
            self._abandon(fatal)
        finally:
            self._close_follow()
        units = self._planned_results()
        succeeded = all(result.outcome.is_success for result in units)
        outcome = StageOutcome.SUCCEEDED if succeeded else StageOutcome.FAILED
        return StageRun(StageResult(self.stage.name, self.stage.critical, outcome, units), fatal)

    # -- starting ---------------------------------------------------------------------------

    def _skip_fresh(self) -> None:
        """--max-age: units whose last run succeeded recently enough are `fresh`, not run."""
        max_age = self.context.settings.max_age
        if not max_age or not self.queue:
            return
        self.checking = list(self.queue)
        states = dict(zip(self.queue, self.client.show(self.queue), strict=True))
        # Every boot, not only max_age: a fresh run must show its start too (issue 11, case 8),
        # and a long run's start can be older than max_age.
        entries = self.client.finished_runs(self.queue, since_seconds=None, with_starts=True)
        now = self.client.host_time()
        self.checking = []
        fresh = fresh_units(last_runs(entries, states), states, now, max_age)
        for unit in list(self.queue):
            run = fresh.get(unit) or fresh.get(states[unit].unit)
            if run is None:
                continue
            self.queue.remove(unit)
            age = (now - run.finished_at).total_seconds()
            self._record(
                UnitResult(
                    unit,
                    Outcome.FRESH,
                    result="success",
                    invocation_id=run.invocation_id,
                    finished_at=run.finished_at,
                    reason=f"succeeded {age:.0f}s ago ({run.source})",
                    age_s=round(age, 3),
                )
            )

    def _launch_next(self) -> None:
        capacity = (self.stage.max_parallel or len(self.stage.units)) - len(self.watches)
        batch, self.queue = self.queue[:capacity], self.queue[capacity:]
        if not batch:
            return
        self.checking = batch
        shown = self.clock.monotonic()
        if self.cursor_taken:
            states = self.client.show(batch)
        else:
            # The cursor comes first: anything that happens after our baseline is after it.
            # Both in one round trip, in that order (the start needs the baseline's answer:
            # units that cannot load, are active(exited) or are aliases are not started).
            self.cursor, states = self.client.cursor_and_show(batch)
            self.stage_cursor, self.cursor_taken = self.cursor, True
        baseline = dict(zip(batch, states, strict=True))
        self.checking = []
        # While streaming, the first full poll comes after a sweep, scaled by what a `show`
        # of these units costs: reading them all while systemd starts them slows it down.
        sweep = max(self.context.settings.sweep_interval, 5 * (self.clock.monotonic() - shown))
        self.sweep_due = self.clock.monotonic() + sweep
        to_start: dict[str, UnitState] = {}
        for unit, state in baseline.items():
            if (problem := _load_problem(state, self.stage.source)) is not None:
                self._finish_early(unit, *problem)
            elif state.unit != unit and (
                state.unit in to_start or state.unit in self.watches or state.unit in self.results
            ):
                log.debug("%s: %s is an alias of %s", self.client.host, unit, state.unit)
                self.aliases[unit] = state.unit
            else:
                to_start[state.unit] = state
        if not to_start:
            return
        self.launching = list(to_start)
        answer = self.client.start(list(to_start))
        self.launching = []
        now, started_at = self.clock.monotonic(), self.clock.now()
        for unit, state in to_start.items():
            if unit in answer.errors:
                self._finish_early(unit, Outcome.FAILED, f"start refused: {answer.errors[unit]}")
                continue
            joined = _joins_running_run(state)
            tracking = Tracking(
                unit, state.type, joined, answer.jobs.get(unit), state.invocation_id
            )
            self.watches[unit] = _Watch(tracking, started_at, now + self.stage.timeout_s)
            deadline = started_at + timedelta(seconds=self.stage.timeout_s)
            self.context.emit(
                UnitStarted(self.client.host, self.stage.name, unit, joined, started_at, deadline)
            )

    # -- watching ---------------------------------------------------------------------------

    def _check_interrupt(self) -> None:
        if self.context.cancel.is_set():
            raise Interrupted("interrupted")

    def _wait(self) -> set[str] | None:
        """Until it is time to look: the units the journal stream named (their `show` is
        read), or None for a full poll (the sweep, or polling without a stream)."""
        settings = self.context.settings
        follow = self._following()
        if follow is None:
            self.clock.sleep(settings.poll_interval)
            return None
        now = self.clock.monotonic()
        wake = self.sweep_due
        for watch in self.watches.values():
            # A unit being stopped is looked at every poll_interval (SIGKILL escalation).
            due = now + settings.poll_interval if watch.stop_requested else watch.deadline
            wake = min(wake, due)
        while True:
            remaining = wake - self.clock.monotonic()
            if remaining <= 0:
                return None
            # In slices, so that Ctrl-C is seen at once.
            entries = follow.wait(min(remaining, 0.25))
            if entries is None:
                log.warning("%s: the journal stream broke; polling", self.client.host)
                self._close_follow()
                self.stream_failures += 1
                return None
            named = {e.unit for e in entries if e.message_id != MESSAGE_UNIT_STARTING}
            if named & set(self.watches):
                return named | self._settle(follow)
            if self.context.cancel.is_set():
                return None

    def _settle(self, follow: JournalFollow) -> set[str]:
        """Units ending together (a big stage) are named in bursts: gather the rest of a
        burst (20 ms of quiet, at most 100 ms) so that one look reads them all."""
        more: set[str] = set()
        deadline = self.clock.monotonic() + 0.1
        while self.clock.monotonic() < deadline:
            entries = follow.wait(0.02)
            if not entries:  # quiet, or broken (the next wait sees that)
                break
            more |= {e.unit for e in entries if e.message_id != MESSAGE_UNIT_STARTING}
        return more

    def _following(self) -> JournalFollow | None:
        """The journal stream for the watched units from our cursor, (re)opened as needed;
        None when the transport cannot stream or the stream broke too often."""
        if not self.context.settings.stream or self.stream_failures >= 3:
            return None
        if self.follow is not None and (
            self.follow.ended or not set(self.watches) <= self.follow.units
        ):
            self._close_follow()
        if self.follow is None:
            units = sorted({*self.stage.units, *self.watches})
            self.follow = self.client.follow_journal(self.cursor, units)
            if self.follow is None:
                self.stream_failures = 3  # this transport cannot stream
        return self.follow

    def _close_follow(self) -> None:
        if self.follow is not None:
            self.follow.close()
            self.follow = None

    def _poll_or_recover(self, only: set[str] | None = None) -> None:
        """A lost or dead connection is not the end: the runs go on under PID 1, so get the
        host back and keep watching them (the journal cursor has kept our place).

        ``only``: the units the journal stream just named; the server has just answered, so
        no keepalive is needed, and the others are read at the next full poll."""
        alive = getattr(self.client.transport, "alive", None)
        try:
            if (
                only is None
                and alive is not None
                and not alive(self.context.settings.keepalive_timeout)
            ):
                raise ConnectionLost(self.client.host, "the server stopped answering keepalives")
            self._poll(only)
        except (ConnectionLost, CommandTimeout, HostUnreachable) as exc:
            self._close_follow()  # reopened from our cursor; the next poll reads every unit
            self.sweep_due = 0.0
            self.context.recovery.recover(self.client, self.clock, exc)

    def _poll(self, only: set[str] | None = None) -> None:
        units = list(self.watches)
        now = self.clock.monotonic()
        if only is not None:  # a unit past its deadline or owing evidence is always read
            units = [unit for unit in units if unit in only or self._needs_look(unit, now)]
        started = self.clock.monotonic()
        # One round trip: `show` first, then the journal since our cursor. A journal that
        # cannot be read leaves the cursor where it was (a later read sees what we missed)
        # and marks every watched unit's evidence incomplete (issue 11, case 4).
        answer = self.client.show_and_journal(units, self.cursor, list(self.watches))
        states = dict(zip(units, answer.states, strict=True))
        entries, self.cursor = answer.entries, answer.cursor
        for watch in self.watches.values():
            watch.journal.unreadable = answer.unreadable
        if only is None:
            self.full_show_seconds = self.clock.monotonic() - started
            sweep = max(self.context.settings.sweep_interval, 5 * self.full_show_seconds)
            self.sweep_due = self.clock.monotonic() + sweep
        for entry in entries:
            if entry.unit in self.watches:
                self.watches[entry.unit].journal.add(entry)
        now = self.clock.monotonic()
        expiring: list[str] = []
        killing: list[_Watch] = []
        for unit in units:
            watch, state = self.watches[unit], states[unit]
            if watch.stop_requested is not None:
                if self._confirm_stopped(watch, state, now):
                    killing.append(watch)
                continue
            judgement = judge(watch.tracking, state, watch.journal)
            if judgement.invocation_id and not watch.tracking.seen_invocation:
                watch.tracking = replace(watch.tracking, seen_invocation=judgement.invocation_id)
            watch.invocation_id = judgement.invocation_id or watch.invocation_id
            if judgement.phase is Phase.DONE:
                self._finish(watch, judgement)
            elif now >= watch.deadline:
                expiring.append(unit)
            elif judgement.unaccounted:
                self._check_evidence(watch, now)
            else:
                watch.unaccounted_since = None
        if killing:  # one call for every unit that ignored SIGTERM
            log.warning(
                "%s: %s ignored SIGTERM; sending SIGKILL",
                self.client.host,
                ", ".join(w.tracking.unit for w in killing),
            )
            self.client.kill([states[w.tracking.unit].unit for w in killing])
            for watch in killing:
                watch.killed = now
        if expiring:
            self.client.stop(expiring)
            for unit in expiring:
                self.watches[unit].stop_requested = now
                self.context.emit(UnitStopping(self.client.host, self.stage.name, unit))

    def _needs_look(self, unit: str, now: float) -> bool:
        watch = self.watches[unit]
        return (
            now >= watch.deadline
            or watch.stop_requested is not None
            or watch.unaccounted_since is not None
        )

    def _check_evidence(self, watch: _Watch, now: float) -> None:
        if watch.unaccounted_since is None:
            watch.unaccounted_since = now
        elif now - watch.unaccounted_since >= self.context.settings.evidence_grace:
            reason = "systemd has no record of this run (no job, no invocation, no journal entry)"
            unknown = Judgement(Phase.DONE, watch.invocation_id, Outcome.UNKNOWN, reason=reason)
            self._finish(watch, unknown)

    def _confirm_stopped(self, watch: _Watch, state: UnitState, now: float) -> bool:
        """A unit past its deadline: stopped, escalating to SIGKILL, and confirmed. True
        when it is to be sent SIGKILL now (the caller sends one call for all of them)."""
        grace = self.context.settings.stop_grace
        assert watch.stop_requested is not None
        if not state.is_running and state.job_id is None:
            ours = state.invocation_id == watch.invocation_id and state.invocation_id
            self._finish(
                watch,
                Judgement(
                    Phase.DONE,
                    watch.invocation_id,
                    Outcome.TIMED_OUT,
                    state.result if ours else "timeout",
                    state.exec_main_status if ours else None,
                    reason=f"did not finish within {self.stage.timeout_s:.0f}s; stopped",
                ),
            )
        elif watch.killed is None and now - watch.stop_requested >= grace:
            return True
        elif watch.killed is not None and now - watch.killed >= grace:
            reason = "did not finish in time and is still running after SIGKILL"
            self._finish(
                watch, Judgement(Phase.DONE, watch.invocation_id, Outcome.TIMED_OUT, reason=reason)
            )
        return False

    # -- results ----------------------------------------------------------------------------

    def _finish(self, watch: _Watch, judgement: Judgement) -> None:
        unit = watch.tracking.unit
        del self.watches[unit]
        assert judgement.outcome is not None
        started = judgement.started_at or (watch.started_at if judgement.invocation_id else None)
        result = UnitResult(
            unit=unit,
            outcome=judgement.outcome,
            joined=watch.tracking.joined,
            result=judgement.result,
            exit_status=judgement.exit_status,
            invocation_id=judgement.invocation_id,
            started_at=started,
            finished_at=judgement.finished_at or self.clock.now(),
            reason=judgement.reason,
        )
        self._record(result)

    def _finish_early(self, unit: str, outcome: Outcome, reason: str) -> None:
        self._record(UnitResult(unit=unit, outcome=outcome, reason=reason))

    def _record(self, result: UnitResult) -> None:
        self.results[result.unit] = result
        self.context.emit(UnitFinished(self.client.host, self.stage.name, result))

    def _abandon(self, reason: str, outcome: Outcome = Outcome.UNKNOWN) -> None:
        """The host was lost: what was in flight is unknown (or failed, when the host
        rebooted under it), what was queued never started."""
        prefix = "" if outcome is Outcome.FAILED else "lost contact: "
        for watch in list(self.watches.values()):
            lost = Judgement(Phase.DONE, watch.invocation_id, outcome, reason=f"{prefix}{reason}")
            self._finish(watch, lost)
        for unit in self.launching:
            self._finish_early(unit, Outcome.UNKNOWN, f"lost contact while starting it: {reason}")
        for unit in [*self.checking, *self.queue]:
            self._finish_early(unit, Outcome.NOT_STARTED, "host lost before the unit started")
        self.checking, self.launching, self.queue = [], [], []

    def _abandon_interrupted(self) -> None:
        """Ctrl-C: the runs in flight are left to finish (they are safe), or stopped with
        --cancel-remote; either way nothing about them is proven."""
        units = list(self.watches)
        if self.context.settings.cancel_remote and units:
            with contextlib.suppress(DeployGuardError):
                self.client.stop(units)
            reason = "interrupted: stopped on request (--cancel-remote)"
        else:
            reason = "interrupted: left running on the host"
        for unit in units:
            watch = self.watches[unit]
            self._finish(
                watch, Judgement(Phase.DONE, watch.invocation_id, Outcome.UNKNOWN, reason=reason)
            )
        for unit in [*self.launching, *self.checking, *self.queue]:
            self._finish_early(unit, Outcome.NOT_STARTED, "interrupted before it started")
        self.checking, self.launching, self.queue = [], [], []

    def _planned_results(self) -> tuple[UnitResult, ...]:
        """A result for every planned unit, in plan order. Fail closed: a unit that somehow
        has none is `unknown`, never silently absent from a green stage."""
        results = []
        for unit in dict.fromkeys(self.stage.units):
            found = self.results.get(unit) or self.results.get(self.aliases.get(unit, ""))
            if found is None:
                found = UnitResult(unit, Outcome.UNKNOWN, reason="no result was recorded")
            results.append(found if found.unit == unit else replace(found, unit=unit))
        return tuple(results)

    def _attach_log_tails(self) -> None:
        lines = self.context.settings.log_lines
        pending: dict[str, UnitResult] = {}
        for unit, result in list(self.results.items()):
            if result.outcome.is_success or not lines:
                continue
            if not result.invocation_id:
                # No run, so no run log: systemd's own word on the job is the record.
                if result.reason:
                    self.results[unit] = replace(result, log_tail=(result.reason,))
                continue
            pending[unit] = result
        # One round trip per attempt for every failed run (no per-unit round trip).
        # journald writes asynchronously: the run's last lines may lag its end.
        for attempt in range(3):
            if not pending:
                break
            runs = [(result.invocation_id or "", unit) for unit, result in pending.items()]
            tails = self.client.log_tails(runs, lines, since=self.stage_cursor)
            for (unit, result), tail in zip(list(pending.items()), tails, strict=True):
                if tail or attempt == 2:
                    self.results[unit] = replace(result, log_tail=tail)
                    del pending[unit]
            if pending:
                self.clock.sleep(min(0.5, self.context.settings.poll_interval))


def run_stage(context: StageContext, stage: StagePlan) -> StageRun:
    """Run every unit of ``stage`` and judge each; never raises for a host problem (the
    error is in `StageRun.fatal` and the units in flight are `unknown`)."""
    return _StageRunner(context, stage).run()
