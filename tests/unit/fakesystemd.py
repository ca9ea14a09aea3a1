"""An in-memory systemd 252 host behind the transport seam, and a clock that moves only on sleep.

`FakeHost` understands exactly the argv that `SystemdClient` sends (anything else fails the
test) and reproduces what FIELD-NOTES.md records: anchor job ids on stderr, a start merged
into a running oneshot's job, garbage collection of units that succeeded, unmet conditions
that run nothing, SIGTERM honoured or ignored on stop, and PID 1's own journal messages.

It is grounded in the recordings of real systemd (tests/unit/recordings.py): every journal
entry it writes and every `show` block it prints is checked against the recorded shapes
(a field real systemd never writes with that MESSAGE_ID raises `ShapeError`), and the
property order, the block of a unit that does not exist and the unreadable-journal answer
are the recorded ones.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from deploy_guard.errors import CommandFailed, ConnectionLost
from deploy_guard.systemd.parse import (
    MESSAGE_UNIT_FAILURE,
    MESSAGE_UNIT_STARTING,
    MESSAGE_UNIT_SUCCESS,
)
from deploy_guard.transport.base import CommandResult
from tests.unit.recordings import check_entry, check_show, load

MESSAGE_JOB_DONE: Final = "39f53479d3a045ac8e11786248231fbf"
MESSAGE_JOB_FAILED: Final = "be02cf6855d2428ba40df7e9d022f03d"
# "Stopping X..." and "Stopped X.": a stop job's own messages (recorded: simple-stopped).
MESSAGE_UNIT_STOPPING: Final = "de5b426a63be47a7b6ac3eaac82e2f6f"
MESSAGE_UNIT_STOPPED: Final = "9d1aaa27d60140bd96365438aad20286"
# "X: Main process exited, code=exited, status=3/NOTIMPLEMENTED" (with EXIT_CODE, EXIT_STATUS).
MESSAGE_PROCESS_EXIT: Final = "98e322203f7a4ed290d09fe03c09fe15"
_STATUS_NAMES: Final = {1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 9: "KILL",
                        15: "TERM"}  # fmt: skip
EPOCH: Final = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _recorded_block(scenario: str, label: str, index: int = 0) -> dict[str, str]:
    """One recorded `show` block as property -> value, in systemd's order."""
    block = load(scenario).show_text(label).strip().split("\n\n")[index]
    return dict(line.partition("=")[::2] for line in block.splitlines())


# systemd prints properties in its own order, not in -p order (FIELD-NOTES): the recorded one.
_SHOW_ORDER: Final = tuple(_recorded_block("oneshot-failure", "after"))
# What `show` prints for a unit that does not exist (recorded: start-errors), but its name.
_NOT_FOUND: Final = _recorded_block("start-errors", "show-mixed", 1)
_UNREADABLE_JOURNAL: Final = load("journal-unreadable").step("journal-as-nobody")
_IGNORED_OPTIONS: Final = ("--no-pager", "--no-ask-password", "--quiet", "--boot")
_SKIPPED: Final = (
    "was skipped because of an unmet condition check (ConditionPathExists=/nonexistent)."
)

Fields = dict[str, str]


class FakeClock:
    """`deploy_guard.clock.Clock` whose time advances only when someone sleeps."""

    def __init__(self) -> None:
        self._seconds = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self._seconds)


@dataclass
class SimUnit:
    """A service's definition (first fields) and its live state as `systemctl show` sees it."""

    name: str
    type: str = "oneshot"
    duration: float = 5.0
    exit_status: int = 0
    condition_met: bool = True
    ignores_sigterm: bool = False
    gc: bool = True  # nothing references it: unloaded as soon as it succeeded
    remain_after_exit: bool = False
    start_denied: bool = False
    file_state: str = "static"
    active: str = "inactive"
    sub: str = "dead"
    result: str = "success"
    invocation: str = ""
    job: int | None = None
    code: int = 0
    status: int = 0
    condition: str = "no"
    started: float | None = None
    exited: float | None = None
    ends_at: float | None = None

    @property
    def running(self) -> bool:
        return self.active in ("activating", "active", "deactivating") and self.sub != "exited"

    def unload(self) -> None:
        """Garbage collection: `show` now prints the defaults, as if it never ran."""
        self.active, self.sub, self.result, self.invocation = "inactive", "dead", "success", ""
        self.job, self.code, self.status, self.condition = None, 0, 0, "no"
        self.started = self.exited = None


