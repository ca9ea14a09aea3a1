"""Pure parsers for systemctl and journalctl output. Malformed input raises, never guesses.

Every function here is table-tested; nothing here talks to a host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

# systemd's catalog message ids (FIELD-NOTES, "The journal is the durable record").
MESSAGE_UNIT_STARTING: Final = "7d4958e842da4a758f6c1cdc7b36dcc5"
MESSAGE_UNIT_SUCCESS: Final = "7ad2d189f7e94e70a38c781354912448"
MESSAGE_UNIT_FAILURE: Final = "d9b373ed55a64feb8242e02dbe79a49c"
# "Started/Finished X." and friends: a job completed (JOB_RESULT=done) with its INVOCATION_ID.
MESSAGE_JOB_DONE: Final = "39f53479d3a045ac8e11786248231fbf"
# "Stopping X...": a stop job began (JOB_TYPE=stop, with the INVOCATION_ID of the run it ends).
MESSAGE_UNIT_STOPPING: Final = "de5b426a63be47a7b6ac3eaac82e2f6f"

SHOW_PROPERTIES: Final = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "Type",
    "RemainAfterExit",
    "InvocationID",
    "Job",
    "ExecMainCode",
    "ExecMainStatus",
    "ConditionResult",
    "ExecMainStartTimestamp",
    "ExecMainExitTimestamp",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
)

JOURNAL_FIELDS: Final = (
    "UNIT",
    "MESSAGE_ID",
    "MESSAGE",
    "JOB_ID",
    "JOB_TYPE",
    "JOB_RESULT",
    "INVOCATION_ID",
    "UNIT_RESULT",
)


class ParseError(ValueError):
    """Output that does not have the shape we rely on."""


@dataclass(frozen=True, slots=True)
class UnitState:
    """One unit as `systemctl show` reports it at one moment."""

    unit: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    type: str
    remain_after_exit: bool
    invocation_id: str
    job_id: int | None
    exec_main_code: int | None
    exec_main_status: int | None
    condition_result: bool | None
    exec_main_start: datetime | None
    exec_main_exit: datetime | None

    @property
    def is_running(self) -> bool:
        """A run is under way: starting, running or stopping."""
        if self.active_state in ("activating", "deactivating", "reloading"):
            return True
        # Type=oneshot RemainAfterExit=yes stays "active (exited)" after it finished.
        return self.active_state == "active" and self.sub_state != "exited"


@dataclass(frozen=True, slots=True)
class ListedUnit:
    """A unit name from `list-unit-files` or `list-units`, with its file state or load state."""

    unit: str
    state: str


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One of systemd's own messages about a unit (or a unit's output line)."""

    cursor: str
    unit: str
    message_id: str
    message: str
    job_id: int | None
    job_type: str
    job_result: str
    invocation_id: str
    unit_result: str
    timestamp: datetime | None


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    if not value or value in ("n/a", "[not set]"):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ParseError(f"expected a number, got {value!r}") from exc


def _unix_timestamp(value: str) -> datetime | None:
    """`systemctl show --timestamp=unix` prints "@1732668083" (or nothing when unset)."""
    value = value.strip()
    if not value or value in ("n/a", "0"):
        return None
    if not re.fullmatch(r"@\d+(\.\d+)?", value):
        raise ParseError(f"expected a unix timestamp like @1700000000, got {value!r}")
    seconds = float(value[1:])
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if not sep or not key or not key.isidentifier():
            raise ParseError(f"not a property line: {line[:80]!r}")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


# systemctl prints every property asked for with -p, empty or not, so a block without one of
# them is cut short, not "empty": refused whole (issue 11, case 3: a block cut before
# ExecMainCode/ExecMainStatus must never let `show` prove a success).
# Properties of the unit's type, not of every unit: `show -p` of a mount leaves out the
# ExecMain* and RemainAfterExit lines (testbed, systemd 252: tank-data.mount), a target has no
# Result or Type either. Required for a service only; for another unit a missing one counts as
# empty, which proves no run (the verdict needs ExecMainCode=exited).
_SERVICE_ONLY_PROPERTIES: Final = frozenset(
    (
        "Result",
        "Type",
        "RemainAfterExit",
        "ExecMainCode",
        "ExecMainStatus",
        "ExecMainStartTimestamp",
        "ExecMainExitTimestamp",
    )
)
_REQUIRED_PROPERTIES: Final = SHOW_PROPERTIES
_INVOCATION_ID: Final = re.compile(r"(?:[0-9a-f]{32})?")


