"""The scenarios the recorder plays on real systemd: each trap of issue 11 and each item of
FIELD-NOTES that can be played. Each function plays one scenario on a fresh unit name.

The engine's own command shapes are used (`start --no-block --show-transaction`, `show
--timestamp=unix -p ...`), so the recordings can be replayed through its parsers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tests.testbed.host import TestHost
from tests.testbed.recording import Recording

FIXTURE_DIRECTORY: Final = Path(__file__).resolve().parents[1] / "fixtures" / "systemd-252"
START: Final = "systemctl start --no-block --show-transaction --"
ONESHOT: Final = "[Service]\nType=oneshot\nExecStart={}\n"
SIMPLE: Final = "[Service]\nType=simple\nExecStart={}\n"
# A timer that never fires by itself: it keeps its service loaded, as NixOS timers do.
IDLE_TIMER: Final = "[Timer]\nOnCalendar=2099-01-01\nUnit={}\n"

Scenario = Callable[[Recording], None]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    """Register a scenario; its docstring is the description saved with the fixture."""

    def register(function: Scenario) -> Scenario:
        description = " ".join((function.__doc__ or "").split())
        SCENARIOS[name] = (description, function)
        return function

    return register


def _start_and_settle(recording: Recording, unit: str, label: str, *states: str) -> None:
    recording.run(label, f"{START} {unit}")
    recording.wait(unit, *(states or ("inactive", "failed")))


@scenario("oneshot-success-gc")
def oneshot_success_gc(recording: Recording) -> None:
    """A Type=oneshot unit referenced by nothing runs and succeeds; systemd unloads it at once, so
    `show` prints the defaults of a unit that never ran.
    """
    unit = "rec-oneshot-ok.service"
    recording.install(unit, ONESHOT.format("/bin/sh -c 'echo backing up; sleep 1; echo done'"))
    recording.reload()
    recording.show("before", unit)
    recording.mark("start")
    _start_and_settle(recording, unit, "start")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=3)


@scenario("oneshot-failure")
def oneshot_failure(recording: Recording) -> None:
    """A Type=oneshot unit exits 3: it stays loaded as failed."""
    unit = "rec-oneshot-fail.service"
    recording.install(unit, ONESHOT.format("/bin/sh -c 'echo cannot reach repository; exit 3'"))
    recording.reload()
    recording.mark("start")
    _start_and_settle(recording, unit, "start")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=4)


@scenario("simple-success-gc")
def simple_success_gc(recording: Recording) -> None:
    """A Type=simple unit (sanoid, syncoid, borgbackup) runs 3 s and exits 0: the start job is done
    when the process is launched.
    """
    unit = "rec-simple-ok.service"
    recording.install(unit, SIMPLE.format("/bin/sh -c 'echo snapshot; sleep 3'"))
    recording.reload()
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "active")
    recording.show("running", unit)
    recording.wait(unit, "inactive", "failed")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=2)


@scenario("simple-failure")
def simple_failure(recording: Recording) -> None:
    """A Type=simple unit exits 2 after a second."""
    unit = "rec-simple-fail.service"
    recording.install(unit, SIMPLE.format("/bin/sh -c 'sleep 1; echo zfs failed; exit 2'"))
    recording.reload()
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "failed")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=3)


@scenario("condition-skip-never-ran")
def condition_skip_never_ran(recording: Recording) -> None:
    """An unmet ConditionPathExists= on a unit that never ran: nothing runs, the start job is done,
    and its message has an empty INVOCATION_ID.
    """
    unit = "rec-cond-never.service"
    recording.install(unit, "[Unit]\nConditionPathExists=/run/rec-never\n"
                      + ONESHOT.format("/bin/true"))  # fmt: skip
    recording.reload()
    recording.mark("start")
    _start_and_settle(recording, unit, "start")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=1)


def _condition_skip_after(recording: Recording, unit: str, succeed: bool) -> None:
    """A run (kept loaded by its timer, or by its failure), then a start skipped by its
    condition (issue 11 case 1)."""
    timer = unit.replace(".service", ".timer")
    command = "/bin/sh -c 'echo backing up; sleep 1'" if succeed else "/bin/sh -c 'exit 3'"
    recording.install(unit, "[Unit]\nConditionPathExists=!/run/rec-skip\n"
                      + ONESHOT.format(command))  # fmt: skip
    recording.install(timer, IDLE_TIMER.format(unit))
    recording.reload()
    recording.sh(f"rm -f /run/rec-skip; systemctl start {timer}", check=True)
    recording.mark("first")
    _start_and_settle(recording, unit, "first-start")
    recording.show("after-first", unit)
    recording.sh("touch /run/rec-skip", check=True)
    recording.mark("second")
    _start_and_settle(recording, unit, "second-start")
    recording.show("after-second", unit)
    recording.journal("journal-first", "first", (unit,), expect=4)
    recording.journal("journal-second", "second", (unit,), expect=1)
    recording.sh(f"rm -f /run/rec-skip; systemctl stop {timer}")


@scenario("condition-skip-after-success")
def condition_skip_after_success(recording: Recording) -> None:
    """issue 11 case 1: a unit kept loaded by its timer ran and succeeded; a second start is
    skipped by an unmet condition.
    """
    _condition_skip_after(recording, "rec-cond-after-ok.service", succeed=True)


@scenario("condition-skip-after-failure")
def condition_skip_after_failure(recording: Recording) -> None:
    """issue 11 case 1: a unit ran and failed (it stays loaded); a second start is skipped by an
    unmet condition.
    """
    _condition_skip_after(recording, "rec-cond-after-fail.service", succeed=False)


@scenario("simple-stopped")
def simple_stopped(recording: Recording) -> None:
    """issue 11 case 2: a Type=simple unit is stopped from outside mid-run (`systemctl stop`):
    SIGTERM, which systemd counts as a clean exit.
    """
    unit = "rec-simple-stopped.service"
    recording.install(unit, SIMPLE.format("/bin/sleep 300"))
    recording.reload()
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "active")
    recording.show("running", unit)
    recording.run("stop", f"systemctl stop -- {unit}")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=4)


@scenario("simple-stopped-loaded")
def simple_stopped_loaded(recording: Recording) -> None:
    """issue 11 cases 2 and 3: a Type=simple unit kept loaded by its timer is stopped mid-run.
    `show` then describes the run: Result=success, yet ExecMainCode=2 (killed), status 15.
    """
    unit, timer = "rec-simple-stopped-loaded.service", "rec-simple-stopped-loaded.timer"
    recording.install(unit, SIMPLE.format("/bin/sleep 300"))
    recording.install(timer, IDLE_TIMER.format(unit))
    recording.reload()
    recording.sh(f"systemctl start {timer}", check=True)
    recording.show("before", unit)
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "active")
    recording.run("stop", f"systemctl stop -- {unit}")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=4)
    recording.sh(f"systemctl stop {timer}")


@scenario("oneshot-stopped")
def oneshot_stopped(recording: Recording) -> None:
    """issue 11 case 2: a Type=oneshot unit is stopped from outside while it runs: its start job is
    cancelled, SIGTERM.
    """
    unit = "rec-oneshot-stopped.service"
    recording.install(unit, ONESHOT.format("/bin/sleep 300"))
    recording.reload()
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "activating", idle=False)
    recording.show("running", unit)
    recording.run("is-active", f"systemctl is-active -- {unit}")
    recording.run("stop", f"systemctl stop -- {unit}")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=4)


@scenario("oneshot-sigterm-ignored-killed")
def oneshot_sigterm_ignored_killed(recording: Recording) -> None:
    """The engine's timeout path: a oneshot ignores SIGTERM, `stop --no-block` leaves it
    deactivating, SIGKILL ends it.
    """
    unit = "rec-oneshot-stubborn.service"
    recording.install(unit, ONESHOT.format(
        "/bin/sh -c \"trap '' TERM; while :; do sleep 0.2; done\""))  # fmt: skip
    recording.reload()
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "activating", idle=False)
    recording.run("stop", f"systemctl stop --no-block -- {unit}")
    recording.wait(unit, "deactivating", idle=False)
    recording.show("deactivating", unit)
    recording.run("kill", f"systemctl kill --signal=SIGKILL -- {unit}")
    recording.wait(unit, "inactive", "failed")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=4)


@scenario("joined-timer-run")
def joined_timer_run(recording: Recording) -> None:
    """A timer starts a oneshot; while it runs, the guard's start merges into that run's job: no
    second run.
    """
    unit = "rec-joined.service"
    timer = "rec-joined.timer"
    recording.install(unit, ONESHOT.format("/bin/sh -c 'echo backing up; sleep 10'"))
    recording.install(timer, f"[Timer]\nOnActiveSec=1\nAccuracySec=1ms\nUnit={unit}\n")
    recording.reload()
    recording.mark("timer")
    recording.sh(f"systemctl start {timer}", check=True)
    recording.wait(unit, "activating", idle=False, timeout=10)
    recording.show("baseline", unit)
    recording.mark("start")
    recording.run("start", f"{START} {unit}")
    recording.wait(unit, "inactive", "failed")
    recording.show("after", unit)
    recording.journal("journal-timer", "timer", (unit,), expect=3)
    recording.journal("journal", "start", (unit,), expect=2)
    recording.sh(f"systemctl stop {timer}")


@scenario("execstartpre-failed")
def execstartpre_failed(recording: Recording) -> None:
    """ExecStartPre= fails: Result=exit-code while ExecMainStatus=0 (the main process never ran)."""
    unit = "rec-pre-fail.service"
    recording.install(unit, "[Service]\nType=oneshot\nExecStartPre=/bin/false\n"
                      "ExecStart=/bin/true\n")  # fmt: skip
    recording.reload()
    recording.mark("start")
    _start_and_settle(recording, unit, "start")
    recording.show("after", unit)
    recording.journal("journal", "start", (unit,), expect=3)


@scenario("queued-job-keeps-result")
def queued_job_keeps_result(recording: Recording) -> None:
    """A unit that failed before, queued behind another job: while the job waits, `show` still has
    the previous run's Result and id.
    """
    first, second = "rec-queue-first.service", "rec-queue-second.service"
    recording.install(first, ONESHOT.format("/bin/sleep 10"))
    command = "/bin/sh -c 'test -e /run/rec-queue-ok || exit 4'"
    recording.install(second, f"[Unit]\nAfter={first}\n" + ONESHOT.format(command))
    recording.reload()
    recording.sh("rm -f /run/rec-queue-ok")
    _start_and_settle(recording, second, "failed-run", "failed")
    recording.show("failed", second)
    recording.sh("touch /run/rec-queue-ok", check=True)
    recording.mark("start")
    recording.run("start", f"{START} {first} {second}")
    recording.wait(first, "activating", idle=False)
    recording.show("queued", first, second)
    recording.wait(second, "inactive", "failed")
    recording.show("after", first, second)
    recording.journal("journal", "start", (second,), expect=3)
    recording.sh("rm -f /run/rec-queue-ok")


@scenario("start-errors")
def start_errors(recording: Recording) -> None:
    """Starting units that cannot be started (not found, masked, invalid name) next to one that
    can: what --show-transaction prints, and the exit code.
    """
    good, masked = "rec-start-good.service", "rec-masked.service"
    recording.install(good, ONESHOT.format("/bin/true"))
    # `systemctl mask` refuses a unit whose file is in /etc (the mask goes there).
    recording.install(masked, ONESHOT.format("/bin/true"), "/usr/lib/systemd/system")
    recording.reload()
    recording.sh(f"systemctl mask {masked}", check=True)
    recording.run("start-good", f"{START} {good}")
    recording.run("start-not-found", f"{START} rec-nonexistent.service")
    recording.run("start-masked", f"{START} {masked}")
    recording.run("start-invalid", f"{START} 'rec invalid.service'")
    recording.run("start-mixed", f"{START} {good} rec-nonexistent.service")
    recording.wait(good, "inactive", "failed")
    recording.show("show-mixed", good, "rec-nonexistent.service", masked)
    recording.run("show-invalid", "systemctl show -p Id,LoadState -- 'rec invalid.service'")


@scenario("blocking-start")
def blocking_start(recording: Recording) -> None:
    """`systemctl start` without --no-block waits for a oneshot to finish: its exit status and
    message when the run fails, and when it succeeds.
    """
    good, bad = "rec-blocking-ok.service", "rec-blocking-fail.service"
    recording.install(good, ONESHOT.format("/bin/sh -c 'sleep 1'"))
    recording.install(bad, ONESHOT.format("/bin/sh -c 'sleep 1; exit 3'"))
    recording.reload()
    recording.run("start-ok", f"systemctl start -- {good}")
    recording.run("start-fail", f"systemctl start -- {bad}")
    recording.show("after", good, bad)


@scenario("reset-failed-unloads")
def reset_failed_unloads(recording: Recording) -> None:
    """A failed unit stays loaded until `reset-failed`; then nothing references it and it is
    unloaded: `show` prints the defaults of a unit that never ran.
    """
    unit = "rec-reset-failed.service"
    recording.install(unit, ONESHOT.format("/bin/sh -c 'exit 3'"))
    recording.reload()
    _start_and_settle(recording, unit, "start")
    recording.show("failed", unit)
    recording.run("reset-failed", f"systemctl reset-failed -- {unit}")
    recording.show("after", unit)


@scenario("discovery")
def discovery(recording: Recording) -> None:
    """What list-units --all and list-unit-files see of a unit that never ran and of patterns that
    match nothing.
    """
    unit = "rec-discover.service"
    recording.install(unit, ONESHOT.format("/bin/true"))
    recording.reload()
    options = "--type=service --no-legend --plain"
    recording.run("list-units", f"systemctl list-units --all {options} -- 'rec-discover*'")
    recording.run("list-unit-files", f"systemctl list-unit-files {options} -- 'rec-discover*'")
    recording.run("list-unit-files-none", f"systemctl list-unit-files {options} -- 'rec-none*'")


@scenario("journal-unreadable")
def journal_unreadable(recording: Recording) -> None:
    """A user outside the systemd-journal group reads the system journal (issue 11 case 4): what
    journalctl answers.
    """
    recording.run("journal-as-nobody", "runuser -u nobody -- journalctl --no-pager --quiet "
                  "--boot --output=json --lines=5 _PID=1")  # fmt: skip


def play(host: TestHost, name: str) -> dict[str, Any]:
    """Play scenario ``name`` on ``host`` and return its fixture."""
    description, function = SCENARIOS[name]
    recording = Recording(host, name, description)
    function(recording)
    version = host.ssh("systemctl --version").stdout.splitlines()[0]
    return recording.finish(version)


def write_fixture(fixture: dict[str, Any], directory: Path = FIXTURE_DIRECTORY) -> Path:
    """Save a fixture as DIRECTORY/<scenario>.json (stable formatting, for diffs)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{fixture['scenario']}.json"
    path.write_text(json.dumps(fixture, indent=1, sort_keys=False) + "\n")
    return path
