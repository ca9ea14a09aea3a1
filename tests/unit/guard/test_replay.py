"""Replaying what real systemd 252 said (tests/fixtures/systemd-252/) through the parsers, the
client (over the transport seam) and `verdict.judge`: each recorded scenario gets the outcome
the README promises.

The tests of issue 11's cases replay the recordings in which the earlier code reported a
false green (a condition skip, a stop from outside, `show` alone, a stopped run as fresh).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from deploy_guard.guard.freshness import fresh_units, last_runs
from deploy_guard.guard.verdict import Judgement, Phase, Tracking, UnitJournal, judge
from deploy_guard.model import Outcome
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_SUCCESS,
    SHOW_PROPERTIES,
    JournalEntry,
    UnitState,
    parse_journal,
    parse_start_output,
)
from tests.unit.recordings import (
    Recorded,
    ReplayTransport,
    all_recordings,
    load,
)


class Replay(ReplayTransport):
    """A transport that answers each command with one recorded step's answer."""

    def __init__(self, step: dict[str, object], stdout: str | None = None) -> None:
        super().__init__()
        self.step = step
        self.stdout = str(step.get("stdout", "")) if stdout is None else stdout

    def answer(self, argv: Sequence[str]) -> tuple[int, str, str]:
        status = int(self.step["exit_status"])  # type: ignore[call-overload]
        return status, self.stdout, str(self.step.get("stderr", ""))


def job_of(recorded: Recorded, label: str, unit: str) -> int:
    """The anchor job id `systemctl start --show-transaction` printed for ``unit``."""
    jobs, errors = parse_start_output(recorded.step(label)["stderr"])
    assert not errors, errors
    return jobs[unit]


def journal_of(entries: Sequence[JournalEntry]) -> UnitJournal:
    journal = UnitJournal()
    for entry in entries:
        journal.add(entry)
    return journal


def replay_judge(
    name: str,
    *,
    start: str = "start",
    baseline: str | None = "before",
    show: str | None = "after",
    journal: str | None = "journal",
    joined: bool = False,
) -> Judgement:
    """Judge the recorded run of scenario ``name`` as the engine would at its last poll."""
    recorded = load(name)
    (unit,) = recorded.step(show or baseline or "")["units"]
    baseline_state = recorded.show(baseline)[0] if baseline else None
    state: UnitState | None = recorded.show(show)[0] if show else None
    unit_type = (state or baseline_state).type  # type: ignore[union-attr]
    tracking = Tracking(
        unit, unit_type, joined, job_of(recorded, start, unit),
        baseline_state.invocation_id if baseline_state else "",
    )  # fmt: skip
    entries = recorded.journal(journal) if journal else ()
    return judge(tracking, state, journal_of(entries))


# -- every recording parses --------------------------------------------------------------------


@pytest.mark.parametrize("recorded", list(all_recordings()), ids=lambda recorded: recorded.name)
def test_every_recorded_show_block_and_journal_line_parses(recorded: Recorded) -> None:
    steps = recorded.data["steps"]
    shows = [step for step in steps if step["kind"] == "show"]
    journals = [step for step in steps if step["kind"] == "journal"]
    for step in shows:
        states = recorded.show(step["label"])
        assert len(states) == len(step["units"])
        # systemd prints every property asked for, in its own order.
        block = step["stdout"].split("\n\n")[0]
        assert sorted(line.partition("=")[0] for line in block.splitlines()) == sorted(
            SHOW_PROPERTIES
        )
    for step in journals:
        assert len(recorded.journal(step["label"])) == len(recorded.entries(step["label"]))
    assert shows or journals or recorded.name in ("discovery", "journal-unreadable")


def test_recorded_journal_lines_reach_the_engine_through_the_client() -> None:
    recorded = load("oneshot-failure")
    transport = Replay({"exit_status": 0}, stdout=recorded.journal_text("journal"))

    entries, cursor = SystemdClient(transport).journal_since(None, ["rec-oneshot-fail.service"])

    assert [entry.message_id for entry in entries] == [
        entry["MESSAGE_ID"] for entry in recorded.entries("journal")
    ]
    assert cursor == entries[-1].cursor
    assert transport.calls[0][-1] == "UNIT=rec-oneshot-fail.service"


