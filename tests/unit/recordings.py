"""What real systemd 252 said, recorded on the testbed (tests/fixtures/systemd-252/README.md).

Loads the fixtures written by `python -m tests.testbed record`, replays their `show` blocks
and journal lines through deploy_guard's parsers, and derives the shapes the simulated systemd
of fakesystemd.py must keep to: which fields each MESSAGE_ID carries, which of them can be
empty, and which `show` properties exist.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from deploy_guard.errors import CommandFailed
from deploy_guard.systemd.parse import JournalEntry, UnitState, parse_journal, parse_show
from deploy_guard.transport.base import CommandResult

FIXTURE_DIRECTORY: Final = Path(__file__).resolve().parents[1] / "fixtures" / "systemd-252"
OUTPUT: Final = "output"  # shape key of a unit's own output lines (no MESSAGE_ID)
PID1_PLAIN: Final = "pid1"  # shape key of PID 1's messages without a MESSAGE_ID
# Fields whose absence the engine would notice; a simulated message must carry each of them
# whenever real systemd always does (the rest, CODE_FILE and friends, it never asks for).
MEANINGFUL: Final = frozenset({
    "MESSAGE", "MESSAGE_ID", "UNIT", "INVOCATION_ID", "JOB_ID", "JOB_TYPE", "JOB_RESULT",
    "UNIT_RESULT", "_PID", "_SYSTEMD_UNIT",
})  # fmt: skip
# Fields whose values a simulated message must take from the recorded ones, per MESSAGE_ID
# (e.g. "Stopped X." has its own MESSAGE_ID: a job-done message never has JOB_TYPE=stop).
ENUMERATED: Final = ("JOB_TYPE",)
# Added by journalctl to every JSON entry, whatever the message.
ENVELOPE: Final = frozenset({"__CURSOR", "__REALTIME_TIMESTAMP"})


@dataclass(frozen=True)
class Recorded:
    """One recorded scenario."""

    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["scenario"])

    def step(self, label: str) -> dict[str, Any]:
        """The step recorded under ``label``.

        Raises:
            KeyError: no such step in this scenario.
        """
        for step in self.data["steps"]:
            if step["label"] == label:
                return dict(step)
        raise KeyError(f"{self.name} has no step {label!r}")

    def show_text(self, label: str) -> str:
        return str(self.step(label)["stdout"])

    def show(self, label: str) -> tuple[UnitState, ...]:
        """The `systemctl show` step ``label``, parsed as the engine parses it."""
        step = self.step(label)
        return parse_show(step["stdout"], tuple(step["units"]))

    def entries(self, label: str, *, pid1_only: bool = True) -> list[dict[str, Any]]:
        """The journal step ``label`` as journalctl printed it (kept fields only)."""
        entries = [entry["fields"] for entry in self.step(label)["entries"]]
        return [entry for entry in entries if not pid1_only or entry.get("_PID") == "1"]

    def journal_text(self, label: str, *, pid1_only: bool = True) -> str:
        """`journalctl -o json` lines of step ``label``: what the engine's journal read gets."""
        return "".join(
            json.dumps(entry) + "\n" for entry in self.entries(label, pid1_only=pid1_only)
        )

    def journal(self, label: str) -> tuple[JournalEntry, ...]:
        """systemd's own messages of step ``label``, parsed as the engine parses them."""
        return parse_journal(self.journal_text(label))