def _required_properties(requested: str) -> tuple[str, ...]:
    """The properties a block for `requested` must have: all of them for a service."""
    if requested.endswith(".service"):
        return _REQUIRED_PROPERTIES
    return tuple(name for name in _REQUIRED_PROPERTIES if name not in _SERVICE_ONLY_PROPERTIES)


def _unit_state(requested: str, props: dict[str, str]) -> UnitState:
    missing = [name for name in _required_properties(requested) if name not in props]
    if missing:
        raise ParseError(f"systemctl show for {requested} lacks {', '.join(missing)}")
    if not _INVOCATION_ID.fullmatch(props["InvocationID"]):
        # A truncated id must never look like a new run.
        raise ParseError(f"malformed InvocationID {props['InvocationID']!r} for {requested}")
    condition = props.get("ConditionResult", "")
    return UnitState(
        unit=props["Id"],
        load_state=props["LoadState"],
        active_state=props["ActiveState"],
        sub_state=props.get("SubState", ""),
        result=props.get("Result", ""),
        type=props.get("Type", ""),
        remain_after_exit=props.get("RemainAfterExit") == "yes",
        invocation_id=props.get("InvocationID", ""),
        job_id=_int_or_none(props.get("Job", "")),
        exec_main_code=_int_or_none(props.get("ExecMainCode", "")),
        exec_main_status=_int_or_none(props.get("ExecMainStatus", "")),
        condition_result={"yes": True, "no": False}.get(condition),
        exec_main_start=_unix_timestamp(props.get("ExecMainStartTimestamp", "")),
        exec_main_exit=_unix_timestamp(props.get("ExecMainExitTimestamp", "")),
    )


def parse_show(text: str, requested: tuple[str, ...]) -> tuple[UnitState, ...]:
    """Parse `systemctl show -p ... U1 U2 ...`: one block per unit, in argument order.

    Raises:
        ParseError: the number of blocks differs from the units asked for, or a block is
            malformed (FIELD-NOTES: properties come in systemd's order, blocks in ours).
    """
    blocks = _blocks(text)
    if len(blocks) != len(requested):
        raise ParseError(f"systemctl show returned {len(blocks)} blocks for {len(requested)} units")
    return tuple(_unit_state(name, props) for name, props in zip(requested, blocks, strict=True))


def parse_unit_list(text: str) -> tuple[ListedUnit, ...]:
    """Parse `list-unit-files --no-legend` (UNIT STATE [PRESET]) or
    `list-units --all --plain --no-legend` (UNIT LOAD ACTIVE SUB DESCRIPTION) output.

    Raises:
        ParseError: a line does not start with a unit name and a state.
    """
    units = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        # list-units marks failed units with a leading "●" unless --plain is honoured.
        if fields[0] in ("●", "*"):
            fields = fields[1:]
        if len(fields) < 2:
            raise ParseError(f"not a unit line: {line[:80]!r}")
        units.append(ListedUnit(unit=fields[0], state=fields[1]))
    return tuple(units)


_ANCHOR = re.compile(r"^Enqueued anchor job (\d+) (\S+)/start\.$")
_FAILED_START = re.compile(r"^Failed to start (\S+?): (.*)$")


def parse_start_output(text: str) -> tuple[dict[str, int], dict[str, str]]:
    """Parse `systemctl start --no-block --show-transaction` stderr.

    Returns the job id of each unit's anchor job and the error message of each unit that
    could not be enqueued (e.g. not found, access denied).
    """
    jobs: dict[str, int] = {}
    errors: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if match := _ANCHOR.match(line):
            jobs[match.group(2)] = int(match.group(1))
        elif match := _FAILED_START.match(line):
            errors[match.group(1)] = match.group(2)
    return jobs, errors


def _field(entry: dict[str, object], name: str) -> str:
    """A journal field as text: journalctl prints repeated fields as lists and binary ones
    as lists of byte values."""
    value = entry.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return bytes(item % 256 for item in value).decode("utf-8", "replace")
    if isinstance(value, list) and value:
        return _field({name: value[-1]}, name)
    return str(value)