# -- start and show over the transport seam -----------------------------------------------------


def test_start_of_a_unit_that_exists_and_one_that_does_not_gives_a_job_and_an_error() -> None:
    recorded = load("start-errors")
    client = SystemdClient(Replay(recorded.step("start-mixed")))

    answer = client.start(["rec-start-good.service", "rec-nonexistent.service"])

    assert list(answer.jobs) == ["rec-start-good.service"]
    assert answer.errors == {"rec-nonexistent.service": "Unit rec-nonexistent.service not found."}


@pytest.mark.parametrize(
    ("label", "unit", "error"),
    [
        ("start-masked", "rec-masked.service", "Unit rec-masked.service is masked."),
        ("start-not-found", "rec-nonexistent.service", "Unit rec-nonexistent.service not found."),
        # systemctl escapes the name and reports the escaped one: the error is still ours.
        ("start-invalid", "rec invalid.service", "Unit rec\\x20invalid.service not found."),
    ],
)
def test_a_unit_that_cannot_be_started_gets_systemds_reason(
    label: str, unit: str, error: str
) -> None:
    client = SystemdClient(Replay(load("start-errors").step(label)))

    answer = client.start([unit])

    assert answer.jobs == {}
    assert error in answer.errors[unit]


def test_show_of_a_present_a_missing_and_a_masked_unit_gives_one_state_each() -> None:
    recorded = load("start-errors")
    step = recorded.step("show-mixed")
    client = SystemdClient(Replay(step))

    states = client.show(step["units"])

    assert [state.load_state for state in states] == ["loaded", "not-found", "masked"]


# -- verdicts on recorded runs ------------------------------------------------------------------


def test_recorded_oneshot_success_garbage_collected_is_succeeded() -> None:
    judgement = replay_judge("oneshot-success-gc")

    assert judgement.phase is Phase.DONE
    assert judgement.outcome is Outcome.SUCCEEDED
    assert (
        judgement.invocation_id == load("oneshot-success-gc").entries("journal")[0]["INVOCATION_ID"]
    )


def test_recorded_simple_success_garbage_collected_is_succeeded() -> None:
    judgement = replay_judge("simple-success-gc", baseline=None)

    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.SUCCEEDED)


@pytest.mark.parametrize(
    ("name", "result"),
    [
        ("oneshot-failure", "exit-code"),
        ("simple-failure", "exit-code"),
        ("execstartpre-failed", "exit-code"),
    ],
)
def test_recorded_failed_run_is_failed(name: str, result: str) -> None:
    judgement = replay_judge(name, baseline=None)

    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.FAILED)
    assert judgement.result == result


def test_recorded_run_killed_after_ignoring_sigterm_is_not_succeeded() -> None:
    judgement = replay_judge("oneshot-sigterm-ignored-killed", baseline=None)

    assert judgement.phase is Phase.DONE
    assert judgement.outcome is not None
    assert not judgement.outcome.is_success


def test_recorded_condition_skip_of_a_unit_that_never_ran_is_skipped() -> None:
    judgement = replay_judge("condition-skip-never-ran", baseline=None)

    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.SKIPPED)


@pytest.mark.parametrize("name", ["condition-skip-after-success", "condition-skip-after-failure"])
def test_recorded_condition_skip_after_an_earlier_run_is_skipped(name: str) -> None:
    # systemd's job-done message for the skipped start carries the earlier run's id.
    judgement = replay_judge(name, start="second-start", baseline="after-first",
                             show="after-second", journal="journal-second")  # fmt: skip

    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.SKIPPED)


def test_recorded_start_joined_to_a_timer_run_proves_that_run() -> None:
    judgement = replay_judge("joined-timer-run", baseline="baseline", joined=True)

    baseline = load("joined-timer-run").show("baseline")[0]
    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.SUCCEEDED)
    assert judgement.invocation_id == baseline.invocation_id


