"""The recordings themselves: the drift check's comparison names what changed, and the shapes
derived from them refuse a simulated message real systemd never writes (tests/unit/recordings.py,
used by fakesystemd.py)."""

from __future__ import annotations

import copy
import re

import pytest

from deploy_guard.systemd.parse import (
    MESSAGE_JOB_DONE,
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
)
from tests.testbed.recording import shape_differences
from tests.unit.recordings import ShapeError, all_recordings, check_entry, check_show, load

# -- the drift check of tests/integration/test_recordings.py --------------------------------------


def test_shape_differences_name_the_step_and_field_that_changed() -> None:
    recorded = load("oneshot-failure").data
    live = copy.deepcopy(recorded)
    journal = next(step for step in live["steps"] if step["label"] == "journal")
    failure = next(
        entry for entry in journal["entries"]
        if entry["fields"].get("MESSAGE_ID") == MESSAGE_UNIT_FAILURE
    )  # fmt: skip
    del failure["fields"]["UNIT_RESULT"]
    after = next(step for step in live["steps"] if step["label"] == "after")
    after["stdout"] = after["stdout"].replace("Result=exit-code", "Result=success")

    differences = shape_differences(recorded, live)

    assert shape_differences(recorded, copy.deepcopy(recorded)) == []
    assert any("/fields: no longer ['UNIT_RESULT']" in line for line in differences), differences
    assert any("/UNIT_RESULT: recorded 'exit-code', live None" in line for line in differences)
    assert "oneshot-failure: after[0]/Result: recorded 'exit-code', live 'success'" in differences


# -- the simulated systemd keeps to the recorded shapes -------------------------------------------

DEACTIVATED = {
    "_PID": "1", "_SYSTEMD_UNIT": "init.scope", "UNIT": "a.service",
    "MESSAGE_ID": MESSAGE_UNIT_SUCCESS, "MESSAGE": "a.service: Deactivated successfully.",
    "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
}  # fmt: skip


def test_a_simulated_message_in_the_recorded_shape_passes() -> None:
    check_entry(DEACTIVATED)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"JOB_ID": "7"}, "never writes ['JOB_ID']"),  # "Deactivated" names no job
        ({"INVOCATION_ID": ""}, "never writes an empty ['INVOCATION_ID']"),
        ({"MESSAGE_ID": "00000000000000000000000000000000"}, "was never recorded"),
        # A stop job's end is "Stopped X." (9d1aaa27), never a job-done message.
        (
            {
                "MESSAGE_ID": MESSAGE_JOB_DONE,
                "JOB_ID": "7",
                "JOB_TYPE": "stop",
                "JOB_RESULT": "done",
            },
            "never writes JOB_TYPE=stop",
        ),
    ],
)
def test_a_simulated_message_real_systemd_never_writes_is_refused(
    change: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ShapeError, match=re.escape(complaint)):
        check_entry(DEACTIVATED | change)


def test_a_simulated_message_without_a_field_systemd_always_writes_is_refused() -> None:
    without_unit = {key: value for key, value in DEACTIVATED.items() if key != "UNIT"}

    with pytest.raises(ShapeError, match=re.escape("always writes ['UNIT']")):
        check_entry(without_unit)


def test_a_simulated_show_property_systemd_never_prints_is_refused() -> None:
    with pytest.raises(ShapeError, match="ExecMainResult"):
        check_show({"Id": "a.service", "ExecMainResult": "success"})


def test_recorded_messages_carry_the_units_current_invocation_id() -> None:
    # The id rule fakesystemd keeps: PID 1 writes the unit's current INVOCATION_ID (the last
    # run's, or empty before any run) with each message; a condition skip makes no new one.
    checked = 0
    for recorded in all_recordings():
        current: dict[str, str] = {}
        for step in recorded.data["steps"]:
            if step["kind"] != "journal" or step["since"] not in ("start", "first", "timer"):
                continue
            for entry in recorded.entries(step["label"]):
                unit, invocation = entry["UNIT"], entry.get("INVOCATION_ID")
                if entry.get("MESSAGE_ID") in (MESSAGE_UNIT_STARTING, MESSAGE_JOB_DONE) and (
                    "skipped" not in entry["MESSAGE"]
                ):
                    current[unit] = invocation or ""
                if invocation is not None:
                    assert invocation == current.get(unit, ""), (recorded.name, entry)
                    checked += 1
    assert checked > 50
