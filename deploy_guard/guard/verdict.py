"""Deciding what happened to one unit, from systemd's evidence. Pure and table-tested.

The rule (README, "What counts as success"): a unit succeeded only when a run that this guard
started or joined has an invocation id, that run ended, and systemd recorded it as
successful. Everything else is something else: still running, skipped, failed, or unknown.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Final

from deploy_guard.model import Outcome
from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
    JournalEntry,
    UnitState,
)


@dataclass(frozen=True, slots=True)
class Tracking:
    """What we know about a unit from the moment we started it."""

    unit: str
    unit_type: str
    joined: bool
    job_id: int | None
    baseline_invocation: str
    # The run an earlier poll attributed to us: it stays ours when the unit is later
    # garbage-collected and `show` forgets it (e.g. a start merged into a run another guard
    # had just started: that job leaves no journal message of its own).
    seen_invocation: str = ""


# `ExecMainCode=` is the siginfo code of the main process's end: CLD_EXITED (1) when it
# exited on its own, CLD_KILLED (2) or CLD_DUMPED (3) when a signal ended it.
CLD_EXITED: Final = 1


@dataclass(slots=True)
class UnitJournal:
    """systemd's journal messages about one unit since the stage began, indexed."""

    job_started: dict[int, JournalEntry] = field(default_factory=dict)
    job_done: dict[int, JournalEntry] = field(default_factory=dict)
    terminal: dict[str, JournalEntry] = field(default_factory=dict)
    # The first stop job message ("Stopping X...") of each invocation: someone stopped it.
    stop_jobs: dict[str, JournalEntry] = field(default_factory=dict)
    # Why the journal could not be read, when it could not: the proof is then incomplete.
    unreadable: str | None = None

    def add(self, entry: JournalEntry) -> None:
        """Index one entry (entries that tell us nothing are ignored)."""
        if entry.job_type == "stop" and entry.invocation_id:
            self.stop_jobs.setdefault(entry.invocation_id, entry)
        elif entry.job_id is not None and entry.job_type == "start":
            if entry.job_result:
                self.job_done[entry.job_id] = entry
            elif entry.message_id == MESSAGE_UNIT_STARTING:
                self.job_started[entry.job_id] = entry
        elif entry.invocation_id and entry.message_id in (
            MESSAGE_UNIT_SUCCESS,
            MESSAGE_UNIT_FAILURE,
        ):
            self.terminal[entry.invocation_id] = entry


class Phase(Enum):
    """Where a unit stands at one poll."""

    PENDING = "pending"  # queued, or no evidence yet
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Judgement:
    """The answer for one unit at one poll."""

    phase: Phase
    invocation_id: str | None = None
    outcome: Outcome | None = None
    result: str | None = None
    exit_status: int | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # PENDING with no queued job and no trace of a run: if this lasts, the run is unprovable.
    unaccounted: bool = False


def _journal_invocation(tracking: Tracking, journal: UnitJournal) -> str | None:
    """The run our own start job created or merged into, per systemd's messages about it.

    A job that created no run (an unmet condition) still logs the unit's current
    INVOCATION_ID, which is the previous run's (issue 11, case 1): an id equal to the
    baseline is that earlier run, never ours, unless we joined that very run.
    """
    if tracking.job_id is None:
        return None
    for entry in (journal.job_started.get(tracking.job_id), journal.job_done.get(tracking.job_id)):
        if entry is None or not entry.invocation_id:
            continue
        if entry.invocation_id == tracking.baseline_invocation and not tracking.joined:
            continue
        return entry.invocation_id
    return None


def _our_invocation(
    tracking: Tracking, state: UnitState | None, journal: UnitJournal
) -> str | None:
    from_journal = _journal_invocation(tracking, journal)
    if tracking.joined:
        # The run we joined, unless it ended before our start call: then our job made a
        # new run, and that is the one to judge.
        return from_journal or tracking.baseline_invocation or None
    if from_journal is not None:
        return from_journal
    if tracking.seen_invocation:
        return tracking.seen_invocation
    if state is None or not state.invocation_id:
        return None
    # `show` names a new run since our baseline. It is ours when our job is running it, or
    # when no job is pending any more. While our job is still queued (Job= ours, unit not
    # starting) the new id is a run that ended before our job ran: not ours.
    # A garbage-collected unit shows an empty id and lands above.
    is_new = state.invocation_id != tracking.baseline_invocation
    ours_running = state.job_id == tracking.job_id and state.active_state == "activating"
    return state.invocation_id if is_new and (state.job_id is None or ours_running) else None


