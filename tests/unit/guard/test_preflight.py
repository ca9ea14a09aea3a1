"""Pre-flight checks: the pure parsers and judges (tables), and `run_preflight` over a
simulated host at the transport seam."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from deploy_guard.config import (
    FreeSpaceCheck,
    PreflightCheck,
    SystemStateCheck,
    TcpCheck,
    UnitCheck,
    parse_config,
)
from deploy_guard.errors import CommandFailed, CommandTimeout, ConfigError
from deploy_guard.guard.preflight import (
    DiskUsage,
    format_size,
    judge_free_space,
    judge_system_state,
    judge_tcp,
    judge_unit,
    judge_units_exist,
    parse_df,
    preflight_json,
    run_preflight,
)
from deploy_guard.guard.stage import EngineSettings, StageContext
from deploy_guard.model import CheckResult, Outcome, UnitResult
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import ParseError, UnitState
from deploy_guard.transport.base import CommandResult
from deploy_guard.transport.timed import command_problem, timed_argv
from tests.unit.fakesystemd import FakeClock, FakeHost, SimUnit

GiB = 1024**3
Answer = tuple[int, str, str] | Exception | Callable[[tuple[str, ...]], tuple[int, str, str]]


def command_key(argv: Sequence[str]) -> str | None:
    """Which scripted answer a command gets (None: the simulated systemd answers)."""
    if argv[0] == "timeout":
        return f"timeout {argv[3]}"
    if argv[0] == "systemctl" and "is-system-running" in argv:
        return "is-system-running"
    if argv[0] == "systemctl" and "--state=failed" in argv:
        return "failed-units"
    if argv[0] == "cat":
        return "boot-id"
    if argv[0] == "journalctl" and any(word.startswith("_SYSTEMD_UNIT=") for word in argv):
        return "unit-journal"
    if argv[0] in ("systemctl", "journalctl"):
        return None
    return argv[0]


class ScriptedHost(FakeHost):
    """`FakeHost` plus the commands that pre-flight and verification add: answers queued per
    `command_key` (the last one repeats); failed units and the system state by default come
    from the simulated units."""

    def __init__(self, clock: FakeClock, units: Sequence[SimUnit] = (), **options: Any) -> None:
        super().__init__("web1", clock, units, **options)
        self.answers: dict[str, list[Answer]] = {}

    def answer(self, key: str, *answers: Answer) -> None:
        self.answers[key] = list(answers)

    def calls_of(self, key: str) -> list[tuple[str, ...]]:
        return [argv for _at, argv in self.calls if command_key(argv) == key]

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        key = command_key(argv)
        queued = self.answers.get(key or "")
        if key is None or (not queued and key == "boot-id"):
            return super().run(argv, timeout=timeout, check=check)
        self.calls.append((self.clock.monotonic(), tuple(argv)))
        self._advance(self.clock.monotonic())
        failed = sorted(name for name, unit in self.units.items() if unit.active == "failed")
        if queued:
            answer = queued.pop(0) if len(queued) > 1 else queued[0]
        elif key == "failed-units":
            answer = (0, "".join(f"{name} loaded failed failed {name}\n" for name in failed), "")
        elif key == "is-system-running":
            answer = (1, "degraded\n", "") if failed else (0, "running\n", "")
        elif key == "unit-journal":
            answer = self._unit_journal
        else:
            raise AssertionError(f"unexpected command: {argv}")
        if isinstance(answer, Exception):
            raise answer
        status, stdout, stderr = answer(tuple(argv)) if callable(answer) else answer
        if check and status != 0:
            raise CommandFailed(self.name, argv, status, stderr)
        return CommandResult(tuple(argv), status, stdout, stderr)

    def _unit_journal(self, argv: tuple[str, ...]) -> tuple[int, str, str]:
        """`journalctl -o cat [--cursor=C] _SYSTEMD_UNIT=U + UNIT=U`: the unit's output and
        PID 1's messages about it."""
        unit = next(w for w in argv if w.startswith("_SYSTEMD_UNIT=")).partition("=")[2]
        cursor = next((w for w in argv if w.startswith("--cursor=")), "")
        first = int(cursor.rpartition("i=")[2], 16) if cursor else 0
        lines = [
            fields["MESSAGE"]
            for index, (_at, fields) in enumerate(self._journal)
            if index >= first and unit in (fields.get("_SYSTEMD_UNIT"), fields.get("UNIT"))
        ]
        return 0, "".join(f"{line}\n" for line in lines), ""


