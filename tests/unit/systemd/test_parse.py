"""Parsers of systemctl and journalctl output, fed with what systemd 252 really prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from deploy_guard.systemd.parse import (
    SHOW_PROPERTIES,
    ListedUnit,
    ParseError,
    UnitState,
    parse_cursor,
    parse_journal,
    parse_show,
    parse_start_output,
    parse_systemd_version,
    parse_unit_list,
)

# `systemctl show --timestamp=unix -p ... restic-backups-home.service nonexist.service
# sanoid.service`: one block per unit in argument order, properties in systemd's order.
SHOW_THREE = """\
Type=oneshot
Result=exit-code
ExecMainStartTimestamp=@1700000000
ExecMainExitTimestamp=@1700000042.5
ExecMainCode=1
ExecMainStatus=3
RemainAfterExit=no
Id=restic-backups-home.service
LoadState=loaded
ActiveState=failed
SubState=failed
ActiveEnterTimestamp=@1700000000
InactiveEnterTimestamp=@1700000042
InvocationID=0123456789abcdef0123456789abcdef
Job=
ConditionResult=yes

Type=simple
Result=success
ExecMainStartTimestamp=
ExecMainExitTimestamp=
ExecMainCode=0
ExecMainStatus=0
Id=nonexist.service
RemainAfterExit=no
LoadState=not-found
ActiveState=inactive
SubState=dead
ActiveEnterTimestamp=
InactiveEnterTimestamp=
InvocationID=
Job=
ConditionResult=no