class ReplayTransport:
    """A transport whose answers come from a recording: ``answer`` (status, stdout, stderr)
    for each argv, written down in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    @property
    def host(self) -> str:
        return "recorded"

    def close(self) -> None:
        pass

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        self.calls.append(tuple(argv))
        status, stdout, stderr = self.answer(argv)
        if check and status != 0:
            raise CommandFailed(self.host, argv, status, stderr)
        return CommandResult(tuple(argv), status, stdout, stderr)

    def answer(self, argv: Sequence[str]) -> tuple[int, str, str]:
        raise NotImplementedError


@functools.cache
def load(name: str) -> Recorded:
    """The recorded scenario ``name``.

    Raises:
        FileNotFoundError: it was never recorded.
    """
    return Recorded(json.loads((FIXTURE_DIRECTORY / f"{name}.json").read_text()))


def all_recordings() -> Iterator[Recorded]:
    for path in sorted(FIXTURE_DIRECTORY.glob("*.json")):
        yield load(path.stem)


@dataclass
class FieldShape:
    """The fields one kind of message carries in every recording."""

    seen: set[str] = field(default_factory=set)  # in at least one entry
    always: set[str] | None = None  # in every entry
    can_be_empty: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, names: set[str], fields: dict[str, Any]) -> None:
        self.seen |= names
        self.always = set(names) if self.always is None else self.always & names
        for name, value in fields.items():
            if value == "":
                self.can_be_empty.add(name)
            if isinstance(value, str):
                self.values[name].add(value)


def shape_key(fields: dict[str, Any]) -> str:
    """MESSAGE_ID for systemd's own messages, OUTPUT for a unit's output."""
    if fields.get("MESSAGE_ID"):
        return str(fields["MESSAGE_ID"])
    return PID1_PLAIN if fields.get("_PID") == "1" else OUTPUT


@functools.cache
def journal_shapes() -> dict[str, FieldShape]:
    """Per MESSAGE_ID (and OUTPUT), the fields real systemd wrote in the recordings."""
    shapes: dict[str, FieldShape] = defaultdict(FieldShape)
    for recorded in all_recordings():
        for step in recorded.data["steps"]:
            for entry in step.get("entries", ()):
                fields = entry["fields"]
                names = (set(fields) | set(entry["also"])) - ENVELOPE
                shapes[shape_key(fields)].add(names, fields)
    return dict(shapes)


@functools.cache
def show_properties() -> dict[str, set[str]]:
    """Every `show` property in the recordings, with the values it took."""
    properties: dict[str, set[str]] = defaultdict(set)
    for recorded in all_recordings():
        for step in recorded.data["steps"]:
            if step["kind"] != "show":
                continue
            for line in step["stdout"].splitlines():
                if "=" in line:
                    name, _, value = line.partition("=")
                    properties[name].add(value)
    return dict(properties)


class ShapeError(AssertionError):
    """A simulated message or `show` block real systemd would never produce."""


def check_entry(fields: dict[str, str]) -> None:
    """Check one simulated journal entry against the recorded shapes.

    Raises:
        ShapeError: a MESSAGE_ID never recorded, a field real systemd never writes with that
            message, a field it always writes missing, or an empty value it never writes.
    """
    key = shape_key(fields)
    shape = journal_shapes().get(key)
    if shape is None:
        raise ShapeError(f"MESSAGE_ID {key} was never recorded: {fields}")
    names = set(fields) - ENVELOPE
    invented = names - shape.seen
    if invented:
        raise ShapeError(f"systemd never writes {sorted(invented)} in {key} messages: {fields}")
    missing = ((shape.always or set()) & MEANINGFUL) - names
    if missing:
        raise ShapeError(f"systemd always writes {sorted(missing)} in {key} messages: {fields}")
    empty = {name for name, value in fields.items() if value == ""} - shape.can_be_empty
    if empty:
        raise ShapeError(f"systemd never writes an empty {sorted(empty)} in {key}: {fields}")
    for name in ENUMERATED:
        if name in fields and fields[name] not in shape.values[name]:
            raise ShapeError(f"systemd never writes {name}={fields[name]} in {key}: {fields}")


def check_show(properties: dict[str, str]) -> None:
    """Check one simulated `show` block's property names against the recordings.

    Raises:
        ShapeError: a property real systemd never printed.
    """
    invented = set(properties) - set(show_properties())
    if invented:
        raise ShapeError(f"systemctl show never prints {sorted(invented)}")