def checks(*tables: dict[str, Any]) -> list[PreflightCheck]:
    return parse_config({"preflight": list(tables)}).preflight


def free_space(**fields: Any) -> FreeSpaceCheck:
    check = checks({"name": "root", "kind": "free_space", "path": "/srv/backup", **fields})[0]
    assert isinstance(check, FreeSpaceCheck)
    return check


def result(status: int, stdout: str = "", stderr: str = "", argv: Sequence[str] = ("x",)) -> (
    CommandResult
):  # fmt: skip
    return CommandResult(tuple(argv), status, stdout, stderr)


DF_HEADER = "Filesystem         1-blocks        Used   Available Capacity Mounted on\n"


# -- parsing df -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("overlay 270553174016 24397737984 84546555904 23% /",
         DiskUsage("overlay", 270553174016, 24397737984, 84546555904, "/")),
        ("/dev/mapper/vg-data  1000  400  600  40% /srv/my backups",
         DiskUsage("/dev/mapper/vg-data", 1000, 400, 600, "/srv/my backups")),
        ("none 0 0 0 - /proc/sys", DiskUsage("none", 0, 0, 0, "/proc/sys")),
    ],
)  # fmt: skip
def test_df_line_is_parsed_from_the_right(line: str, expected: DiskUsage) -> None:
    assert parse_df(DF_HEADER + line + "\n") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        DF_HEADER,
        DF_HEADER + "tank 1 2 3 4% /\n" + "tank2 1 2 3 4% /x\n",
        DF_HEADER + "tank one 2 3 4% /\n",
        "df: /nope: No such file or directory\n",
    ],
)
def test_unexpected_df_output_raises_instead_of_guessing(text: str) -> None:
    with pytest.raises(ParseError):
        parse_df(text)


@pytest.mark.parametrize(
    ("used", "available", "percent"), [(400, 600, 60.0), (0, 0, 0.0), (1, 0, 0.0)]
)
def test_free_share_ignores_reserved_blocks_like_df(
    used: int, available: int, percent: float
) -> None:
    assert DiskUsage("fs", 5000, used, available, "/").percent_free == percent


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (10 * GiB, "10.0 GiB"),
     (3 * 1024**5, "3072.0 TiB")],
)  # fmt: skip
def test_sizes_are_shown_in_binary_units(count: int, text: str) -> None:
    assert format_size(count) == text


# -- judging ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "available", "ok", "words"),
    [
        ({"min_free": "10GiB"}, 11 * GiB, True, ["/srv/backup", "11.0 GiB free"]),
        ({"min_free": "10GiB"}, 9 * GiB, False,
         ["/srv/backup", "9.0 GiB free", str(9 * GiB), "at least 10.0 GiB", str(10 * GiB)]),
        ({"min_free_percent": 50}, 40 * GiB, False, ["(40.0%)", "at least 50%"]),
        ({"min_free": "1GiB", "min_free_percent": 30}, 40 * GiB, True, ["40.0%"]),
        ({"min_free": "100GiB", "min_free_percent": 90}, 40 * GiB, False,
         ["at least 100.0 GiB", "and at least 90%"]),
    ],
)  # fmt: skip
def test_free_space_message_names_the_path_and_the_numbers(
    fields: dict[str, Any], available: int, ok: bool, words: list[str]
) -> None:
    usage = DiskUsage("tank/backup", 100 * GiB, 100 * GiB - available, available, "/srv")

    verdict = judge_free_space(free_space(**fields), usage)

    assert verdict.ok is ok
    for word in words:
        assert word in verdict.message


def state(unit: str, load_state: str) -> UnitState:
    return UnitState(unit, load_state, "inactive", "dead", "success", "", False, "", None,
                     None, None, None, None, None)  # fmt: skip


@pytest.mark.parametrize(
    ("load_states", "ok", "message"),
    [
        (["loaded", "loaded"], True, "all 2 units exist"),
        (["loaded", "not-found"], False, "missing on the host: b.mount"),
        (["masked", "loaded"], False, "cannot be loaded: a.service (masked)"),
    ],
)
def test_units_exist_names_each_missing_unit(
    load_states: list[str], ok: bool, message: str
) -> None:
    asked = ["a.service", "b.mount"]
    states = [state(unit, load) for unit, load in zip(asked, load_states, strict=True)]

    verdict = judge_units_exist("needed", states, asked)

    assert (verdict.ok, verdict.message) == (ok, message)


TCP = TcpCheck.model_validate({"name": "nas", "kind": "tcp", "host": "nas.lan", "port": 22})
TCP6 = TcpCheck.model_validate({"name": "nas", "kind": "tcp", "host": "fd00::7", "port": 2222})