def _from_state(invocation: str, state: UnitState | None) -> Judgement | None:
    if state is None or state.invocation_id != invocation or state.job_id is not None:
        return None
    finished = state.active_state in ("inactive", "failed") or (
        state.active_state == "active" and state.sub_state == "exited"
    )
    if not finished:
        return None
    succeeded = state.active_state != "failed" and state.result == "success"
    killed = _signal_end(state)
    reason: str | None
    if killed is not None and state.result in ("success", "signal"):
        # SIGTERM is a clean exit for Type=simple (Result=success): stopped, not finished.
        outcome, reason = Outcome.CANCELLED, killed
    elif succeeded and (state.exec_main_code != CLD_EXITED or state.exec_main_status != 0):
        # Success from `show` alone needs the main process's own clean exit (issue 11, case 3).
        outcome = Outcome.UNKNOWN
        reason = (
            f"systemd says Result=success but ExecMainCode={state.exec_main_code} "
            f"ExecMainStatus={state.exec_main_status}: no proven clean exit"
        )
    else:
        outcome = Outcome.SUCCEEDED if succeeded else Outcome.FAILED
        reason = None if succeeded else f"systemd result {state.result}"
    return Judgement(
        Phase.DONE,
        invocation,
        outcome,
        state.result,
        state.exec_main_status,
        reason=reason,
        started_at=state.exec_main_start,
        finished_at=state.exec_main_exit,
    )


def _signal_name(number: int | None) -> str:
    try:
        return signal.Signals(number or 0).name
    except ValueError:
        return f"signal {number}"


def _signal_end(state: UnitState) -> str | None:
    """ "main process killed by SIGTERM" when `show` says a signal ended the main process."""
    if state.exec_main_code is None or state.exec_main_code == CLD_EXITED:
        return None
    if state.exec_main_code not in (2, 3):  # CLD_KILLED, CLD_DUMPED
        return None
    return f"main process killed by {_signal_name(state.exec_main_status)}"


def _stopped(invocation: str, journal: UnitJournal) -> str | None:
    """ "stopped by stop job N (...)" when the journal shows a stop job for this run."""
    entry = journal.stop_jobs.get(invocation)
    if entry is None:
        return None
    job = f" {entry.job_id}" if entry.job_id is not None else ""
    what = f" ({entry.message})" if entry.message else ""
    return f"stopped by stop job{job}{what}"


def _cancelled(invocation: str, state: UnitState | None, journal: UnitJournal) -> str | None:
    """Why this run was ended from outside (a stop job or a signal), or None."""
    killed = _signal_end(state) if state is not None and state.invocation_id == invocation else None
    stopped = _stopped(invocation, journal)
    parts = [part for part in (stopped, killed) if part]
    return "; ".join(parts) or None


def _from_journal(
    tracking: Tracking, invocation: str, state: UnitState | None, journal: UnitJournal
) -> Judgement | None:
    terminal = journal.terminal.get(invocation)
    cancelled = _cancelled(invocation, state, journal)
    if terminal is not None:
        result = (
            "success"
            if terminal.message_id == MESSAGE_UNIT_SUCCESS
            else (terminal.unit_result or "failed")
        )
        if cancelled is not None and result in ("success", "signal"):
            # Issue 11, case 2: "Deactivated successfully" after a stop is not a finished backup.
            return Judgement(
                Phase.DONE,
                invocation,
                Outcome.CANCELLED,
                result,
                reason=cancelled,
                finished_at=terminal.timestamp,
            )
        if terminal.message_id == MESSAGE_UNIT_SUCCESS:
            return Judgement(
                Phase.DONE,
                invocation,
                Outcome.SUCCEEDED,
                "success",
                finished_at=terminal.timestamp,
            )
        return Judgement(
            Phase.DONE,
            invocation,
            Outcome.FAILED,
            terminal.unit_result or "failed",
            reason=terminal.message,
            finished_at=terminal.timestamp,
        )
    done = journal.job_done.get(tracking.job_id) if tracking.job_id is not None else None
    if done is None or done.invocation_id != invocation:
        return None
    if done.job_result == "canceled" or (done.job_result != "done" and cancelled is not None):
        return Judgement(
            Phase.DONE,
            invocation,
            Outcome.CANCELLED,
            done.job_result,
            reason=cancelled or f"start job canceled ({done.message})",
            finished_at=done.timestamp,
        )
    if done.job_result != "done":
        return Judgement(
            Phase.DONE,
            invocation,
            Outcome.FAILED,
            done.job_result,
            reason=done.message,
            finished_at=done.timestamp,
        )
    if tracking.unit_type == "oneshot" and cancelled is None:
        # A oneshot's start job completes only after its ExecStart= processes exited
        # successfully; for other types "done" only means "started".
        return Judgement(
            Phase.DONE, invocation, Outcome.SUCCEEDED, "success", finished_at=done.timestamp
        )
    return None