class FakeHost:
    """`deploy_guard.transport.base.Transport` for one simulated host."""

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        units: Sequence[SimUnit] = (),
        *,
        journal_readable: bool = True,
        journal_delay: float = 0.0,
        drop_after_start: float | None = None,
    ) -> None:
        self.name, self.clock = name, clock
        self.units = {unit.name: unit for unit in units}
        self.journal_readable, self.journal_delay = journal_readable, journal_delay
        self.drop_after_start = drop_after_start  # the connection dies this long after 1st start
        self.calls: list[tuple[float, tuple[str, ...]]] = []
        self.files: dict[str, str] = {}  # path -> content, for `cat -- PATH`
        self.uid = 1000  # `id -u`: a guard user, not root
        self.closed = False
        # Not about any unit, so never read back; it is there so that a cursor exists.
        self._journal: list[tuple[float, Fields]] = [(0.0, {"_PID": "1", "MESSAGE": "Booted"})]
        self._jobs, self._invocations = 300, 0
        self._first_start: float | None = None

    @property
    def host(self) -> str:
        return self.name

    def close(self) -> None:
        self.closed = True

    def commands(self, verb: str) -> list[tuple[float, tuple[str, ...]]]:
        """(time, arguments after "--") of every systemctl call with ``verb``."""
        found = []
        for at, argv in self.calls:
            if argv[0] == "systemctl" and verb in argv:
                found.append((at, argv[argv.index("--") + 1 :] if "--" in argv else ()))
        return found

    def messages(self, unit: str) -> list[str]:
        """PID 1's journal messages about ``unit``, visible or not."""
        return [f["MESSAGE"] for _, f in self._journal if f.get("UNIT") == unit]

    def trigger(self, name: str) -> None:
        """What a timer does: start the unit now, outside the guard."""
        self._begin(self.units[name], self._new_job())

    def stop_from_outside(self, name: str) -> None:
        """What someone else's `systemctl stop` does (an operator, a shutdown)."""
        unit = self.units[name]
        if unit.running:
            self._stop(unit, self.clock.monotonic())

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        now = self.clock.monotonic()
        self.calls.append((now, tuple(argv)))
        dropped = self._first_start is not None and self.drop_after_start is not None
        if dropped and now >= (self._first_start or 0) + (self.drop_after_start or 0):
            raise ConnectionLost(self.name, "connection reset by peer")
        self._advance(now)
        words = [word for word in argv if word not in _IGNORED_OPTIONS]
        if words[0] == "systemctl":
            status, stdout, stderr = self._systemctl(words[1:], now)
        elif words[0] == "journalctl":
            status, stdout, stderr = self._journalctl(words[1:], now)
        elif words[:2] == ["cat", "--"]:  # a file the engine reads (the host's manifest)
            text = self.files.get(words[2])
            status, stdout, stderr = (
                (0, text, "") if text is not None
                else (1, "", f"cat: {words[2]}: No such file or directory\n")
            )  # fmt: skip
        elif words == ["id", "-u"]:  # the proof asks whether it runs as root (issue 16)
            status, stdout, stderr = 0, f"{self.uid}\n", ""
        else:
            assert words == ["cat", "/proc/sys/kernel/random/boot_id"], argv
            status, stdout, stderr = 0, "0a1b2c3d-0000-4000-8000-000000000001\n", ""
        if check and status != 0:
            raise CommandFailed(self.name, argv, status, stderr)
        return CommandResult(tuple(argv), status, stdout, stderr)

    # -- systemctl ------------------------------------------------------------------------

    def _systemctl(self, words: list[str], now: float) -> tuple[int, str, str]:
        verb, options = words[0], words[1:]
        if verb == "--version":
            return 0, "systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT +SELINUX\n", ""
        if verb == "show":
            assert options[:2] == ["--timestamp=unix", "-p"], words
            assert options[3] == "--", words
            properties = options[2].split(",")
            assert set(properties) <= set(_SHOW_ORDER), properties
            return 0, "\n\n".join(self._show(unit, properties) for unit in options[4:]) + "\n", ""
        if verb == "start":
            assert options[:3] == ["--no-block", "--show-transaction", "--"], words
            self._first_start = now if self._first_start is None else self._first_start
            return self._start(options[3:])
        if verb in ("stop", "kill"):
            expected = ["--no-block", "--"] if verb == "stop" else ["--signal=SIGKILL", "--"]
            assert options[:2] == expected, words
            for unit in filter(None, map(self.units.get, options[2:])):
                if unit.running and verb == "stop":
                    self._stop(unit, now)
                elif unit.running:
                    self._exit(unit, now, "sigkill")
            return 0, "", ""
        patterns = options[options.index("--") + 1 :] if "--" in options else []
        options = options[: options.index("--")] if "--" in options else options
        wanted = [
            unit
            for unit in self.units.values()
            if not patterns or any(fnmatch.fnmatchcase(unit.name, p) for p in patterns)
        ]
        if verb == "list-unit-files":
            assert options == ["--type=service", "--no-legend", "--plain"], words
            lines = [f"{unit.name} {unit.file_state} enabled\n" for unit in wanted]
            return (0 if lines else 1), "".join(lines), ""
        assert verb == "list-units", words
        if "--state=failed" in options:  # pre-flight's record of already-failed units
            failed = [u for u in self.units.values() if u.active == "failed"]
            return 0, "".join(f"{u.name} loaded failed failed {u.name}\n" for u in failed), ""
        assert options == ["--all", "--type=service", "--no-legend", "--plain"], words
        loaded = [u for u in wanted if not u.gc or u.invocation or u.running]
        return 0, "".join(f"{u.name} loaded {u.active} {u.sub} {u.name}\n" for u in loaded), ""

    def _show(self, name: str, properties: list[str]) -> str:
        unit = self.units.get(name)
        values = _NOT_FOUND | {"Id": name}
        if unit is not None:
            values |= {
                "Type": unit.type,
                "RemainAfterExit": "yes" if unit.remain_after_exit else "no",
                "Result": unit.result,
                "ExecMainStartTimestamp": self._stamp(unit.started),
                "ExecMainExitTimestamp": self._stamp(unit.exited),
                "ExecMainCode": str(unit.code),
                "ExecMainStatus": str(unit.status),
                "LoadState": "masked" if unit.file_state == "masked" else "loaded",
                "ActiveState": unit.active,
                "SubState": unit.sub,
                "InvocationID": unit.invocation,
                "Job": "" if unit.job is None else str(unit.job),
                "ConditionResult": unit.condition,
            }
        block = {key: values.get(key, "") for key in _SHOW_ORDER if key in properties}
        check_show(block)
        return "\n".join(f"{key}={value}" for key, value in block.items())

    def _start(self, names: list[str]) -> tuple[int, str, str]:
        lines, status = [], 0
        for name in names:
            unit = self.units.get(name)
            if unit is None:
                lines.append(f"Failed to start {name}: Unit {name} not found.")
                status = 5
            elif unit.start_denied:
                lines.append(f"Failed to start {name}: Access denied")
                status = 4
            elif unit.active == "activating" and unit.job is not None:
                lines.append(f"Enqueued anchor job {unit.job} {name}/start.")  # merged
            elif unit.active in ("active", "deactivating"):
                # Nothing to do: the job completes at once and never reaches the journal.
                lines.append(f"Enqueued anchor job {self._new_job()} {name}/start.")
            else:
                job = self._new_job()
                lines.append(f"Enqueued anchor job {job} {name}/start.")
                self._begin(unit, job)
        return status, "", "".join(f"{line}\n" for line in lines)

    # -- the simulated service manager ------------------------------------------------------

    def _new_job(self) -> int:
        self._jobs += 1
        return self._jobs

    def _begin(self, unit: SimUnit, job: int) -> None:
        now = self.clock.monotonic()
        start_job = {"JOB_ID": str(job), "JOB_TYPE": "start"}
        if not unit.condition_met:
            # Nothing runs and nothing else changes. The job-done message carries the unit's
            # current invocation id: the earlier run's, or empty when it has none (recorded:
            # condition-skip-after-success, -after-failure, -never-ran).
            unit.condition = "no"
            skipped = {**start_job, "JOB_RESULT": "done", "INVOCATION_ID": unit.invocation}
            self._pid1(now, unit, MESSAGE_JOB_DONE, f"{unit.name} {_SKIPPED}", skipped)
            return
        self._invocations += 1
        unit.invocation = f"{self._invocations:032x}"
        unit.condition, unit.result, unit.code, unit.status = "yes", "success", 0, 0
        unit.started, unit.exited, unit.ends_at = now, None, now + unit.duration
        start_job["INVOCATION_ID"] = unit.invocation
        if unit.type == "oneshot":
            unit.active, unit.sub, unit.job = "activating", "start", job
            self._pid1(now, unit, MESSAGE_UNIT_STARTING, f"Starting {unit.name}...", start_job)
        else:
            unit.active, unit.sub, unit.job = "active", "running", None
            done = {**start_job, "JOB_RESULT": "done"}
            self._pid1(now, unit, MESSAGE_JOB_DONE, f"Started {unit.name}.", done)
        self._output(now, unit, "backup started")

    def _advance(self, now: float) -> None:
        while due := [u for u in self.units.values() if u.ends_at is not None and u.ends_at <= now]:
            unit = min(due, key=lambda u: u.ends_at or 0.0)
            self._exit(unit, unit.ends_at or 0.0, "exit")

    def _stop(self, unit: SimUnit, now: float) -> None:
        if unit.active == "deactivating":
            return
        unit.job = self._new_job()  # the stop job; a queued or running start job is cancelled
        if unit.active == "active":  # not for an activating oneshot (recorded: oneshot-stopped)
            stop_job = {"JOB_ID": str(unit.job), "JOB_TYPE": "stop",
                        "INVOCATION_ID": unit.invocation}  # fmt: skip
            self._pid1(now, unit, MESSAGE_UNIT_STOPPING, f"Stopping {unit.name}...", stop_job)
        if unit.ignores_sigterm:
            unit.active, unit.sub = "deactivating", "stop-sigterm"
        else:
            self._exit(unit, now, "sigterm")

    def _exit(self, unit: SimUnit, at: float, how: str) -> None:
        """The main process ended: "exit" on its own, or by "sigterm" / "sigkill"."""
        job, stopping = unit.job, how == "sigterm" or unit.active == "deactivating"
        unit.ends_at, unit.exited, unit.job = None, at, None
        if how == "exit":
            unit.code, unit.status = 1, unit.exit_status
            unit.result = "success" if unit.exit_status == 0 else "exit-code"
        else:
            # SIGTERM is a clean exit for a Type=simple service ("Deactivated successfully"),
            # not for a oneshot: Result=signal (recorded: simple-stopped, oneshot-stopped).
            unit.code, unit.status = 2, 15 if how == "sigterm" else 9
            clean = how == "sigterm" and unit.type != "oneshot"
            unit.result = "success" if clean else "signal"
        self._output(at, unit, f"backup ended with status {unit.status}")
        invocation = {"INVOCATION_ID": unit.invocation}
        start_job = {"JOB_ID": str(job), "JOB_TYPE": "start", **invocation}
        if unit.result != "success":  # no such message for a clean end (recorded)
            code = "exited" if unit.code == 1 else "killed"
            name = _STATUS_NAMES.get(unit.status, str(unit.status))
            text = f"{unit.name}: Main process exited, code={code}, status={unit.status}/{name}"
            process = {"EXIT_CODE": code, "EXIT_STATUS": str(unit.status), **invocation}
            self._pid1(at, unit, MESSAGE_PROCESS_EXIT, text, process)
        if unit.result == "success":
            message = f"{unit.name}: Deactivated successfully."
            self._pid1(at, unit, MESSAGE_UNIT_SUCCESS, message, invocation)
            if unit.type == "oneshot" and how == "exit":
                finished = {**start_job, "JOB_RESULT": "done"}
                self._pid1(at, unit, MESSAGE_JOB_DONE, f"Finished {unit.name}.", finished)
            exited = unit.remain_after_exit and how == "exit"
            unit.active, unit.sub = ("active", "exited") if exited else ("inactive", "dead")
        else:
            message = f"{unit.name}: Failed with result '{unit.result}'."
            self._pid1(at, unit, MESSAGE_UNIT_FAILURE, message, {"UNIT_RESULT": unit.result,
                                                                 **invocation})  # fmt: skip
            if unit.type == "oneshot" and how == "exit":
                failed = {**start_job, "JOB_RESULT": "failed"}
                self._pid1(at, unit, MESSAGE_JOB_FAILED, f"Failed to start {unit.name}.", failed)
            unit.active, unit.sub = "failed", "failed"
        if stopping:
            stopped = {"JOB_ID": str(job), "JOB_TYPE": "stop", "JOB_RESULT": "done", **invocation}
            self._pid1(at, unit, MESSAGE_UNIT_STOPPED, f"Stopped {unit.name}.", stopped)
        if unit.gc and unit.active == "inactive":
            unit.unload()

    # -- journal ----------------------------------------------------------------------------

    def _pid1(self, at: float, unit: SimUnit, message_id: str, text: str, fields: Fields) -> None:
        entry = {"_PID": "1", "_SYSTEMD_UNIT": "init.scope", "UNIT": unit.name,
                 "MESSAGE_ID": message_id, "MESSAGE": text}  # fmt: skip
        check_entry(entry | fields)
        # systemd logs the unit's current invocation id with every message about it, never a
        # made-up one: a skip carries the earlier run's (test_replay checks the recordings).
        assert fields.get("INVOCATION_ID", unit.invocation) == unit.invocation, fields
        self._journal.append((at, entry | fields))

    def _output(self, at: float, unit: SimUnit, message: str) -> None:
        entry = {"_PID": "4242", "_SYSTEMD_UNIT": unit.name, "MESSAGE": f"{unit.name}: {message}",
                 "_SYSTEMD_INVOCATION_ID": unit.invocation}  # fmt: skip
        check_entry(entry)
        self._journal.append((at, entry))

    def _journalctl(self, words: list[str], now: float) -> tuple[int, str, str]:
        if not self.journal_readable:  # what journalctl answers (recorded: journal-unreadable)
            step = _UNREADABLE_JOURNAL
            return step["exit_status"], step["stdout"], step["stderr"]
        delay = self.journal_delay
        visible = [(i, f) for i, (at, f) in enumerate(self._journal) if at + delay <= now]
        if words == ["--lines=0", "--show-cursor"]:
            return 0, f"-- cursor: s=fake;i={visible[-1][0]:x}\n" if visible else "", ""
        if words[0] == "--output=cat":
            words = [w for w in words if not w.startswith("--cursor=")]
            if words[-1].startswith("_SYSTEMD_UNIT="):  # "+ _SYSTEMD_UNIT=U" since the cursor
                words = words[:-2]
            invocation = words[-1].removeprefix("INVOCATION_ID=")
            expected = [f"_SYSTEMD_INVOCATION_ID={invocation}", "+", f"INVOCATION_ID={invocation}"]
            assert words[2:] == expected, words
            ids = ("INVOCATION_ID", "_SYSTEMD_INVOCATION_ID")
            lines = [f["MESSAGE"] for _, f in visible if invocation in map(f.get, ids)]
            return 0, "".join(f"{line}\n" for line in lines[-int(words[1][8:]) :]), ""
        assert words[0] == "--output=json", words
        assert words[1].startswith("--output-fields="), words
        fields, first = words[1].partition("=")[2].split(","), 0
        if words[2].startswith("--cursor="):
            first = int(words.pop(2).rpartition("i=")[2], 16)  # inclusive, like --cursor
        assert words[2] == "_PID=1", words
        assert all(word.startswith("UNIT=") for word in words[3:]), words
        units = {word.removeprefix("UNIT=") for word in words[3:]}
        lines = []
        for index, entry in visible:
            if index >= first and entry.get("_PID") == "1" and entry.get("UNIT") in units:
                realtime = int((EPOCH.timestamp() + self._journal[index][0]) * 1_000_000)
                shown = {key: entry[key] for key in fields if key in entry}
                cursor = {"__CURSOR": f"s=fake;i={index:x}", "__REALTIME_TIMESTAMP": str(realtime)}
                lines.append(json.dumps(cursor | shown) + "\n")
        return 0, "".join(lines), ""

    def _stamp(self, at: float | None) -> str:
        return "" if at is None else f"@{int(EPOCH.timestamp() + at)}"
