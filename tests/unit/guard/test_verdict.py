"""`verdict.judge`: what systemd's evidence proves about one unit at one poll.

The journal entries below are the messages real systemd 252 writes (FIELD-NOTES): "Starting X..."
(7d4958e8, JOB_ID, INVOCATION_ID), "X: Deactivated successfully." (7ad2d189, INVOCATION_ID, no
JOB_ID), "Finished X." / "Started X." (39f53479, JOB_RESULT=done), "X: Failed with result
'exit-code'." (d9b373ed, UNIT_RESULT), "Failed to start X." (be02cf68, JOB_RESULT=failed), and
the unmet-condition message (39f53479, JOB_RESULT=done, with the unit's current INVOCATION_ID:
empty when the unit never ran or was collected, the previous run's id when it ran before and
is still loaded; testbed, issue 11 case 1), and a stop job's "Stopping X..." (de5b426a,
JOB_TYPE=stop, INVOCATION_ID of the run it ends) and "Stopped X." (9d1aaa27, JOB_TYPE=stop).
ExecMainCode is CLD_EXITED (1) after a main process exited on its own, CLD_KILLED (2) after a
signal; `show` of a unit that never ran or was collected prints ExecMainCode=0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from deploy_guard.guard.verdict import Phase, Tracking, UnitJournal, judge
from deploy_guard.model import Outcome
from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
    JournalEntry,
    UnitState,
)

MESSAGE_JOB_DONE = "39f53479d3a045ac8e11786248231fbf"
MESSAGE_JOB_FAILED = "be02cf6855d2428ba40df7e9d022f03d"
UNIT = "restic-backups-home.service"
OURS = "0123456789abcdef0123456789abcdef"
PREVIOUS = "fedcba9876543210fedcba9876543210"
OTHER = "00000000000000000000000000000abc"
JOB = 302
OTHER_JOB = 377
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)

_cursors = itertools.count()

# What `systemctl show` prints for a unit that never ran or that was garbage-collected after a
# successful run: the two are indistinguishable (FIELD-NOTES, "Garbage collection").
DEFAULTS = UnitState(
    unit=UNIT,
    load_state="loaded",
    active_state="inactive",
    sub_state="dead",
    result="success",
    type="oneshot",
    remain_after_exit=False,
    invocation_id="",
    job_id=None,
    exec_main_code=0,
    exec_main_status=0,
    condition_result=False,
    exec_main_start=None,
    exec_main_exit=None,
)


def show(**changes: object) -> UnitState:
    return replace(DEFAULTS, **changes)  # type: ignore[arg-type]


# Hand-written: a table of `judge` inputs, each one field away from a recorded message
# (tests/fixtures/systemd-252/), to reach orders and races no recording shows; the recorded
# runs themselves are judged in test_replay.py.
def entry(message_id: str, message: str, **fields: object) -> JournalEntry:
    values: dict[str, object] = {
        "cursor": f"s=x;i={next(_cursors)}",
        "unit": UNIT,
        "message_id": message_id,
        "message": message,
        "job_id": None,
        "job_type": "",
        "job_result": "",
        "invocation_id": "",
        "unit_result": "",
        "timestamp": None,
    }
    return JournalEntry(**(values | fields))  # type: ignore[arg-type]


def starting(invocation: str, job: int = JOB) -> JournalEntry:
    return entry(MESSAGE_UNIT_STARTING, f"Starting {UNIT}...", job_id=job, job_type="start",
                 invocation_id=invocation, timestamp=T0)  # fmt: skip


def started(invocation: str, job: int = JOB) -> JournalEntry:
    """Type=simple: the start job is done as soon as the process runs."""
    return entry(MESSAGE_JOB_DONE, f"Started {UNIT}.", job_id=job, job_type="start",
                 job_result="done", invocation_id=invocation, timestamp=T0)  # fmt: skip


def finished(invocation: str, job: int = JOB) -> JournalEntry:
    return entry(MESSAGE_JOB_DONE, f"Finished {UNIT}.", job_id=job, job_type="start",
                 job_result="done", invocation_id=invocation, timestamp=T1)  # fmt: skip


def deactivated(invocation: str) -> JournalEntry:
    return entry(MESSAGE_UNIT_SUCCESS, f"{UNIT}: Deactivated successfully.",
                 invocation_id=invocation, timestamp=T1)  # fmt: skip


def failed_with(invocation: str, result: str = "exit-code") -> JournalEntry:
    return entry(MESSAGE_UNIT_FAILURE, f"{UNIT}: Failed with result '{result}'.",
                 invocation_id=invocation, unit_result=result, timestamp=T1)  # fmt: skip


def failed_to_start(invocation: str, job: int = JOB, result: str = "failed") -> JournalEntry:
    return entry(MESSAGE_JOB_FAILED, f"Failed to start {UNIT}.", job_id=job, job_type="start",
                 job_result=result, invocation_id=invocation, timestamp=T1)  # fmt: skip


def condition_skipped(job: int = JOB) -> JournalEntry:
    message = f"{UNIT} was skipped because of an unmet condition check (ConditionPathExists=/x)."
    return entry(MESSAGE_JOB_DONE, message, job_id=job, job_type="start", job_result="done",
                 invocation_id="", timestamp=T1)  # fmt: skip


def journal(*entries: JournalEntry) -> UnitJournal:
    indexed = UnitJournal()
    for item in entries:
        indexed.add(item)
    return indexed


def tracking(
    unit_type: str = "oneshot", *, joined: bool = False, job: int | None = JOB, baseline: str = ""
) -> Tracking:
    return Tracking(UNIT, unit_type, joined, job, baseline)


@dataclass(frozen=True)
class Expect:
    phase: Phase
    outcome: Outcome | None = None
    invocation_id: str | None = None
    result: str | None = None
    unaccounted: bool = False


SIMPLE = "simple"
CASES = [
    pytest.param(
        tracking(), DEFAULTS, [starting(OURS), deactivated(OURS), finished(OURS)],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="unit_garbage_collected_after_success_is_succeeded",
    ),
    pytest.param(
        tracking(), DEFAULTS, [starting(OURS), finished(OURS)],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="oneshot_start_job_done_alone_proves_success",
    ),
    pytest.param(
        tracking(SIMPLE), show(type=SIMPLE, active_state="active", sub_state="running",
                               invocation_id=OURS), [started(OURS)],
        Expect(Phase.RUNNING, None, OURS),
        id="simple_unit_started_job_done_is_only_running",
    ),
    pytest.param(
        # Gone from `show`, no end in the journal: still running as far as anyone can prove,
        # and unaccounted for, so the engine gives up after the evidence grace (unknown).
        tracking(SIMPLE), show(type=SIMPLE), [started(OURS)],
        Expect(Phase.RUNNING, None, OURS, unaccounted=True),
        id="simple_unit_gone_with_only_started_message_is_not_succeeded",
    ),
    pytest.param(
        tracking(SIMPLE), show(type=SIMPLE), [started(OURS), deactivated(OURS)],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="simple_unit_deactivated_successfully_is_succeeded",
    ),
    pytest.param(
        tracking(), show(active_state="failed", sub_state="failed", result="exit-code",
                         invocation_id=OURS, exec_main_status=1),
        [starting(OURS), failed_with(OURS), failed_to_start(OURS)],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "exit-code"),
        id="failure_in_journal_is_failed",
    ),
    pytest.param(
        tracking(), DEFAULTS, [starting(OURS), failed_to_start(OURS)],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "failed"),
        id="failed_start_job_after_reset_failed_is_failed",
    ),
    pytest.param(
        tracking(), show(active_state="failed", sub_state="failed", result="exit-code",
                         invocation_id=OURS, exec_main_status=1), [],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "exit-code"),
        id="failed_state_in_show_without_journal_is_failed",
    ),
    pytest.param(
        tracking(), show(active_state="failed", sub_state="failed", result="exit-code",
                         invocation_id=OURS, exec_main_status=0), [],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "exit-code"),
        id="exec_start_pre_failure_with_main_status_0_is_failed",
    ),
    pytest.param(
        tracking(), show(invocation_id=OURS, condition_result=True, exec_main_code=1), [],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="new_invocation_inactive_success_in_show_is_succeeded",
    ),
    pytest.param(
        tracking(), show(invocation_id=OURS, result="timeout"), [],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "timeout"),
        id="inactive_run_with_a_result_other_than_success_is_failed",
    ),
    pytest.param(
        tracking(), show(invocation_id=OURS, active_state="active", sub_state="exited",
                         remain_after_exit=True, exec_main_code=1), [],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="remain_after_exit_oneshot_active_exited_with_our_invocation_is_succeeded",
    ),
    pytest.param(
        tracking(), show(invocation_id=OURS, active_state="activating", sub_state="start",
                         job_id=JOB), [starting(OURS)],
        Expect(Phase.RUNNING, None, OURS),
        id="oneshot_activating_is_running",
    ),
    pytest.param(
        tracking(), DEFAULTS, [condition_skipped()],
        Expect(Phase.DONE, Outcome.SKIPPED, None, "unmet-condition"),
        id="condition_skipped_unit_is_skipped",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=PREVIOUS, condition_result=False),
        [condition_skipped()],
        Expect(Phase.DONE, Outcome.SKIPPED, None, "unmet-condition"),
        id="condition_skipped_unit_with_earlier_successful_run_is_skipped",
    ),
    pytest.param(
        # "Dependency failed for X.": the job ended without ever creating a run.
        tracking(), DEFAULTS, [failed_to_start("", result="dependency")],
        Expect(Phase.DONE, Outcome.FAILED, None, "dependency"),
        id="failed_dependency_is_failed",
    ),
    pytest.param(
        tracking(), DEFAULTS, [],
        Expect(Phase.PENDING, unaccounted=True),
        id="garbage_collected_unit_without_journal_evidence_is_pending_unaccounted",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=PREVIOUS), [],
        Expect(Phase.PENDING, unaccounted=True),
        id="success_of_the_run_before_ours_is_not_ours",
    ),
    pytest.param(
        tracking(), show(job_id=JOB), [],
        Expect(Phase.PENDING, unaccounted=False),
        id="queued_job_is_pending_not_unaccounted",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=PREVIOUS, job_id=JOB), [],
        Expect(Phase.PENDING, unaccounted=False),
        id="success_result_kept_from_previous_run_while_our_job_is_queued_does_not_count",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=PREVIOUS, job_id=JOB,
                                          active_state="failed", result="exit-code"), [],
        Expect(Phase.PENDING, unaccounted=False),
        id="failure_kept_from_previous_run_while_our_job_is_queued_does_not_count",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=OTHER, job_id=OTHER_JOB), [],
        Expect(Phase.PENDING, None, None),
        id="new_invocation_while_another_job_is_pending_is_not_ours",
    ),
    pytest.param(
        tracking(baseline=PREVIOUS), show(invocation_id=OTHER, job_id=OTHER_JOB),
        [deactivated(OTHER)],
        Expect(Phase.PENDING, None, None),
        id="success_of_an_invocation_started_by_another_job_is_not_ours",
    ),
    pytest.param(
        tracking(joined=True, job=OTHER_JOB, baseline=OURS), DEFAULTS,
        [deactivated(OURS), finished(OURS, job=OTHER_JOB)],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="joined_run_that_succeeded_is_succeeded",
    ),
    pytest.param(
        tracking(joined=True, job=OTHER_JOB, baseline=OURS),
        show(active_state="failed", sub_state="failed", result="exit-code", invocation_id=OURS),
        [failed_with(OURS)],
        Expect(Phase.DONE, Outcome.FAILED, OURS, "exit-code"),
        id="joined_run_that_failed_is_failed",
    ),
    pytest.param(
        # Starting an active Type=simple unit prints a job id that never reaches the journal.
        tracking(SIMPLE, joined=True, job=999, baseline=OURS),
        show(type=SIMPLE, active_state="active", sub_state="running", invocation_id=OURS), [],
        Expect(Phase.RUNNING, None, OURS),
        id="joined_simple_unit_still_running_is_running",
    ),
    pytest.param(
        tracking(SIMPLE, joined=True, job=999, baseline=OURS),
        show(type=SIMPLE, invocation_id=OURS, exec_main_code=1), [],
        Expect(Phase.DONE, Outcome.SUCCEEDED, OURS, "success"),
        id="joined_simple_unit_inactive_success_in_show_is_succeeded",
    ),
    pytest.param(
        tracking(), show(invocation_id=OURS, active_state="deactivating", sub_state="stop"), [],
        Expect(Phase.RUNNING, None, OURS),
        id="unit_still_stopping_is_running",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("tracked", "state", "entries", "expected"), CASES)
def test_judge(
    tracked: Tracking, state: UnitState, entries: list[JournalEntry], expected: Expect
) -> None:
    judgement = judge(tracked, state, journal(*entries))

    actual = Expect(
        judgement.phase,
        judgement.outcome,
        judgement.invocation_id,
        judgement.result,
        judgement.unaccounted,
    )
    assert actual == expected


def test_run_that_ended_before_our_queued_job_ran_is_not_succeeded_from_show() -> None:
    # A timer's run OTHER started and ended between our baseline `show` and our start; our
    # own job is still queued (Job= ours, unit inactive), e.g. waiting for an After= unit.
    state = show(invocation_id=OTHER, job_id=JOB, condition_result=True)

    judgement = judge(tracking(baseline=PREVIOUS), state, journal())

    assert judgement.outcome is not Outcome.SUCCEEDED


def test_run_that_ended_before_our_queued_job_ran_is_not_succeeded_from_its_journal() -> None:
    state = show(invocation_id=OTHER, job_id=JOB, condition_result=True)

    judgement = judge(tracking(baseline=PREVIOUS), state, journal(deactivated(OTHER)))

    assert judgement.outcome is not Outcome.SUCCEEDED


def test_joined_run_that_ended_before_our_start_does_not_hide_the_run_our_job_created() -> None:
    # Baseline: activating as PREVIOUS (job 290). PREVIOUS ended before our start call, so the
    # start enqueued a new job (302) that ran as OURS and failed.
    entries = [deactivated(PREVIOUS), starting(OURS), failed_with(OURS), failed_to_start(OURS)]
    state = show(active_state="failed", sub_state="failed", result="exit-code", invocation_id=OURS)

    judgement = judge(tracking(joined=True, baseline=PREVIOUS), state, journal(*entries))

    assert judgement.outcome is Outcome.FAILED
    assert judgement.invocation_id == OURS


def test_success_from_journal_takes_exit_status_and_times_from_show_of_the_same_run() -> None:
    state = show(invocation_id=OURS, exec_main_status=0, exec_main_exit=T1, exec_main_start=T0)

    judgement = judge(tracking(), state, journal(starting(OURS), deactivated(OURS)))

    assert judgement.outcome is Outcome.SUCCEEDED
    assert judgement.exit_status == 0
    assert judgement.started_at == T0
    assert judgement.finished_at == T1


def test_exit_status_of_another_run_is_not_attached_to_ours() -> None:
    state = show(invocation_id=OTHER, exec_main_status=7, active_state="failed", job_id=OTHER_JOB)

    judgement = judge(tracking(), state, journal(starting(OURS), deactivated(OURS)))

    assert judgement.outcome is Outcome.SUCCEEDED
    assert judgement.exit_status is None


def test_stop_job_messages_do_not_count_as_our_start_job() -> None:
    stopped = entry(MESSAGE_JOB_DONE, f"Stopped {UNIT}.", job_id=JOB, job_type="stop",
                    job_result="done", invocation_id=OURS)  # fmt: skip

    judgement = judge(tracking(), DEFAULTS, journal(stopped))

    assert judgement.outcome is not Outcome.SUCCEEDED
    assert judgement.phase is Phase.PENDING


# -- property: no success without proof -------------------------------------------------------

_INVOCATIONS = ("", OURS, PREVIOUS, OTHER)
_MESSAGE_IDS = (
    MESSAGE_UNIT_STARTING, MESSAGE_UNIT_SUCCESS, MESSAGE_UNIT_FAILURE, MESSAGE_JOB_DONE,
    MESSAGE_JOB_FAILED, "",
)  # fmt: skip
_invocations = st.sampled_from(_INVOCATIONS)

trackings = st.builds(
    Tracking,
    unit=st.just(UNIT),
    unit_type=st.sampled_from(["oneshot", "simple", "notify"]),
    joined=st.booleans(),
    job_id=st.sampled_from([JOB, JOB, JOB, None]),
    baseline_invocation=_invocations,
)


_ACTIVE_SUB_STATES = (
    ("inactive", "dead"), ("active", "running"), ("active", "exited"), ("activating", "start"),
    ("deactivating", "stop-sigterm"), ("failed", "failed"), ("reloading", "reload"),
)  # fmt: skip


@st.composite
def unit_states(draw: st.DrawFn, jobs: tuple[int | None, ...]) -> UnitState:
    active_state, sub_state = draw(st.sampled_from(_ACTIVE_SUB_STATES))
    return show(
        load_state=draw(st.sampled_from(["loaded", "loaded", "not-found"])),
        active_state=active_state,
        sub_state=sub_state,
        result=draw(st.sampled_from(["success", "exit-code"])),
        type=draw(st.sampled_from(["oneshot", "simple"])),
        remain_after_exit=draw(st.booleans()),
        invocation_id=draw(_invocations),
        job_id=draw(st.sampled_from(jobs)),
        exec_main_status=draw(st.sampled_from([None, 0, 1])),
        condition_result=draw(st.sampled_from([None, True, False])),
    )


def job_entries(job: int) -> list[JournalEntry]:
    """The messages systemd writes about one start job, for every invocation, plus odd ones."""
    entries = [condition_skipped(job)]
    for i in _INVOCATIONS:
        entries += [starting(i, job), started(i, job), finished(i, job)]
        entries += [failed_to_start(i, job), failed_to_start(i, job, "canceled")]
        entries += [
            entry(MESSAGE_JOB_DONE, "Stopped x.", job_id=job, job_type="stop",
                  job_result="done", invocation_id=i),
            entry(MESSAGE_UNIT_SUCCESS, "odd", job_id=job, job_type="start", invocation_id=i),
            entry(MESSAGE_JOB_DONE, "odd", job_id=job, job_type="start", job_result="skipped",
                  invocation_id=i),
        ]  # fmt: skip
    return entries


_RUN_ENDINGS = [deactivated(i) for i in _INVOCATIONS] + [failed_with(i) for i in _INVOCATIONS]
_OTHER_JOB_ENTRIES = job_entries(OTHER_JOB)
_OUR_JOB_ENTRIES = job_entries(JOB)


@st.composite
def evidence(draw: st.DrawFn) -> tuple[Tracking, UnitState | None, list[JournalEntry]]:
    """A tracked unit, what `show` says, and what the journal says; the last two drawn from
    messages about our job, another job and runs of any invocation, in equal measure."""
    tracked = draw(trackings)
    jobs = (None, OTHER_JOB) + ((tracked.job_id,) if tracked.job_id is not None else ())
    state = draw(unit_states(jobs)) if draw(st.integers(0, 4)) else None
    messages = st.one_of(
        st.sampled_from(_RUN_ENDINGS),
        st.sampled_from(_OTHER_JOB_ENTRIES),
        st.sampled_from(_OUR_JOB_ENTRIES if tracked.job_id is not None else _RUN_ENDINGS),
    )
    return tracked, state, draw(st.lists(messages, max_size=4))


@settings(max_examples=1000, deadline=None)
@given(evidence())
def test_judge_never_reports_success_without_proof_for_our_invocation(
    case: tuple[Tracking, UnitState | None, list[JournalEntry]],
) -> None:
    """SUCCEEDED needs, for the invocation judged ours: a "Deactivated successfully" message,
    or a oneshot's own start job done, or `show` reporting that same run ended with success
    and no job pending. And the invocation must be ours: the joined run, one that our job
    created, or a new one in `show` while no other job is pending."""
    tracked, state, entries = case
    judgement = judge(tracked, state, journal(*entries))
    event(f"{judgement.phase.value} {judgement.outcome}")
    if judgement.outcome is not Outcome.SUCCEEDED:
        return
    invocation = judgement.invocation_id
    assert invocation
    success_message = any(
        e.message_id == MESSAGE_UNIT_SUCCESS and e.invocation_id == invocation for e in entries
    )
    oneshot_job_done = tracked.unit_type == "oneshot" and any(
        e.job_id == tracked.job_id
        and e.job_type == "start"
        and e.job_result == "done"
        and e.invocation_id == invocation
        for e in entries
    )
    show_success = (
        state is not None
        and state.invocation_id == invocation
        and state.job_id is None
        and state.result == "success"
        and (
            state.active_state == "inactive"
            or (state.active_state == "active" and state.sub_state == "exited")
        )
    )
    assert success_message or oneshot_job_done or show_success
    ours = (
        (tracked.joined and invocation == tracked.baseline_invocation)
        or any(
            e.job_id == tracked.job_id and e.job_type == "start" and e.invocation_id == invocation
            for e in entries
        )
        or (
            state is not None
            and state.invocation_id == invocation
            and invocation != tracked.baseline_invocation
            and state.job_id in (None, tracked.job_id)
        )
    )
    assert ours


def test_run_seen_earlier_stays_ours_after_gc_and_is_proven_by_its_journal_end() -> None:
    # Our start merged into a run another guard had just started: our job leaves no journal
    # message, and once the unit is collected `show` forgets the run; what we saw stays ours.
    seen = replace(tracking(SIMPLE), seen_invocation=OURS)

    proven = judge(seen, DEFAULTS, journal(deactivated(OURS)))
    pending = judge(seen, DEFAULTS, journal())

    assert (proven.outcome, proven.invocation_id) == (Outcome.SUCCEEDED, OURS)
    assert (pending.phase, pending.unaccounted, pending.outcome) == (Phase.RUNNING, True, None)


# -- issue 11: the false greens ---------------------------------------------------------------

MESSAGE_UNIT_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"
MESSAGE_UNIT_STOPPED = "9d1aaa27d60140bd96365438aad20286"


def skipped_with(invocation: str, job: int = JOB) -> JournalEntry:
    """The unmet-condition message of a unit that ran before: the previous INVOCATION_ID."""
    return replace(condition_skipped(job), invocation_id=invocation)


def stopping(invocation: str, job: int = OTHER_JOB) -> JournalEntry:
    return entry(MESSAGE_UNIT_STOPPING, f"Stopping {UNIT}...", job_id=job, job_type="stop",
                 invocation_id=invocation, timestamp=T1)  # fmt: skip


def stopped(invocation: str, job: int = OTHER_JOB) -> JournalEntry:
    return entry(MESSAGE_UNIT_STOPPED, f"Stopped {UNIT}.", job_id=job, job_type="stop",
                 job_result="done", invocation_id=invocation, timestamp=T1)  # fmt: skip


@pytest.mark.parametrize(
    "previous_state",
    [
        show(invocation_id=PREVIOUS, condition_result=False, exec_main_code=1),
        show(
            invocation_id=PREVIOUS,
            condition_result=False,
            exec_main_code=1,
            active_state="failed",
            sub_state="failed",
            result="exit-code",
            exec_main_status=3,
        ),
    ],
    ids=["earlier-success", "earlier-failure"],
)
def test_condition_skip_after_an_earlier_run_is_skipped_not_that_run(
    previous_state: UnitState,
) -> None:
    judgement = judge(tracking(baseline=PREVIOUS), previous_state, journal(skipped_with(PREVIOUS)))

    assert judgement.outcome is Outcome.SKIPPED
    assert judgement.invocation_id is None
    assert judgement.result == "unmet-condition"


def test_joined_run_keeps_the_baseline_invocation_from_the_journal() -> None:
    entries = [starting(PREVIOUS), deactivated(PREVIOUS), finished(PREVIOUS)]

    judgement = judge(tracking(joined=True, baseline=PREVIOUS), DEFAULTS, journal(*entries))

    assert (judgement.outcome, judgement.invocation_id) == (Outcome.SUCCEEDED, PREVIOUS)


def test_simple_unit_stopped_mid_run_and_collected_is_cancelled() -> None:
    # Testbed: `systemctl stop` of a Type=simple unit logs "Stopping", then "Deactivated
    # successfully" (SIGTERM is a clean exit), then "Stopped"; `show` forgets the run.
    entries = [started(OURS), stopping(OURS), deactivated(OURS), stopped(OURS)]

    judgement = judge(tracking(SIMPLE), show(type=SIMPLE), journal(*entries))

    assert judgement.outcome is Outcome.CANCELLED
    assert judgement.reason is not None
    assert f"stop job {OTHER_JOB}" in judgement.reason


def test_simple_unit_killed_by_sigterm_is_cancelled_from_show() -> None:
    state = show(type=SIMPLE, invocation_id=OURS, exec_main_code=2, exec_main_status=15,
                 condition_result=True)  # fmt: skip

    judgement = judge(tracking(SIMPLE), state, journal(started(OURS), deactivated(OURS)))

    assert judgement.outcome is Outcome.CANCELLED
    assert judgement.reason == "main process killed by SIGTERM"


def test_oneshot_stopped_from_outside_is_cancelled_naming_the_stop() -> None:
    # Testbed: a stopped oneshot logs "Main process exited, code=killed", "Failed with result
    # 'signal'" and "Stopped" (no "Stopping", no message for the cancelled start job).
    state = show(active_state="failed", sub_state="failed", result="signal", invocation_id=OURS,
                 exec_main_code=2, exec_main_status=15, condition_result=True)  # fmt: skip
    entries = [starting(OURS), failed_with(OURS, "signal"), stopped(OURS)]

    judgement = judge(tracking(), state, journal(*entries))

    assert judgement.outcome is Outcome.CANCELLED
    assert (
        judgement.reason == f"stopped by stop job {OTHER_JOB} (Stopped {UNIT}.); "
        "main process killed by SIGTERM"
    )


@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 3), (None, None), (1, None)])
def test_show_alone_needs_a_clean_exit_of_the_main_process(
    code: int | None, status: int | None
) -> None:
    state = show(invocation_id=OURS, condition_result=True, exec_main_code=code,
                 exec_main_status=status)  # fmt: skip

    assert judge(tracking(), state, journal()).outcome is not Outcome.SUCCEEDED


def test_unreadable_journal_leaves_a_success_in_show_unknown() -> None:
    state = show(invocation_id=OURS, condition_result=True, exec_main_code=1)
    unreadable = journal()
    unreadable.unreadable = "No journal files were opened due to insufficient permissions."

    judgement = judge(tracking(), state, unreadable)

    assert judgement.outcome is Outcome.UNKNOWN
    assert judgement.reason is not None
    assert "insufficient permissions" in judgement.reason
