"""How recently each unit last ran, from systemd's own records: for `--max-age` and `status`.

Pure. The proof of a past success is the journal's "Deactivated successfully" message for
that invocation (or, when the journal is silent, the loaded unit's own properties), never a
cache of ours. A unit whose last recorded run failed, or that has no record, is not fresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_SUCCESS,
    JournalEntry,
    UnitState,
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
        runs[entry.unit] = LastRun(entry.unit, succeeded, result, entry.invocation_id or None,
                                   entry.timestamp, "journal")  # fmt: skip
    for unit, state in states.items():
        from_show = _from_show(unit, state)
        known = runs.get(unit)
        if from_show is not None and (known is None or from_show.finished_at > known.finished_at):
            runs[unit] = from_show
    return runs


def _from_show(unit: str, state: UnitState) -> LastRun | None:
    finished = state.active_state in ("inactive", "failed") and state.job_id is None
    if not finished or not state.invocation_id or state.exec_main_exit is None:
        return None  # garbage-collected or never ran: defaults prove nothing
    succeeded = state.active_state == "inactive" and state.result == "success"
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
