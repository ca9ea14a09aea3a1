"""How recently each unit last ran, from systemd's own records: for `--max-age` and `status`.

Pure. The proof of a past success is the journal's record of one whole run: the "Starting"
or "Started" message of an invocation and its "Deactivated successfully", with no stop job
for it (issue 11, case 8); or, when the journal is silent, the loaded unit's own properties
(ConditionResult=yes, ExecMainCode=exited, ExecMainStatus=0). Never a cache of ours. A unit
whose last recorded run failed, was stopped, or has no such record, is not fresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from deploy_guard.guard.verdict import CLD_EXITED
from deploy_guard.systemd.parse import (
    MESSAGE_JOB_DONE,
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
    JournalEntry,
    UnitState,
    is_condition_skip,
)


@dataclass(frozen=True, slots=True)
class LastRun:
    """A unit's most recent finished run, as systemd recorded it."""

    unit: str
    succeeded: bool
    result: str
    invocation_id: str | None
    finished_at: datetime
    source: str  # "journal" or "show"


def last_runs(
    entries: Iterable[JournalEntry], states: Mapping[str, UnitState]
) -> dict[str, LastRun]:
    """The latest finished run of each unit: the newest terminal journal message, or the
    loaded unit's properties when they describe a finished run the journal does not show."""
    entries = tuple(entries)
    started, stopped = _started_and_stopped(entries)
    runs: dict[str, LastRun] = {}
    for entry in entries:
        if entry.message_id not in (MESSAGE_UNIT_SUCCESS, MESSAGE_UNIT_FAILURE):
            continue
        if entry.timestamp is None or not entry.unit:
            continue
        known = runs.get(entry.unit)
        if known is not None and known.finished_at >= entry.timestamp:
            continue
        succeeded = entry.message_id == MESSAGE_UNIT_SUCCESS
        result = "success" if succeeded else (entry.unit_result or "failed")
        if succeeded and entry.invocation_id in stopped:
            # SIGTERM is a clean exit for Type=simple: a stopped run ends "successfully".
            succeeded, result = False, "stopped"
        elif succeeded and entry.invocation_id not in started:
            succeeded, result = False, "unproven (no start of that run in the journal)"
        runs[entry.unit] = LastRun(
            entry.unit, succeeded, result, entry.invocation_id or None, entry.timestamp, "journal"
        )
    for unit, state in states.items():
        from_show = _from_show(unit, state)
        known = runs.get(unit)
        if from_show is not None and (known is None or from_show.finished_at > known.finished_at):
            runs[unit] = from_show
    return runs


def _started_and_stopped(entries: Iterable[JournalEntry]) -> tuple[set[str], set[str]]:
    """Invocations with a recorded start ("Starting", or a start job done), and those that a
    stop job ended."""
    started: set[str] = set()
    stopped: set[str] = set()
    for entry in entries:
        if not entry.invocation_id:
            continue
        if entry.job_type == "stop":
            stopped.add(entry.invocation_id)
        elif entry.message_id == MESSAGE_UNIT_STARTING or (
            # Type=simple logs no "Starting", only "Started" (job done; testbed). An unmet
            # condition logs a job-done message too, with the previous run's id: not a start.
            entry.message_id == MESSAGE_JOB_DONE
            and entry.job_type == "start"
            and entry.job_result == "done"
            and not is_condition_skip(entry)
        ):
            started.add(entry.invocation_id)
    return started, stopped


def _from_show(unit: str, state: UnitState) -> LastRun | None:
    finished = state.active_state in ("inactive", "failed") and state.job_id is None
    if not finished or not state.invocation_id or state.exec_main_exit is None:
        return None  # garbage-collected or never ran: defaults prove nothing
    if state.condition_result is not True:
        return None  # the last start was skipped: these properties are an older run's
    succeeded = (
        state.active_state == "inactive"
        and state.result == "success"
        and state.exec_main_code == CLD_EXITED
        and state.exec_main_status == 0
    )
    return LastRun(unit, succeeded, state.result, state.invocation_id, state.exec_main_exit, "show")


def fresh_units(
    runs: Mapping[str, LastRun],
    states: Mapping[str, UnitState],
    now: datetime,
    max_age: float,
) -> dict[str, LastRun]:
    """Units whose last run succeeded at most ``max_age`` seconds before ``now`` (the host's
    clock) and that are not running now (a running unit is joined, not skipped)."""
    fresh = {}
    for unit, run in runs.items():
        state = states.get(unit)
        if state is not None and (state.is_running or state.job_id is not None):
            continue
        age = (now - run.finished_at).total_seconds()
        if run.succeeded and 0 <= age <= max_age:
            fresh[unit] = run
    return fresh
