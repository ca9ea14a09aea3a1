"""`status`: each discovered unit's last run, read from systemd; nothing is started."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from deploy_guard.errors import DeployGuardError
from deploy_guard.guard.engine import (
    Connector,
    HostTarget,
    connect_and_plan,
    host_error,
    in_parallel,
)
from deploy_guard.guard.freshness import LastRun, last_runs
from deploy_guard.systemd.parse import MESSAGE_UNIT_FAILURE, MESSAGE_UNIT_SUCCESS, JournalEntry

# Enough history for a host with dozens of units on hourly timers; older runs are stale anyway.
HISTORY_LINES = 5000


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """One unit's last finished run (None: no record), and whether it runs now."""

    unit: str
    stage: str
    last: LastRun | None
    age_s: float | None
    duration_s: float | None
    running: bool

    def fresh_within(self, max_age: float) -> bool:
        return (
            self.last is not None
            and self.last.succeeded
            and self.age_s is not None
            and (self.age_s <= max_age)
        )


@dataclass(frozen=True, slots=True)
class HostStatus:
    host: str
    units: tuple[UnitStatus, ...] = ()
    error: str | None = None
    checked_at: datetime | None = None


def _starts(entries: Iterable[JournalEntry]) -> dict[str, datetime]:
    """When each invocation started: its first message that is not a terminal one."""
    starts: dict[str, datetime] = {}
    for entry in entries:
        if entry.message_id in (MESSAGE_UNIT_SUCCESS, MESSAGE_UNIT_FAILURE):
            continue
        if entry.invocation_id and entry.timestamp and entry.invocation_id not in starts:
            starts[entry.invocation_id] = entry.timestamp
    return starts


def host_status(target: HostTarget, connect: Connector) -> HostStatus:
    """Read (never start) the last run of every unit the host's stages would run."""
    try:
        client, plan = connect_and_plan(target, connect)
    except DeployGuardError as exc:
        return HostStatus(target.name, error=host_error(exc, target.name))
    try:
        stage_of = {unit: stage.name for stage in plan.stages for unit in stage.units}
        units = list(stage_of)
        states = dict(zip(units, client.show(units), strict=True))
        entries = client.finished_runs(units, None, HISTORY_LINES, with_starts=True)
        now = client.host_time()
    except DeployGuardError as exc:
        return HostStatus(target.name, error=host_error(exc, target.name))
    finally:
        client.transport.close()
    runs, starts = last_runs(entries, states), _starts(entries)
    statuses = []
    for unit in units:
        last = runs.get(unit)
        state = states[unit]
        started = starts.get(last.invocation_id or "") if last else None
        if last is not None and last.source == "show":
            started = state.exec_main_start
        statuses.append(
            UnitStatus(
                unit,
                stage_of[unit],
                last,
                round((now - last.finished_at).total_seconds(), 3) if last else None,
                round((last.finished_at - started).total_seconds(), 3)
                if last and started
                else None,
                state.is_running or state.job_id is not None,
            )
        )
    return HostStatus(target.name, tuple(statuses), checked_at=now)


def hosts_status(
    targets: Sequence[HostTarget], connect: Connector, parallel: int
) -> list[HostStatus]:
    jobs = [functools.partial(host_status, target, connect) for target in targets]
    return in_parallel(jobs, parallel)