@pytest.mark.parametrize(
    ("check", "answer", "ok", "message"),
    [
        (TCP, result(0), True, "connected to nas.lan:22 from the host"),
        (TCP, result(124), False, "no connection to nas.lan:22 within 5s"),
        (TCP6, result(1, stderr="bash: line 1: connect: Connection refused\n"
                                "bash: line 1: /dev/tcp/fd00::7/2222: Connection refused\n"),
         False, "cannot connect to [fd00::7]:2222: Connection refused"),
        (TCP, result(1, stderr="bash: line 1: nas.lan: Name or service not known\n"
                               "bash: line 1: /dev/tcp/nas.lan/22: Invalid argument\n"),
         False, "cannot connect to nas.lan:22: nas.lan: Name or service not known"),
        (TCP, result(1), False, "cannot connect to nas.lan:22: no error output"),
        (TCP, result(127, stderr="env: 'timeout': No such file or directory\n"), False,
         "cannot test nas.lan:22: `timeout` (coreutils) or `bash` is missing on the host: "
         "env: 'timeout': No such file or directory"),
    ],
)  # fmt: skip
def test_tcp_failure_names_the_address(
    check: TcpCheck, answer: CommandResult, ok: bool, message: str
) -> None:
    assert judge_tcp(check, answer) == CheckResult("nas", "tcp", ok, message)


STATE = SystemStateCheck.model_validate({"name": "state", "kind": "system_state"})
STRICT = SystemStateCheck.model_validate(
    {"name": "state", "kind": "system_state", "allow_degraded": False}
)


@pytest.mark.parametrize(
    ("check", "answer", "ok", "message"),
    [
        (STATE, "running", True, "system state running"),
        (STATE, "starting", True, "system state starting (still booting)"),
        (STATE, "degraded", True, "system state degraded (1 failed units: x.service)"),
        (STRICT, "degraded", False, "system state degraded (1 failed units: x.service)"),
        (STATE, "stopping", False,
         "system state stopping: the host is shutting down or in maintenance"),
        (STATE, "maintenance", False,
         "system state maintenance: the host is shutting down or in maintenance"),
        (STATE, "offline", False, "cannot tell the system state: is-system-running printed "
                                  "'offline'"),
        (STATE, "", False, "cannot tell the system state: is-system-running printed 'nothing'"),
    ],
)  # fmt: skip
def test_system_state_blocks_shutdown_and_maintenance_and_anything_unknown(
    check: SystemStateCheck, answer: str, ok: bool, message: str
) -> None:
    verdict = judge_system_state(check, answer, ["x.service"])

    assert (verdict.ok, verdict.message) == (ok, message)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (result(0), None),
        (result(124), "zpool did not finish within 60s (killed)"),
        (result(126, stderr="timeout: failed to run command 'zpool': Permission denied\n"),
         "cannot run zpool on the host: timeout: failed to run command 'zpool': Permission "
         "denied"),
        (result(127, stderr="timeout: failed to run command 'zpool': No such file or "
                            "directory\n"),
         "not found on the host: timeout: failed to run command 'zpool': No such file or "
         "directory"),
        (result(1, stdout="pool tank is DEGRADED\n"), "zpool exited with status 1: pool tank "
                                                      "is DEGRADED"),
        (result(3), "zpool exited with status 3: no output"),
    ],
)  # fmt: skip
def test_command_problem_tells_timeout_missing_and_failing_apart(
    answer: CommandResult, problem: str | None
) -> None:
    assert command_problem(answer, "zpool", 60.0) == problem


def test_commands_run_under_timeout_which_stops_parsing_options_at_the_duration() -> None:
    assert timed_argv(["-weird", "--x"], 2.5) == ["timeout", "--kill-after=5", "2.5", "-weird",
                                                  "--x"]  # fmt: skip


UNIT = UnitCheck.model_validate({"name": "nas", "kind": "unit", "unit": "reach.service"})