Type=simple
RemainAfterExit=no
Result=success
ExecMainStartTimestamp=
ExecMainExitTimestamp=
ExecMainCode=0
ExecMainStatus=0
Id=sanoid.service
LoadState=loaded
ActiveState=inactive
SubState=dead
ActiveEnterTimestamp=
InactiveEnterTimestamp=
InvocationID=
Job=302
ConditionResult=
"""
THREE = ("restic-backups-home.service", "nonexist.service", "sanoid.service")


def test_show_blocks_are_returned_in_argument_order() -> None:
    states = parse_show(SHOW_THREE, THREE)

    assert [state.unit for state in states] == list(THREE)
    assert [state.load_state for state in states] == ["loaded", "not-found", "loaded"]


def test_show_block_fields_are_parsed() -> None:
    failed, missing, queued = parse_show(SHOW_THREE, THREE)

    assert failed == UnitState(
        unit="restic-backups-home.service",
        load_state="loaded",
        active_state="failed",
        sub_state="failed",
        result="exit-code",
        type="oneshot",
        remain_after_exit=False,
        invocation_id="0123456789abcdef0123456789abcdef",
        job_id=None,
        exec_main_code=1,
        exec_main_status=3,
        condition_result=True,
        exec_main_start=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        exec_main_exit=datetime(2023, 11, 14, 22, 14, 2, 500000, tzinfo=UTC),
    )
    assert missing.exec_main_start is None
    assert missing.condition_result is False
    assert queued.job_id == 302
    assert queued.condition_result is None


# Every property asked for: systemctl prints all of them when asked with -p, even for a unit
# that does not exist (seen on the testbed, systemd 252).
MINIMAL_BLOCK = (
    "Id=a.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\n"
    "Type=oneshot\nRemainAfterExit=no\nInvocationID=\nJob=\nExecMainCode=0\nExecMainStatus=0\n"
    "ConditionResult=no\nExecMainStartTimestamp=\nExecMainExitTimestamp=\nActiveEnterTimestamp=\n"
    "InactiveEnterTimestamp=\n"
)


@pytest.mark.parametrize("missing", SHOW_PROPERTIES)
def test_show_block_missing_a_property_is_cut_short_not_empty(missing: str) -> None:
    text = "".join(
        line + "\n" for line in MINIMAL_BLOCK.splitlines() if not line.startswith(missing)
    )

    with pytest.raises(ParseError, match=missing):
        parse_show(text, ("a.service",))


@pytest.mark.parametrize("invocation", ["7", "0123456789abcdef", "x" * 32, "0123456789ABCDEF" * 2])
def test_malformed_invocation_id_is_refused(invocation: str) -> None:
    text = MINIMAL_BLOCK.replace("InvocationID=", f"InvocationID={invocation}")

    with pytest.raises(ParseError, match="InvocationID"):
        parse_show(text, ("a.service",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("", None),
        ("@0", None),
        ("0", None),
        ("n/a", None),
    ],
)
def test_show_unix_timestamps(value: str, expected: datetime | None) -> None:
    text = MINIMAL_BLOCK.replace("ExecMainStartTimestamp=", f"ExecMainStartTimestamp={value}")

    (state,) = parse_show(text, ("a.service",))

    assert state.exec_main_start == expected


@pytest.mark.parametrize(
    ("text", "requested"),
    [
        pytest.param(SHOW_THREE, THREE[:2], id="more-blocks-than-units"),
        pytest.param(SHOW_THREE, (*THREE, "extra.service"), id="fewer-blocks-than-units"),
        pytest.param("", ("a.service",), id="no-output"),
        pytest.param(
            "Failed to get properties: Access denied\n", ("a.service",), id="error-message"
        ),
        pytest.param(
            "Id=a.service\nLoadState=loaded\nActiveState=inactive\nsome garbage\n",
            ("a.service",),
            id="garbage-line",
        ),
        pytest.param(
            "Id=a.service\nLoad State=loaded\nActiveState=inactive\n", ("a.service",),
            id="key-with-space",
        ),
        pytest.param(
            "=x\nId=a.service\nLoadState=loaded\nActiveState=inactive\n", ("a.service",),
            id="empty-key",
        ),
        pytest.param("LoadState=loaded\nActiveState=inactive\n", ("a.service",), id="no-id"),
        pytest.param("Id=a.service\nLoadState=loaded\n", ("a.service",), id="no-active-state"),
        pytest.param(
            "Id=a.service\nLoadState=loaded\nActiveState=inactive\nJob=soon\n", ("a.service",),
            id="job-not-a-number",
        ),
        pytest.param(
            "Id=a.service\nLoadState=loaded\nActiveState=inactive\nExecMainStatus=x\n",
            ("a.service",),
            id="status-not-a-number",
        ),
        pytest.param(
            "Id=a.service\nLoadState=loaded\nActiveState=inactive\n"
            "ExecMainStartTimestamp=Tue 2023-11-14 22:13:20 UTC\n",
            ("a.service",),
            id="timestamp-without-timestamp-unix",
        ),
    ],
)  # fmt: skip
def test_show_output_of_the_wrong_shape_raises(text: str, requested: tuple[str, ...]) -> None:
    with pytest.raises(ParseError):
        parse_show(text, requested)


def test_show_of_no_units_is_empty() -> None:
    assert parse_show("", ()) == ()


@pytest.mark.parametrize(
    ("active_state", "sub_state", "running"),
    [
        ("activating", "start", True),
        ("active", "running", True),
        ("deactivating", "stop-sigterm", True),
        ("reloading", "reload", True),
        ("active", "exited", False),  # RemainAfterExit=yes after the run
        ("inactive", "dead", False),
        ("failed", "failed", False),
    ],
)
def test_unit_state_is_running(active_state: str, sub_state: str, running: bool) -> None:
    text = MINIMAL_BLOCK.replace("ActiveState=inactive", f"ActiveState={active_state}").replace(
        "SubState=dead", f"SubState={sub_state}"
    )

    (state,) = parse_show(text, ("a.service",))

    assert state.is_running is running


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("sanoid.service enabled enabled", ListedUnit("sanoid.service", "enabled"),
                     id="list-unit-files"),
        pytest.param("restic-backups-home.service   static   -",
                     ListedUnit("restic-backups-home.service", "static"), id="static-no-preset"),
        pytest.param("syncoid-old.service masked enabled",
                     ListedUnit("syncoid-old.service", "masked"), id="masked"),
        pytest.param("sanoid.service loaded active running Sanoid ZFS snapshot service",
                     ListedUnit("sanoid.service", "loaded"), id="list-units-plain"),
        pytest.param("● syncoid-tank.service loaded failed failed Syncoid replication",
                     ListedUnit("syncoid-tank.service", "loaded"), id="failed-marker"),
        pytest.param("* gone.service not-found inactive dead gone.service",
                     ListedUnit("gone.service", "not-found"), id="ascii-marker"),
    ],
)  # fmt: skip
def test_unit_list_lines(line: str, expected: ListedUnit) -> None:
    assert parse_unit_list(f"{line}\n") == (expected,)


def test_unit_list_keeps_order_and_skips_blank_lines() -> None:
    text = "a.service enabled enabled\n\n  \nb.service static -\n"

    assert parse_unit_list(text) == (
        ListedUnit("a.service", "enabled"),
        ListedUnit("b.service", "static"),
    )


def test_unit_list_of_nothing_is_empty() -> None:
    assert parse_unit_list("") == ()


@pytest.mark.parametrize("line", ["sanoid.service", "●", "● sanoid.service"])
def test_unit_list_line_without_a_state_raises(line: str) -> None:
    with pytest.raises(ParseError):
        parse_unit_list(f"{line}\n")


# `systemctl start --no-block --show-transaction a.service nonexist.service b.service` as root
# on systemd 252: stderr, exit 5, and the other units are still enqueued.
START_STDERR = """\
Enqueued anchor job 302 a.service/start.
Failed to start nonexist.service: Unit nonexist.service not found.
Enqueued anchor job 305 b.service/start.
Enqueued auxiliary job 306 b-helper.service/start.
"""


def test_start_output_gives_each_anchor_job_and_each_refusal() -> None:
    jobs, errors = parse_start_output(START_STDERR)

    assert jobs == {"a.service": 302, "b.service": 305}
    assert errors == {"nonexist.service": "Unit nonexist.service not found."}


def test_start_merged_into_a_running_job_reports_that_job_id() -> None:
    # Starting a running oneshot merges into its job: the same id as the running job.
    jobs, errors = parse_start_output(
        "Enqueued anchor job 290 restic-backups-home.service/start.\n"
    )

    assert jobs == {"restic-backups-home.service": 290}
    assert errors == {}


@pytest.mark.parametrize(
    ("text", "unit", "message"),
    [
        ("Failed to start a.service: Access denied\n", "a.service", "Access denied"),
        (
            "Failed to start a.service: Interactive authentication required.\n"
            "See system logs and 'systemctl status a.service' for details.\n",
            "a.service",
            "Interactive authentication required.",
        ),
        (
            "Failed to start x.service: Unit x.service is masked.\n",
            "x.service",
            "Unit x.service is masked.",
        ),
    ],
)
def test_start_refusals(text: str, unit: str, message: str) -> None:
    assert parse_start_output(text) == ({}, {unit: message})


def test_start_output_without_anchor_lines_is_empty() -> None:
    assert parse_start_output("") == ({}, {})


# Hand-written: these tests vary one field at a time, malformed ones included, which no
# recording can hold; the recorded journal lines are parsed in test_replay.py.
def journal_line(**fields: object) -> str:
    return json.dumps({"__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1700000000123456"} | fields)


def test_journal_entry_fields() -> None:
    line = journal_line(
        UNIT="restic-backups-home.service",
        MESSAGE_ID="39f53479d3a045ac8e11786248231fbf",
        MESSAGE="Finished restic-backups-home.service.",
        JOB_ID="302",
        JOB_TYPE="start",
        JOB_RESULT="done",
        INVOCATION_ID="0123456789abcdef0123456789abcdef",
    )

    (entry,) = parse_journal(line + "\n")

    assert entry.cursor == "s=1;i=2"
    assert entry.unit == "restic-backups-home.service"
    assert entry.message_id == "39f53479d3a045ac8e11786248231fbf"
    assert entry.job_id == 302
    assert entry.job_type == "start"
    assert entry.job_result == "done"
    assert entry.invocation_id == "0123456789abcdef0123456789abcdef"
    assert entry.unit_result == ""
    assert entry.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)


def test_journal_field_repeated_as_a_list_gives_its_value() -> None:
    line = journal_line(UNIT=["a.service", "a.service"], MESSAGE=["first", "second"])

    (entry,) = parse_journal(line)

    assert entry.unit == "a.service"
    assert entry.message in ("first", "second")


def test_journal_binary_field_as_byte_values_is_decoded() -> None:
    message = "a.service: \x1b[1mDeactivated\x1b[0m successfully."
    line = journal_line(MESSAGE=list(message.encode()), UNIT=list(b"a.service"))

    (entry,) = parse_journal(line)

    assert entry.message == message
    assert entry.unit == "a.service"


def test_journal_binary_field_with_invalid_utf8_is_decoded_with_replacement() -> None:
    (entry,) = parse_journal(journal_line(MESSAGE=[0x66, 0xFF, 0x6F]))

    assert entry.message == "f\ufffdo"


def test_journal_entry_without_job_id_or_timestamp() -> None:
    line = json.dumps({"__CURSOR": "c", "MESSAGE": "x", "JOB_ID": "n/a"})

    (entry,) = parse_journal(line)

    assert entry.job_id is None
    assert entry.timestamp is None
    assert entry.invocation_id == ""


def test_journal_lines_in_order_and_blank_lines_skipped() -> None:
    text = "\n".join([journal_line(MESSAGE="one"), "", journal_line(MESSAGE="two"), ""])

    assert [entry.message for entry in parse_journal(text)] == ["one", "two"]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(json.dumps({"MESSAGE": "no cursor"}), id="missing-cursor"),
        pytest.param(json.dumps({"__CURSOR": 5, "MESSAGE": "x"}), id="cursor-not-text"),
        pytest.param(json.dumps(["__CURSOR", "c"]), id="not-an-object"),
        pytest.param("-- No entries --", id="not-json"),
        pytest.param('{"__CURSOR": "c", "MESSAGE": ', id="truncated"),
    ],
)
def test_journal_line_that_is_not_an_entry_raises(line: str) -> None:
    with pytest.raises(ParseError):
        parse_journal(journal_line(MESSAGE="fine") + "\n" + line + "\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-- cursor: s=0a1b;i=1f2;b=3c;m=4d;t=5e;x=6f\n", "s=0a1b;i=1f2;b=3c;m=4d;t=5e;x=6f"),
        ("some line\n-- cursor: s=abc\n", "s=abc"),
        ("", None),
        ("-- No entries --\n", None),
    ],
)
def test_cursor(text: str, expected: str | None) -> None:
    assert parse_cursor(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT +SELINUX +APPARMOR\n", 252),
        ("systemd 256 (256.8)\n", 256),
        ("  systemd 249 (249.4-1ubuntu1)\n", 249),
    ],
)
def test_systemd_version(text: str, expected: int) -> None:
    assert parse_systemd_version(text) == expected


@pytest.mark.parametrize(
    "text", ["", "sh: 1: systemctl: not found\n", "System has not been booted with systemd\n"]
)
def test_not_a_systemd_version_banner_raises(text: str) -> None:
    with pytest.raises(ParseError):
        parse_systemd_version(text)


# Recorded on the testbed (systemd 252): `systemctl show -p <SHOW_PROPERTIES> -- -.mount
# multi-user.target tank-data.mount`. Only services have the ExecMain* and RemainAfterExit
# properties; a target has no Result or Type either.
RECORDED_NON_SERVICE_SHOW = """Type=overlay
Result=success
Id=-.mount
LoadState=loaded
ActiveState=active
SubState=mounted
ActiveEnterTimestamp=Tue 2026-12-01 21:29:44 UTC
InactiveEnterTimestamp=
Job=
ConditionResult=no
InvocationID=

