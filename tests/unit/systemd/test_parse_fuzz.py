"""Arbitrary and truncated host output never crashes a parser and never proves a success."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_guard.config import parse_config
from deploy_guard.errors import ConfigError
from deploy_guard.guard.verdict import Tracking, UnitJournal, judge
from deploy_guard.model import Outcome
from deploy_guard.systemd import parse
from deploy_guard.systemd.parse import ParseError

UNIT = "restic-backups-home.service"
TRACKED = Tracking(UNIT, "oneshot", joined=False, job_id=302, baseline_invocation="")

REAL_JOURNAL = "\n".join(
    json.dumps(entry)
    for entry in (
        {"__CURSOR": "s=1;i=1", "__REALTIME_TIMESTAMP": "1795740048224539", "UNIT": UNIT,
         "MESSAGE_ID": parse.MESSAGE_UNIT_STARTING, "JOB_ID": "302", "JOB_TYPE": "start",
         "INVOCATION_ID": "72f3c0f3891a469bbd2d7b7b4a0654bb"},
        {"__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1795740049224539", "UNIT": UNIT,
         "MESSAGE_ID": parse.MESSAGE_UNIT_SUCCESS,
         "INVOCATION_ID": "72f3c0f3891a469bbd2d7b7b4a0654bb"},
    )
)  # fmt: skip
# A whole block as systemd 252 prints it (every property asked for, in systemd's order).
REAL_SHOW = (
    "Type=oneshot\nRemainAfterExit=no\nResult=success\nExecMainStartTimestamp=@1795740048\n"
    "ExecMainExitTimestamp=@1795740049\nExecMainCode=1\nExecMainStatus=0\n"
    "Id=restic-backups-home.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\n"
    "ActiveEnterTimestamp=@1795740048\nInactiveEnterTimestamp=@1795740049\nJob=\n"
    "ConditionResult=yes\nInvocationID=72f3c0f3891a469bbd2d7b7b4a0654bb\n"
)


def _verdict(show_text: str, journal_text: str) -> Outcome | None:
    """Parse, then judge; a parse error is fine (the host then fails), a crash is not."""
    try:
        states = parse.parse_show(show_text, (UNIT,))
    except ParseError:
        states = (None,)  # type: ignore[assignment]
    journal = UnitJournal()
    try:
        for entry in parse.parse_journal(journal_text):
            if entry.unit == UNIT:
                journal.add(entry)
    except ParseError:
        pass
    return judge(TRACKED, states[0], journal).outcome


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_only_ever_raises_parse_error(text: str) -> None:
    for parser in (
        lambda: parse.parse_show(text, (UNIT,)),
        lambda: parse.parse_unit_list(text),
        lambda: parse.parse_journal(text),
        lambda: parse.parse_systemd_version(text),
    ):
        with contextlib.suppress(ParseError):
            parser()
    parse.parse_start_output(text)
    parse.parse_cursor(text)


@settings(max_examples=300)
@given(st.text(), st.text())
def test_arbitrary_output_never_proves_a_success(show_text: str, journal_text: str) -> None:
    assert _verdict(show_text, journal_text) is not Outcome.SUCCEEDED


@given(st.integers(min_value=0, max_value=len(REAL_JOURNAL) - 1))
def test_a_journal_cut_before_the_success_message_ends_proves_nothing(cut: int) -> None:
    success_line_end = len(REAL_JOURNAL)
    assert cut < success_line_end
    assert _verdict("", REAL_JOURNAL[:cut]) is not Outcome.SUCCEEDED


def test_the_whole_show_block_alone_proves_the_success() -> None:
    """The premise of the next test: uncut, this block does prove the run."""
    assert _verdict(REAL_SHOW, "") is Outcome.SUCCEEDED


@given(st.integers(min_value=0, max_value=len(REAL_SHOW) - 2), st.sampled_from(["", "\n"]))
def test_truncated_show_output_never_proves_a_success(cut: int, tail: str) -> None:
    # Issue 11, case 3: a block cut anywhere (fewer properties than asked, or the last value
    # cut short) is refused; it never yields `succeeded`, whatever survived of it.
    assert _verdict(REAL_SHOW[:cut] + tail, "") is not Outcome.SUCCEEDED


@given(st.permutations(range(REAL_SHOW.count("\n"))), st.integers(min_value=1, max_value=15))
def test_show_block_missing_any_properties_never_proves_a_success(
    order: list[int], dropped: int
) -> None:
    lines = REAL_SHOW.splitlines()
    kept = [lines[index] for index in sorted(order[dropped:])]

    assert _verdict("\n".join(kept) + "\n", "") is not Outcome.SUCCEEDED


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["stages", "hosts", "parallel", "poll_interval",
                                        "deploy", "inventory", "max_age", "x"]),
                       json_values, max_size=5))  # fmt: skip
def test_arbitrary_configuration_is_accepted_or_refused_with_config_error(
    data: dict[str, Any],
) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data)