@pytest.mark.parametrize(
    ("unit_result", "ok", "message"),
    [
        (UnitResult("reach.service", Outcome.SUCCEEDED, invocation_id="ab12"), True,
         "reach.service succeeded, invocation ab12"),
        (UnitResult("reach.service", Outcome.SUCCEEDED, joined=True, invocation_id="ab12"),
         True, "reach.service succeeded (joined the run already in progress), invocation ab12"),
        (UnitResult("reach.service", Outcome.FAILED, result="exit-code",
                    log_tail=("a", "b", "c", "ssh: connect to host nas: No route to host")),
         False, "reach.service failed: exit-code; last log lines: b | c | ssh: connect to host "
                "nas: No route to host"),
        (UnitResult("reach.service", Outcome.FAILED, result="exit-code",
                    log_tail=("Starting Check nas...", "ssh: No route to host",
                              "reach.service: Main process exited, code=exited, status=1",
                              "reach.service: Failed with result 'exit-code'.",
                              "Failed to start Check nas.")),
         False, "reach.service failed: exit-code; last log lines: ssh: No route to host"),
        (UnitResult("reach.service", Outcome.SKIPPED, reason="condition unmet",
                    log_tail=("condition unmet",)),
         False, "reach.service skipped: condition unmet"),
        (UnitResult("reach.service", Outcome.FRESH), False, "reach.service fresh: no reason "
                                                            "recorded"),
    ],
)  # fmt: skip
def test_a_unit_check_passes_only_on_a_proven_run_now(
    unit_result: UnitResult, ok: bool, message: str
) -> None:
    assert judge_unit(UNIT, unit_result) == CheckResult("nas", "unit", ok, message)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"kind": "free_space", "path": "/"}, "set min_free, min_free_percent or both"),
        ({"kind": "free_space", "path": "srv", "min_free": "1G"}, "is not an absolute path"),
        ({"kind": "free_space", "path": "/", "min_free": "ten"}, "is not a size"),
        ({"kind": "free_space", "path": "/", "min_free_percent": 100}, "less than 100"),
        ({"kind": "tcp", "host": "nas;reboot", "port": 22}, "not a host name or IP address"),
        ({"kind": "tcp", "host": "-oProxy", "port": 22}, "not a host name or IP address"),
        ({"kind": "tcp", "host": "nas", "port": 70000}, "less than or equal to 65535"),
        ({"kind": "units_exist", "units": ["nginx"]}, "not unit names"),
        ({"kind": "units_exist", "units": []}, "at least 1 item"),
        ({"kind": "unit", "unit": "x.timer"}, "is not a service unit name"),
        ({"kind": "command", "argv": []}, "an argv list with the program first"),
        ({"kind": "command", "argv": "zpool status"}, "valid list"),
        ({"kind": "ping"}, "does not match any of the expected tags"),
    ],
)
def test_invalid_preflight_checks_are_rejected_with_their_key_path(
    table: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"preflight": [{"name": "c", **table}]})

    assert "preflight[c]" in str(caught.value)  # the check's name, not its index
    assert ".free_space" not in str(caught.value)  # nor the union's tag
    assert problem in str(caught.value)


def test_preflight_check_names_must_be_unique() -> None:
    table = {"kind": "command", "argv": ["true"]}
    with pytest.raises(ConfigError, match="repeated: same"):
        parse_config({"preflight": [{"name": "same", **table}, {"name": "same", **table}]})


@pytest.mark.parametrize(
    ("text", "count"),
    [("10GiB", 10 * GiB), ("10G", 10 * GiB), ("10 gib", 10 * GiB), ("10GB", 10 * 1000**3),
     ("1.5T", int(1.5 * 1024**4)), ("4096", 4096), (4096, 4096), ("512B", 512)],
)  # fmt: skip
def test_sizes_follow_df_conventions(text: str | int, count: int) -> None:
    assert free_space(min_free=text).min_free == count


# -- run_preflight over a simulated host ------------------------------------------------------


def run(host: ScriptedHost, clock: FakeClock, tables: list[dict[str, Any]], **kw: Any) -> Any:
    client = SystemdClient(host)
    context = StageContext(client, clock, EngineSettings(poll_interval=1.0), lambda e: None)
    return run_preflight(client, checks(*tables), context=context, **kw)


def test_failed_units_and_boot_id_are_recorded_even_without_checks(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("broken.service", exit_status=1, duration=1)])
    host.trigger("broken.service")
    clock.sleep(2)

    report = run(host, clock, [])

    assert report.ok
    assert report.checks == ()
    assert report.failed_units == ("broken.service",)
    assert report.boot_id == "0a1b2c3d000040008000000000000001"


def test_failed_units_are_recorded_after_the_checks(clock: FakeClock) -> None:
    # A check unit that fails now was not broken by the deploy that follows.
    host = ScriptedHost(clock, [SimUnit("reach.service", exit_status=1, duration=1)])

    report = run(host, clock, [{"name": "nas", "kind": "unit", "unit": "reach.service"}])

    assert not report.ok
    assert report.failed_units == ("reach.service",)
    assert "Failed with result 'exit-code'" in report.checks[0].message