Id=multi-user.target
LoadState=loaded
ActiveState=active
SubState=active
ActiveEnterTimestamp=Tue 2026-12-01 21:29:45 UTC
InactiveEnterTimestamp=
Job=
ConditionResult=yes
InvocationID=dffb0cfa1d4640be942730e16d15ed34

Type=
Result=success
Id=tank-data.mount
LoadState=not-found
ActiveState=inactive
SubState=dead
ActiveEnterTimestamp=
InactiveEnterTimestamp=
Job=
ConditionResult=no
InvocationID=
"""


def test_show_of_units_that_are_not_services_parses_without_service_properties() -> None:
    names = ("-.mount", "multi-user.target", "tank-data.mount")

    states = parse_show(RECORDED_NON_SERVICE_SHOW, names)

    assert [(s.unit, s.load_state, s.active_state) for s in states] == [
        ("-.mount", "loaded", "active"),
        ("multi-user.target", "loaded", "active"),
        ("tank-data.mount", "not-found", "inactive"),
    ]
    # No main process: nothing here can pass for a finished run.
    assert all(s.exec_main_code is None and s.exec_main_status is None for s in states)


def test_service_block_without_its_service_properties_is_refused() -> None:
    # The same block under a service's name is cut short, not a different unit type.
    mount_block = RECORDED_NON_SERVICE_SHOW.split("\n\n", maxsplit=1)[0]
    block = mount_block.replace("-.mount", "backup.service")

    with pytest.raises(ParseError, match="lacks RemainAfterExit, ExecMainCode"):
        parse_show(block, ("backup.service",))