def _journal_entry(line: str) -> JournalEntry:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ParseError(f"journal line is not JSON: {line[:80]!r}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("__CURSOR"), str):
        raise ParseError(f"journal entry without a cursor: {line[:80]!r}")
    realtime = _field(raw, "__REALTIME_TIMESTAMP")
    job_id = _field(raw, "JOB_ID")
    return JournalEntry(
        cursor=raw["__CURSOR"],
        unit=_field(raw, "UNIT"),
        message_id=_field(raw, "MESSAGE_ID"),
        message=_field(raw, "MESSAGE"),
        job_id=int(job_id) if job_id.isdigit() else None,
        job_type=_field(raw, "JOB_TYPE"),
        job_result=_field(raw, "JOB_RESULT"),
        invocation_id=_field(raw, "INVOCATION_ID"),
        unit_result=_field(raw, "UNIT_RESULT"),
        timestamp=(
            datetime.fromtimestamp(int(realtime) / 1_000_000, UTC) if realtime.isdigit() else None
        ),
    )


def is_condition_skip(entry: JournalEntry) -> bool:
    """systemd's job-done message for a start that an unmet Condition...= skipped: no run was
    made, yet it carries the unit's current (previous) INVOCATION_ID (testbed, systemd 252)."""
    return entry.job_type == "start" and "skipped because of an unmet condition" in entry.message


def parse_journal(text: str) -> tuple[JournalEntry, ...]:
    """Parse `journalctl -o json` output, one JSON object per line.

    Raises:
        ParseError: a line is not a journal entry.
    """
    return tuple(_journal_entry(line) for line in text.splitlines() if line.strip())


def parse_cursor(text: str) -> str | None:
    """The cursor in `journalctl -n 0 --show-cursor` output ("-- cursor: s=..."), if any."""
    for line in text.splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ").strip()
    return None


def parse_systemd_version(text: str) -> int:
    """The version number from `systemctl --version` ("systemd 252 (252.39-1~deb12u2)").

    Raises:
        ParseError: the first line is not systemd's version banner.
    """
    match = re.match(r"systemd (\d+)", text.strip())
    if match is None:
        raise ParseError(f"not a systemd version banner: {text.strip()[:80]!r}")
    return int(match.group(1))


def parse_unit_messages(text: str) -> tuple[tuple[str, str], ...]:
    """(`_SYSTEMD_UNIT`, `MESSAGE`) of each `journalctl -o json` line, in order.

    Raises:
        ParseError: a line is not a journal entry.
    """
    messages = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"journal line is not JSON: {line[:80]!r}") from exc
        if not isinstance(raw, dict):
            raise ParseError(f"journal line is not an entry: {line[:80]!r}")
        messages.append((_field(raw, "_SYSTEMD_UNIT"), _field(raw, "MESSAGE")))
    return tuple(messages)


def parse_batch(text: str, marker: str, count: int) -> list[tuple[int, str, str]]:
    """Split the output of `client.BATCH_SCRIPT` into (exit status, stdout, stderr) per
    command: "MARKER STATUS\\n" STDOUT "\\nMARKER\\n" STDERR "\\nMARKER\\n", for each.

    Raises:
        ParseError: not ``count`` complete sections (the script was cut short).
    """
    parts: list[tuple[int, str, str]] = []
    rest = text
    separator = f"\n{marker}\n"
    for index in range(count):
        head, newline, rest = rest.partition("\n")
        word, _space, status = head.partition(" ")
        if word != marker or not newline or not status.strip().isdigit():
            raise ParseError(f"command {index + 1} of {count}: no result")
        stdout, found, rest = rest.partition(separator)
        stderr, found_too, rest = rest.partition(separator) if found else ("", "", "")
        if not found_too:
            raise ParseError(f"command {index + 1} of {count}: output cut short")
        parts.append((int(status), stdout, stderr))
    return parts


_SYSTEMD_MESSAGES: Final = ("Starting ", "Started ", "Finished ", "Failed to start ", "Stopped ")


def from_systemd(unit: str, line: str) -> bool:
    """systemd's own messages about a unit name the unit or start with its description."""
    return unit in line or line.startswith(_SYSTEMD_MESSAGES)


def only_systemd_lines(unit: str, log_tail: Sequence[str]) -> bool:
    """Whether a run's log tail lacks the unit's own output (see
    `SystemdClient.unit_journal`)."""
    return all(from_systemd(unit, line) for line in log_tail)