def test_unit_check_runs_the_unit_with_the_engine_proof(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("reach.service", duration=3)])

    report = run(host, clock, [{"name": "nas", "kind": "unit", "unit": "reach.service"}])

    assert report.checks[0].ok, report.checks
    assert [args for _at, args in host.commands("start")] == [("reach.service",)]
    assert "reach.service: Deactivated successfully." in host.messages("reach.service")


def test_unit_check_in_plan_mode_starts_nothing(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("reach.service")])
    tables = [{"name": "nas", "kind": "unit", "unit": "reach.service"},
              {"name": "gone", "kind": "unit", "unit": "gone.service"}]  # fmt: skip

    report = run(host, clock, tables, start_units=False)

    assert host.commands("start") == []
    assert report.checks[0] == CheckResult(
        "nas", "unit", True, "all 1 units exist; not started (plan starts nothing)"
    )
    assert not report.checks[1].ok
    assert "missing on the host: gone.service" in report.checks[1].message


def test_required_units_are_checked_without_a_configured_check(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("sanoid.service")])

    report = run(host, clock, [], required_units=["sanoid.service", "restic-backups-x.service"])

    assert report.checks == (
        CheckResult("required-units", "units_exist", False,
                    "missing on the host: restic-backups-x.service"),
    )  # fmt: skip


def test_every_check_runs_even_after_one_failed_and_the_order_is_kept(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("df", (0, DF_HEADER + "tank 100 99 1 99% /\n", ""))
    host.answer("timeout bash", (0, "", ""))
    host.answer("timeout zpool", (0, "", ""))
    tables: list[dict[str, Any]] = [
        {"name": "root", "kind": "free_space", "path": "/", "min_free": "1GiB"},
        {"name": "nas", "kind": "tcp", "host": "nas.lan", "port": 22, "timeout": "3s"},
        {"name": "state", "kind": "system_state"},
        {"name": "pool", "kind": "command", "argv": ["zpool", "status", "-x"]},
    ]

    report = run(host, clock, tables)

    assert [(c.name, c.ok) for c in report.checks] == [
        ("root", False), ("nas", True), ("state", True), ("pool", True)
    ]  # fmt: skip
    assert host.calls_of("df") == [("df", "-P", "-B1", "--", "/")]
    assert host.calls_of("timeout bash") == [
        ("timeout", "--kill-after=5", "3", "bash", "-c", 'exec 3<>"/dev/tcp/$1/$2"', "bash",
         "nas.lan", "22"),
    ]  # fmt: skip
    assert host.calls_of("timeout zpool") == [
        ("timeout", "--kill-after=5", "60", "zpool", "status", "-x")
    ]
    assert preflight_json(report)[0] == {
        "name": "root", "kind": "free_space", "outcome": "failed",
        "message": report.checks[0].message,
    }  # fmt: skip
    assert report.summary().startswith("pre-flight check failed: root (free_space): / (on /)")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (CommandTimeout("web1", "df: no answer within 30s"),
         "could not be evaluated: df: no answer within 30s"),
        ((127, "", "env: 'df': No such file or directory\n"),
         "df / failed: env: 'df': No such file or directory"),
        ((0, "garbage\n", ""), "cannot read df /: expected a header and one filesystem line, "
                               "got 1 lines"),
    ],
)  # fmt: skip
def test_a_check_that_cannot_be_evaluated_fails(
    clock: FakeClock, answer: Answer, message: str
) -> None:
    host = ScriptedHost(clock)
    host.answer("df", answer)

    report = run(host, clock, [{"name": "root", "kind": "free_space", "path": "/",
                                "min_free": "1"}])  # fmt: skip

    assert report.checks == (CheckResult("root", "free_space", False, message),)


def test_an_unreadable_failed_unit_list_fails_the_preflight(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("failed-units", (1, "", "Failed to connect to bus: Permission denied\n"))

    report = run(host, clock, [])

    assert not report.ok
    assert report.checks[0].name == "failed-units"
    assert "Permission denied" in report.checks[0].message


def test_degraded_state_check_lists_the_failed_units(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("broken.service", exit_status=1, duration=1)])
    host.trigger("broken.service")
    clock.sleep(2)

    report = run(host, clock, [{"name": "state", "kind": "system_state",
                                "allow_degraded": False}])  # fmt: skip

    assert report.checks[0].message == "system state degraded (1 failed units: broken.service)"
    assert not report.ok