def test_recorded_start_queued_behind_another_job_waits_despite_the_earlier_failure() -> None:
    recorded = load("queued-job-keeps-result")
    unit = "rec-queue-second.service"
    failed = recorded.show("failed")[0]
    tracking = Tracking(unit, "oneshot", False, job_of(recorded, "start", unit),
                        failed.invocation_id)  # fmt: skip
    queued = recorded.show("queued")[1]
    assert (queued.active_state, queued.result) == ("failed", "exit-code")  # the earlier run

    while_queued = judge(tracking, queued, UnitJournal())
    at_the_end = judge(tracking, recorded.show("after")[1], journal_of(recorded.journal("journal")))

    assert while_queued.phase is Phase.PENDING
    assert (at_the_end.phase, at_the_end.outcome) == (Phase.DONE, Outcome.SUCCEEDED)


@pytest.mark.parametrize("name", ["simple-stopped", "simple-stopped-loaded", "oneshot-stopped"])
def test_recorded_run_stopped_from_outside_is_cancelled(name: str) -> None:
    judgement = replay_judge(name, baseline=None)

    assert judgement.phase is Phase.DONE
    assert judgement.outcome is not None
    assert judgement.outcome.value == "cancelled"


def test_recorded_show_of_a_stopped_run_is_no_proof_without_the_journal() -> None:
    # `show` describes the run (same invocation, Result=success), but its main process was
    # killed by SIGTERM (ExecMainCode=2, ExecMainStatus=15): not a finished backup.
    judgement = replay_judge("simple-stopped-loaded", journal=None)

    assert judgement.outcome is not Outcome.SUCCEEDED


def test_recorded_show_of_a_finished_run_kept_loaded_proves_it_without_the_journal() -> None:
    recorded = load("condition-skip-after-success")
    unit = "rec-cond-after-ok.service"
    state = recorded.show("after-first")[0]
    tracking = Tracking(unit, "oneshot", False, job_of(recorded, "first-start", unit), "")

    judgement = judge(tracking, state, UnitJournal())

    assert (state.exec_main_code, state.exec_main_status) == (1, 0)  # exited, status 0
    assert (judgement.phase, judgement.outcome) == (Phase.DONE, Outcome.SUCCEEDED)


def test_recorded_unreadable_journal_answer_is_not_a_journal() -> None:
    step = load("journal-unreadable").step("journal-as-nobody")

    assert step["exit_status"] != 0
    assert parse_journal(step["stdout"]) == ()


# -- freshness (--max-age) on recorded runs -----------------------------------------------------


def test_recorded_condition_skip_does_not_refresh_the_earlier_success() -> None:
    recorded = load("condition-skip-after-success")
    unit = "rec-cond-after-ok.service"
    entries = recorded.journal("journal-first")  # the run, then the skipped start
    deactivated = next(entry for entry in entries if entry.message_id == MESSAGE_UNIT_SUCCESS)
    skipped = entries[-1]
    assert skipped.timestamp is not None
    assert deactivated.timestamp is not None
    states = {unit: recorded.show("after-second")[0]}

    runs = last_runs(entries, states)
    fresh = fresh_units(runs, states, skipped.timestamp + timedelta(seconds=1), max_age=3600)

    assert fresh[unit].invocation_id == deactivated.invocation_id
    assert fresh[unit].finished_at <= deactivated.timestamp + timedelta(seconds=1)


def test_recorded_run_stopped_from_outside_is_not_fresh() -> None:
    # "Deactivated successfully" after a stop job: the backup was cut short (case 2), and
    # `show` says so too (ExecMainCode=2, ExecMainStatus=15).
    recorded = load("simple-stopped-loaded")
    unit = "rec-simple-stopped-loaded.service"
    entries = recorded.journal("journal")
    last = entries[-1].timestamp
    assert last is not None
    states = {unit: recorded.show("after")[0]}

    fresh = fresh_units(last_runs(entries, states), states, last + timedelta(seconds=1), 3600)

    assert unit not in fresh


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("oneshot-success-gc", "after"),
        ("simple-stopped", "after"),
        ("reset-failed-unloads", "after"),
    ],
)
def test_recorded_unloaded_unit_shows_the_same_as_one_that_never_ran(name: str, label: str) -> None:
    # FIELD-NOTES "Garbage collection": after a success, a stop, or reset-failed, `show` cannot
    # tell the run from no run at all; only the journal can.
    never_ran = load("oneshot-success-gc").show("before")[0]

    (state,) = load(name).show(label)

    assert replace(state, unit=never_ran.unit, type=never_ran.type) == never_ran
