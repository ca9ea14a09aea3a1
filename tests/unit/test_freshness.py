"""`freshness`: a recent success is proven by systemd's record of it, nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from deploy_guard.freshness import fresh_units, last_runs
from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
    JournalEntry,
    UnitState,
)

UNIT = "restic-backups-home.service"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DEFAULTS = UnitState(
    unit=UNIT, load_state="loaded", active_state="inactive", sub_state="dead", result="success",
    type="oneshot", remain_after_exit=False, invocation_id="", job_id=None, exec_main_code=0,
    exec_main_status=0, condition_result=False, exec_main_start=None, exec_main_exit=None,
)  # fmt: skip


def entry(message_id: str, minutes_ago: float, invocation: str = "a" * 32,
          unit_result: str = "") -> JournalEntry:  # fmt: skip
    return JournalEntry(
        cursor=f"c{minutes_ago}", unit=UNIT, message_id=message_id, message="", job_id=None,
        job_type="", job_result="", invocation_id=invocation, unit_result=unit_result,
        timestamp=NOW - timedelta(minutes=minutes_ago),
    )  # fmt: skip


def success(minutes_ago: float, invocation: str = "a" * 32) -> JournalEntry:
    return entry(MESSAGE_UNIT_SUCCESS, minutes_ago, invocation)


def failure(minutes_ago: float) -> JournalEntry:
    return entry(MESSAGE_UNIT_FAILURE, minutes_ago, "b" * 32, "exit-code")


def fresh(entries: list[JournalEntry], state: UnitState = DEFAULTS, max_age: float = 600) -> bool:
    states = {UNIT: state}
    return UNIT in fresh_units(last_runs(entries, states), states, NOW, max_age)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([success(5)], True),
        ([success(11)], False),  # older than max_age
        ([success(5), failure(2)], False),  # the last run failed
        ([failure(7), success(3)], True),  # failed, then succeeded
        ([entry(MESSAGE_UNIT_STARTING, 1)], False),  # started, no end recorded
        ([], False),  # no record at all
        ([success(-1)], False),  # in the host's future: clock confusion is not proof
    ],
    ids=[
        "recent-success",
        "too-old",
        "failed-after",
        "success-after-failure",
        "only-started",
        "no-record",
        "future",
    ],
)
def test_fresh_only_when_the_last_recorded_run_succeeded_within_max_age(
    entries: list[JournalEntry], expected: bool
) -> None:
    assert fresh(entries) is expected


def test_garbage_collected_defaults_prove_nothing() -> None:
    assert fresh([], DEFAULTS) is False


def test_loaded_unit_properties_prove_a_recent_success_the_journal_does_not_show() -> None:
    state = replace(DEFAULTS, invocation_id="c" * 32, exec_main_exit=NOW - timedelta(minutes=2))

    assert fresh([], state) is True
    assert fresh([], replace(state, active_state="failed", result="exit-code")) is False


def test_running_or_queued_unit_is_never_fresh_it_is_joined() -> None:
    running = replace(DEFAULTS, active_state="activating", sub_state="start")
    queued = replace(DEFAULTS, job_id=12)

    assert fresh([success(1)], running) is False
    assert fresh([success(1)], queued) is False


def test_max_age_zero_makes_nothing_fresh() -> None:
    assert fresh([success(0.5)], max_age=0) is False
