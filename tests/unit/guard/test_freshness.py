"""`freshness`: a recent success is proven by systemd's record of it, nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from deploy_guard.guard.freshness import fresh_units, last_runs
from deploy_guard.systemd.parse import (
    MESSAGE_JOB_DONE,
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_STOPPING,
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


def ran(minutes_ago: float, invocation: str = "a" * 32) -> list[JournalEntry]:
    """A whole run: "Starting" a minute before its "Deactivated successfully"."""
    start = entry(MESSAGE_UNIT_STARTING, minutes_ago + 1, invocation)
    return [start, success(minutes_ago, invocation)]


def failure(minutes_ago: float) -> JournalEntry:
    return entry(MESSAGE_UNIT_FAILURE, minutes_ago, "b" * 32, "exit-code")


def fresh(entries: list[JournalEntry], state: UnitState = DEFAULTS, max_age: float = 600) -> bool:
    states = {UNIT: state}
    return UNIT in fresh_units(last_runs(entries, states), states, NOW, max_age)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (ran(5), True),
        (ran(11), False),  # older than max_age
        ([*ran(5), failure(2)], False),  # the last run failed
        ([failure(7), *ran(3)], True),  # failed, then succeeded
        ([entry(MESSAGE_UNIT_STARTING, 1)], False),  # started, no end recorded
        ([], False),  # no record at all
        (ran(-1), False),  # in the host's future: clock confusion is not proof
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
    state = replace(DEFAULTS, invocation_id="c" * 32, exec_main_exit=NOW - timedelta(minutes=2),
                    condition_result=True, exec_main_code=1)  # fmt: skip

    assert fresh([], state) is True
    assert fresh([], replace(state, active_state="failed", result="exit-code")) is False
    # Issue 11, case 8: the main process's own clean exit, of a run that was not skipped.
    assert fresh([], replace(state, exec_main_code=2, exec_main_status=15)) is False
    assert fresh([], replace(state, exec_main_status=1)) is False
    assert fresh([], replace(state, condition_result=False)) is False


def test_running_or_queued_unit_is_never_fresh_it_is_joined() -> None:
    running = replace(DEFAULTS, active_state="activating", sub_state="start")
    queued = replace(DEFAULTS, job_id=12)

    assert fresh([success(1)], running) is False
    assert fresh([success(1)], queued) is False


def test_max_age_zero_makes_nothing_fresh() -> None:
    assert fresh([success(0.5)], max_age=0) is False


# -- issue 11, case 8: freshness proves a whole run ------------------------------------------


def test_success_without_the_start_of_that_run_is_not_fresh() -> None:
    assert fresh([success(5)]) is False
    assert fresh([entry(MESSAGE_UNIT_STARTING, 6, "b" * 32), success(5)]) is False


def test_simple_unit_stopped_then_deactivated_successfully_is_not_fresh() -> None:
    # Testbed: "Started" (job done), "Stopping" (JOB_TYPE=stop), "Deactivated successfully".
    started = replace(entry(MESSAGE_JOB_DONE, 6), job_type="start", job_result="done")
    stopping = replace(entry(MESSAGE_UNIT_STOPPING, 5.5), job_type="stop", job_id=700)

    assert fresh([started, success(5)]) is True
    assert fresh([started, stopping, success(5)]) is False


def test_condition_skip_after_a_success_does_not_refresh_it() -> None:
    # Testbed: the skip logs a job-done message with the previous run's INVOCATION_ID, and
    # `show` keeps that run's ExecMain* with ConditionResult=no.
    message = f"{UNIT} was skipped because of an unmet condition check (ConditionPathExists=/x)."
    skip = replace(entry(MESSAGE_JOB_DONE, 1), job_type="start", job_result="done",
                   message=message)  # fmt: skip
    state = replace(DEFAULTS, invocation_id="a" * 32, exec_main_exit=NOW - timedelta(minutes=8),
                    condition_result=False, exec_main_code=1)  # fmt: skip
    states = {UNIT: state}

    runs = last_runs([*ran(8), skip], states)

    assert runs[UNIT].finished_at == NOW - timedelta(minutes=8)
    assert UNIT in fresh_units(runs, states, NOW, 600)
    assert UNIT not in fresh_units(runs, states, NOW, 420)
    assert fresh([skip], state) is False  # the skip alone proves no run
    assert fresh([skip, success(0.5)]) is False  # nor is it the start of a run