def _started_at(tracking: Tracking, journal: UnitJournal) -> datetime | None:
    if tracking.job_id is None:
        return None
    entry = journal.job_started.get(tracking.job_id) or journal.job_done.get(tracking.job_id)
    return entry.timestamp if entry is not None else None


def _enriched(
    done: Judgement, tracking: Tracking, state: UnitState | None, journal: UnitJournal
) -> Judgement:
    """Fill what the deciding source lacked (exit status, times) from the other source,
    only when the `show` state describes the same invocation."""
    same_run = state is not None and state.invocation_id == done.invocation_id
    return replace(
        done,
        exit_status=(
            done.exit_status
            if done.exit_status is not None or not same_run or state is None
            else state.exec_main_status
        ),
        started_at=done.started_at
        or _started_at(tracking, journal)
        or (state.exec_main_start if same_run and state else None),
        finished_at=done.finished_at or (state.exec_main_exit if same_run and state else None),
    )


def _unproven_without_journal(done: Judgement, journal: UnitJournal) -> Judgement:
    """Issue 11, case 4: with an unreadable journal, `show` alone cannot prove a success
    (a stop job, a condition skip, a run that was not ours leave no mark there)."""
    if journal.unreadable is None or done.outcome is not Outcome.SUCCEEDED:
        return done
    reason = f"the journal could not be read ({journal.unreadable}): the run is unproven"
    return replace(done, outcome=Outcome.UNKNOWN, reason=reason)


def judge(tracking: Tracking, state: UnitState | None, journal: UnitJournal) -> Judgement:
    """Decide where a unit stands, from the latest `show` state and the journal so far."""
    invocation = _our_invocation(tracking, state, journal)
    if invocation is not None:
        done = _from_journal(tracking, invocation, state, journal) or _from_state(invocation, state)
        if done is not None:
            return _unproven_without_journal(_enriched(done, tracking, state, journal), journal)
        # The run is ours but `show` no longer describes it (garbage-collected) and the journal
        # has no end for it yet: wait for the journal, within the evidence grace.
        gone = state is None or (
            state.invocation_id != invocation and state.job_id is None and not state.is_running
        )
        return Judgement(
            Phase.RUNNING, invocation, started_at=_started_at(tracking, journal), unaccounted=gone
        )
    done_entry = journal.job_done.get(tracking.job_id) if tracking.job_id is not None else None
    if done_entry is not None:
        # The job finished without ever creating a run.
        if done_entry.job_result in ("done", "skipped"):
            condition = "condition" in done_entry.message.lower()
            return Judgement(
                Phase.DONE,
                None,
                Outcome.SKIPPED,
                "unmet-condition" if condition else done_entry.job_result,
                reason=done_entry.message or "skipped by an unmet condition",
                finished_at=done_entry.timestamp,
            )
        return Judgement(
            Phase.DONE,
            None,
            Outcome.FAILED,
            done_entry.job_result,
            reason=done_entry.message or f"start job {done_entry.job_result}",
            finished_at=done_entry.timestamp,
        )
    queued = state is not None and state.job_id is not None
    return Judgement(Phase.PENDING, unaccounted=not queued)
