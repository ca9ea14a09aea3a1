"""Recording what real systemd says: one scenario's commands, answers and journal entries.

A `Recording` runs shell commands on a testbed host and keeps, per labelled step, the command,
its exit status and output; `show` steps keep `systemctl show` text, `journal` steps keep the
journal entries (JSON) systemd wrote since a mark. `finish()` turns it into a fixture whose
volatile values (invocation ids, job ids, boot ids, cursors, times) are replaced consistently,
so the relations between them (same run, same job, earlier run) survive.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Final

from deploy_guard.systemd.parse import SHOW_PROPERTIES
from tests.testbed.host import TestHost

ENVIRONMENT: Final = "LC_ALL=C SYSTEMD_COLORS=0 SYSTEMD_PAGER="
# Journal fields whose values a fixture keeps. Every other field systemd writes is kept by
# name only ("also"), so the field set of each message is known without its noise.
VALUE_FIELDS: Final = (
    "MESSAGE", "MESSAGE_ID", "UNIT", "INVOCATION_ID", "JOB_ID", "JOB_TYPE", "JOB_RESULT",
    "UNIT_RESULT", "EXIT_CODE", "EXIT_STATUS", "PRIORITY", "_PID", "_SYSTEMD_UNIT",
    "_SYSTEMD_INVOCATION_ID", "__CURSOR", "__REALTIME_TIMESTAMP",
)  # fmt: skip
# Added by journald or journalctl to every entry, not written by systemd's message code.
DROPPED_FIELDS: Final = ("__MONOTONIC_TIMESTAMP", "__SEQNUM", "__SEQNUM_ID", "_BOOT_ID")
BASE_SECONDS: Final = 1_800_000_000  # recorded times are shifted to start here
HEX32: Final = re.compile(r"\b[0-9a-f]{32}\b")
JOB_NUMBER: Final = re.compile(r"(\bjob |Job=|/jobs?/)(\d+)")
SHOW_TIMESTAMP: Final = re.compile(r"^(\w*Timestamp)=@(\d+)$", re.MULTILINE)


@dataclass
class Normalizer:
    """Replaces volatile values by stable ones, the same value by the same replacement."""

    start_seconds: int
    invocations: dict[str, str] = field(default_factory=dict)
    boots: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    cursors: dict[str, str] = field(default_factory=dict)
    pids: dict[str, str] = field(default_factory=dict)

    def invocation(self, value: str) -> str:
        if not value:
            return value
        return self.invocations.setdefault(value, f"{len(self.invocations) + 1:032x}")

    def boot(self, value: str) -> str:
        return self.boots.setdefault(value, f"b{len(self.boots) + 1:031x}")

    def job(self, value: str) -> str:
        return self.jobs.setdefault(value, str(101 + len(self.jobs)))

    def cursor(self, value: str) -> str:
        return self.cursors.setdefault(value, f"s=recorded;i={len(self.cursors) + 1:x}")

    def pid(self, value: str) -> str:
        return value if value == "1" else self.pids.setdefault(value, str(4001 + len(self.pids)))

    def seconds(self, value: int) -> int:
        return value - self.start_seconds + BASE_SECONDS

    def text(self, text: str) -> str:
        """Free text (command output): ids known from structured fields, and job numbers."""
        text = HEX32.sub(lambda m: self.invocations.get(m[0]) or self.boots.get(m[0]) or m[0], text)
        text = JOB_NUMBER.sub(lambda m: m[1] + self.job(m[2]), text)
        return SHOW_TIMESTAMP.sub(lambda m: f"{m[1]}=@{self.seconds(int(m[2]))}", text)

    def show(self, text: str) -> str:
        def replace_id(match: re.Match[str]) -> str:
            return f"InvocationID={self.invocation(match[1])}"

        return self.text(re.sub(r"^InvocationID=(\w*)$", replace_id, text, flags=re.MULTILINE))

    def entry(self, raw: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in VALUE_FIELDS:
            if name not in raw:
                continue
            value = raw[name]
            if name in ("INVOCATION_ID", "_SYSTEMD_INVOCATION_ID") and isinstance(value, str):
                value = self.invocation(value)
            elif name == "JOB_ID" and isinstance(value, str):
                value = self.job(value)
            elif name == "__CURSOR":
                value = self.cursor(value)
            elif name == "_PID" and isinstance(value, str):
                value = self.pid(value)
            elif name == "__REALTIME_TIMESTAMP":
                micros = int(value)
                value = str(self.seconds(micros // 1_000_000) * 1_000_000 + micros % 1_000_000)
            elif isinstance(value, str):
                value = self.text(value)
            values[name] = value
        also = sorted(
            name for name in raw if name not in VALUE_FIELDS and name not in DROPPED_FIELDS
            and not (name.startswith("_") and not name.startswith("__"))
        )  # fmt: skip
        return {"fields": values, "also": also}


@dataclass
class Recording:
    """One scenario being played on one host."""

    host: TestHost
    name: str
    description: str
    units: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)
    _raw_entries: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        started = self.host.ssh("date +%s").stdout.strip()
        self.normalizer = Normalizer(int(started))
        self.boot_id = self.host.boot_id()

    def install(self, name: str, text: str, directory: str = "/etc/systemd/system") -> None:
        """Write a unit file (kept in the fixture); call reload() after the last one."""
        self.units[name] = text
        self.host.write_file(f"{directory}/{name}", text)

    def reload(self) -> None:
        self.host.daemon_reload()

    def sh(self, command: str, *, check: bool = False) -> str:
        """Run a setup command that is not part of the evidence; return its stdout."""
        return self.host.ssh(command, check=check).stdout

    def run(self, label: str, command: str, *, timeout: float = 120) -> dict[str, Any]:
        """Run a command whose answer is evidence, and keep it as step ``label``."""
        result = self.host.ssh(f"{ENVIRONMENT} {command}", check=False, timeout=timeout)
        step = {"label": label, "kind": "command", "command": command,
                "exit_status": result.returncode, "stdout": result.stdout,
                "stderr": result.stderr}  # fmt: skip
        self.steps.append(step)
        return step

    def show(self, label: str, *units: str) -> dict[str, Any]:
        """`systemctl show` of the engine's properties for ``units``."""
        command = f"systemctl show --timestamp=unix -p {','.join(SHOW_PROPERTIES)} -- " + " ".join(
            shlex.quote(unit) for unit in units
        )
        step = self.run(label, command)
        step |= {"kind": "show", "units": list(units)}
        return step

    def mark(self, name: str) -> None:
        """Remember the journal's end now; journal steps read from a mark."""
        output = self.sh("journalctl --lines=0 --show-cursor -q")
        self.marks[name] = output.strip().removeprefix("-- cursor: ")

    def journal(
        self, label: str, since: str, units: tuple[str, ...], *, expect: int = 1
    ) -> dict[str, Any]:
        """systemd's messages about ``units`` and their output since mark ``since``.

        journald writes asynchronously (FIELD-NOTES): read until ``expect`` messages of
        PID 1 are there, for at most ten seconds.
        """
        cursor = self.marks[since]
        matches = " + ".join(f"_PID=1 UNIT={unit} + _SYSTEMD_UNIT={unit}" for unit in units)
        command = f"journalctl -b -q -o json --cursor={shlex.quote(cursor)} {matches}"
        deadline = time.monotonic() + 10
        while True:
            result = self.host.ssh(f"{ENVIRONMENT} {command}", check=False)
            entries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
            entries = [entry for entry in entries if entry["__CURSOR"] != cursor]
            pid1 = [entry for entry in entries if entry.get("_PID") == "1"]
            if len(pid1) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        shown = command.replace(shlex.quote(cursor), "MARK")
        step = {"label": label, "kind": "journal", "command": shown, "since": since,
                "exit_status": result.returncode, "entries": []}  # fmt: skip
        self._raw_entries.append((len(self.steps), entries))
        self.steps.append(step)
        return step

    def wait(self, unit: str, *states: str, idle: bool = True, timeout: float = 60) -> None:
        """Poll until ``unit`` is in one of ``states`` (with ``idle``: and no job queued)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.sh(f"systemctl show -p ActiveState,SubState,Job -- {unit}")
            values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
            reached = values.get("ActiveState") in states
            if reached and not (idle and values.get("Job")):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{unit} did not reach {states}")

    def finish(self, version: str) -> dict[str, Any]:
        """The fixture: every step normalized, in the order played."""
        normalizer = self.normalizer
        normalizer.boot(self.boot_id)
        raw_entries = dict(self._raw_entries)
        # In the order played, so that ids and job numbers count up as they appeared.
        for index, step in enumerate(self.steps):
            if step["kind"] == "journal":
                step["entries"] = [normalizer.entry(entry) for entry in raw_entries[index]]
            elif step["kind"] == "show":
                step["stdout"] = normalizer.show(step["stdout"])
                step["stderr"] = normalizer.text(step["stderr"])
            else:
                step["stdout"] = normalizer.text(step["stdout"])
                step["stderr"] = normalizer.text(step["stderr"])
            step["command"] = normalizer.text(step["command"])
        return {
            "scenario": self.name,
            "description": self.description,
            "systemd": version,
            "units": self.units,
            "steps": self.steps,
        }


# -- shapes: what must stay the same between two recordings of one scenario -------------------

# `show` properties whose values are part of the shape; the others are times and ids.
SHAPE_PROPERTIES: Final = (
    "Type", "Result", "ExecMainCode", "ExecMainStatus", "LoadState", "ActiveState", "SubState",
    "ConditionResult",
)  # fmt: skip
# Journal fields whose values are part of the shape (ids are compared as normalized).
SHAPE_FIELDS: Final = (
    "MESSAGE_ID", "UNIT", "JOB_TYPE", "JOB_RESULT", "UNIT_RESULT", "INVOCATION_ID", "JOB_ID",
    "EXIT_CODE", "EXIT_STATUS",
)  # fmt: skip


def shape(fixture: dict[str, Any]) -> dict[str, Any]:
    """The parts of a fixture that a newer systemd must not change, flattened to
    "step/what" -> value, so that a difference names its step and field.

    systemd's own journal messages are compared field by field (names and the values above);
    a unit's own output lines are left out: journald sometimes stores them without
    _SYSTEMD_INVOCATION_ID (docs/field-notes.md).
    """
    flat: dict[str, Any] = {}
    for step in fixture["steps"]:
        where = step["label"]
        flat[f"{where}/exit status"] = step["exit_status"]
        if step["kind"] == "command" and "--show-transaction" in step["command"]:
            flat[f"{where}/stderr"] = step["stderr"]
        if step["kind"] == "show":
            for index, block in enumerate(step["stdout"].strip().split("\n\n")):
                properties = dict(line.partition("=")[::2] for line in block.splitlines())
                flat[f"{where}[{index}]/properties"] = list(properties)
                for name in SHAPE_PROPERTIES:
                    flat[f"{where}[{index}]/{name}"] = properties.get(name)
                flat[f"{where}[{index}]/InvocationID"] = properties.get("InvocationID")
        if step["kind"] == "journal":
            messages = [entry for entry in step["entries"] if entry["fields"].get("_PID") == "1"]
            flat[f"{where}/messages"] = [
                entry["fields"].get("MESSAGE_ID", "") for entry in messages
            ]
            for index, entry in enumerate(messages):
                fields = entry["fields"]
                key = f"{where}[{index}]"
                flat[f"{key}/fields"] = sorted({*fields, *entry["also"]} - {"__CURSOR"})
                for name in SHAPE_FIELDS:
                    flat[f"{key}/{name}"] = fields.get(name)
    return flat


def shape_differences(recorded: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Each way the live recording's shape differs from the recorded one, naming the field."""
    old, new = shape(recorded), shape(live)
    differences = []
    for key in dict.fromkeys([*old, *new]):
        if old.get(key) == new.get(key):
            continue
        if isinstance(old.get(key), list) and isinstance(new.get(key), list):
            gone = [item for item in old[key] if item not in new[key]]
            added = [item for item in new[key] if item not in old[key]]
            detail = f"no longer {gone}, new {added}" if gone or added else "order changed"
            differences.append(f"{fixture_name(recorded)}: {key}: {detail}")
        else:
            differences.append(
                f"{fixture_name(recorded)}: {key}: recorded {old.get(key)!r}, live {new.get(key)!r}"
            )
    return differences


def fixture_name(fixture: dict[str, Any]) -> str:
    return str(fixture.get("scenario", "?"))
