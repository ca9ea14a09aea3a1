"""Post-deploy verification: the pure decisions (tables), retries on a fake clock, and
`verify_host` / `rollback` over a simulated host at the transport seam."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from deploy_guard.config import HealthCheck, parse_config
from deploy_guard.deploy.health import fetch_url, judge_curl, retry_check
from deploy_guard.deploy.verify import (
    VerifyRequest,
    VerifySettings,
    attempted_hosts,
    boot_problem,
    compare_failed,
    connect_and_verify,
    rollback,
    state_problem,
    verification_json,
    verify_deployed_host,
    verify_host,
)
from deploy_guard.errors import (
    ConnectionLost,
    ExitCode,
    HostKeyChanged,
    HostUnreachable,
    TransportError,
)
from deploy_guard.model import (
    DeployOutcome,
    DeployStep,
    HealthResult,
    PreflightReport,
    RollbackStep,
)
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.base import Transport
from tests.unit.fakesystemd import FakeClock, SimUnit
from tests.unit.guard.test_preflight import ScriptedHost

OLD_BOOT = "0a1b2c3d000040008000000000000001"
NEW_BOOT = "ffff0000000040008000000000000002"


def health(*tables: dict[str, Any]) -> list[HealthCheck]:
    return parse_config({"health": list(tables)}).health


def command_health(**fields: Any) -> HealthCheck:
    return health({"name": "app", "kind": "command", "argv": ["app-ready"], **fields})[0]


def before(*failed: str, boot_id: str | None = OLD_BOOT) -> PreflightReport:
    return PreflightReport((), tuple(failed), boot_id)


# -- pure decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect_reboot", "old", "new", "problem"),
    [
        (False, OLD_BOOT, OLD_BOOT, None),
        (False, None, OLD_BOOT, None),
        (True, OLD_BOOT, NEW_BOOT, None),
        (True, OLD_BOOT, OLD_BOOT, f"the host did not reboot (boot id still {OLD_BOOT})"),
        (True, None, NEW_BOOT, "cannot tell whether the host rebooted: no boot id was recorded "
                               "before the deploy"),
    ],
)  # fmt: skip
def test_checks_never_pass_against_the_old_boot(
    expect_reboot: bool, old: str | None, new: str, problem: str | None
) -> None:
    assert boot_problem(expect_reboot, old, new) == problem


@pytest.mark.parametrize(
    ("state", "settled", "problem"),
    [
        ("running", True, None),
        ("degraded", True, None),  # judged by comparing failed units
        ("starting", False, "the host did not settle within 300s: still starting"),
        ("maintenance", True, "system state after the deploy: maintenance"),
        ("stopping", True, "system state after the deploy: stopping"),
        ("", True, "system state after the deploy: nothing"),
        (None, False, "cannot read the system state"),
    ],
)
def test_system_state_problems(state: str | None, settled: bool, problem: str | None) -> None:
    assert state_problem(state, settled, 300.0) == problem


@pytest.mark.parametrize(
    ("earlier", "now", "new", "recovered"),
    [
        ((), (), (), ()),
        (("a.service",), ("a.service",), (), ()),
        (("a.service",), ("a.service", "b.mount"), ("b.mount",), ()),
        (("a.service", "c.service"), ("b.service",), ("b.service",), ("a.service", "c.service")),
        (None, ("a.service",), ("a.service",), ()),  # no record: every failure counts
    ],
)
def test_new_failures_are_those_not_failed_before(
    earlier: tuple[str, ...] | None,
    now: tuple[str, ...],
    new: tuple[str, ...],
    recovered: tuple[str, ...],
) -> None:
    assert compare_failed(earlier, now) == (new, recovered)


@pytest.mark.parametrize(
    ("status", "stdout", "stderr", "ok", "message"),
    [
        (0, "200", "", True, "HTTP 200 from http://app/ (from the host)"),
        (22, "503", "curl: (22) The requested URL returned error: 503", False,
         "http://app/: HTTP 503 (from the host)"),
        (28, "000", "curl: (28) Operation timed out", False,
         "no answer from http://app/ within 10s (from the host)"),
        (7, "000", "curl: (7) Failed to connect to app port 80: Connection refused", False,
         "http://app/: curl exited 7: curl: (7) Failed to connect to app port 80: Connection "
         "refused"),
        (127, "", "env: 'curl': No such file or directory", False,
         "curl is not installed on the host: install it or use from = \"workstation\" (env: "
         "'curl': No such file or directory)"),
    ],
)  # fmt: skip
def test_curl_answers(status: int, stdout: str, stderr: str, ok: bool, message: str) -> None:
    assert judge_curl(status, stdout, stderr, "http://app/", 10.0) == (ok, message)


def test_health_check_that_passes_on_the_third_try_passes(clock: FakeClock) -> None:
    answers = iter([(False, "not yet"), (False, "not yet"), (True, "ready")])

    verdict = retry_check(command_health(interval="5s"), lambda: next(answers), clock)

    assert verdict == HealthResult("app", "command", True, 3, "ready")
    assert clock.monotonic() == 10.0  # two pauses, no third


def test_health_check_gives_up_after_its_attempts(clock: FakeClock) -> None:
    verdict = retry_check(command_health(attempts=3, interval="1s"),
                          lambda: (False, "down"), clock)  # fmt: skip

    assert verdict == HealthResult("app", "command", False, 3, "down (failed 3 tries in 2s)")


def test_health_check_starts_no_try_after_its_deadline(clock: FakeClock) -> None:
    def slow() -> tuple[bool, str]:
        clock.sleep(4)  # each try takes 4 s
        return False, "down"

    check = command_health(attempts=100, interval="2s", deadline="20s")

    verdict = retry_check(check, slow, clock)

    # tries end at 4, 10, 16, 22 s: after the 4th, a 5th would start past 20 s.
    assert (verdict.ok, verdict.attempts) == (False, 4)
    assert clock.monotonic() == 22.0


# -- fetch_url: the workstation's side of an http check, against a real local server --------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/") or 200))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_url_passes_below_400_and_names_the_status(web: str) -> None:
    assert fetch_url(f"{web}/204", 5) == (True, f"HTTP 204 from {web}/204")
    assert fetch_url(f"{web}/503", 5) == (False, f"{web}/503: HTTP 503 Service Unavailable")


def test_fetch_url_names_an_unreachable_url() -> None:
    ok, message = fetch_url("http://127.0.0.1:9/", 5)

    assert not ok
    assert message.startswith("cannot reach http://127.0.0.1:9/: ")


# -- verify_host over a simulated host --------------------------------------------------------


SETTINGS = VerifySettings(settle_timeout=60, reboot_timeout=120, poll_interval=2, log_lines=5)


def verify(host: ScriptedHost, clock: FakeClock, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"before": before(), "old_boot_id": OLD_BOOT, "health": [],
                                 "settings": SETTINGS, "clock": clock} | overrides  # fmt: skip
    return verify_host(SystemdClient(host), **arguments)


def test_a_unit_the_deploy_broke_is_a_new_failure_with_its_log_lines(clock: FakeClock) -> None:
    units = [SimUnit("nginx.service", exit_status=1, duration=1),
             SimUnit("old.service", exit_status=1, duration=1)]  # fmt: skip
    host = ScriptedHost(clock, units)
    host.trigger("old.service")
    host.trigger("nginx.service")
    clock.sleep(2)

    report = verify(host, clock, before=before("old.service"))

    assert not report.ok
    assert report.system_state == "degraded"
    assert [unit.unit for unit in report.new_failed_units] == ["nginx.service"]
    failed = report.new_failed_units[0]
    assert failed.result == "exit-code"
    assert "nginx.service: backup ended with status 1" in failed.log_tail
    assert "nginx.service: Failed with result 'exit-code'." in failed.log_tail


def test_failures_that_were_there_before_are_no_reason_to_fail(clock: FakeClock) -> None:
    host = ScriptedHost(clock, [SimUnit("old.service", exit_status=1, duration=1)])
    host.trigger("old.service")
    clock.sleep(2)

    report = verify(host, clock, before=before("old.service", "fixed.service"))

    assert report.ok, report
    assert report.recovered_units == ("fixed.service",)


def test_verification_waits_for_the_state_to_settle(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("is-system-running", (1, "starting\n", ""), (1, "starting\n", ""),
                (0, "running\n", ""))  # fmt: skip

    report = verify(host, clock)

    assert (report.ok, report.settled, report.system_state) == (True, True, "running")
    assert clock.monotonic() == 4.0


def test_a_host_that_never_settles_fails_after_the_settle_timeout(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("is-system-running", (1, "starting\n", ""))

    report = verify(host, clock)

    assert not report.ok
    assert report.problems == ("the host did not settle within 60s: still starting",)
    assert clock.monotonic() == 60.0


def test_with_a_reboot_expected_checks_wait_for_the_new_boot(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer(
        "boot-id",
        (0, f"{OLD_BOOT}\n", ""),
        ConnectionLost("web1", "reset"),
        HostUnreachable("web1", "connection refused"),
        (0, f"{NEW_BOOT}\n", ""),
    )
    host.answer("timeout app-ready", (0, "", ""))
    settings = VerifySettings(expect_reboot=True, reboot_timeout=120, poll_interval=2)

    report = verify(host, clock, settings=settings, health=[command_health()])

    assert report.ok, report
    assert (report.boot_id, report.rebooted) == (NEW_BOOT, True)
    programs = [argv[0] for _at, argv in host.calls]
    assert programs.count("cat") == 4
    assert programs.index("timeout") > len(programs) - programs[::-1].index("cat") - 1
    assert clock.monotonic() == 6.0  # three pauses between four reads of the boot id


def test_a_host_that_does_not_reboot_as_expected_fails(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("boot-id", (0, f"{OLD_BOOT}\n", ""))
    settings = VerifySettings(expect_reboot=True, reboot_timeout=30, poll_interval=5)

    report = verify(host, clock, settings=settings)

    assert report.problems == (f"the host did not reboot (boot id still {OLD_BOOT})",)
    assert clock.monotonic() == 30.0


def test_an_unreachable_host_fails_without_running_its_checks(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("boot-id", HostUnreachable("web1", "connection refused on 10.0.0.1:22"))

    report = verify(host, clock, health=[command_health()])

    assert report.problems == (
        "the host is unreachable 60s after the deploy: connection refused on 10.0.0.1:22",
    )
    assert report.checks == (HealthResult("app", "command", False, 0, "not run: host unreachable"),)
    assert host.calls_of("timeout app-ready") == []


def test_command_health_check_passes_on_the_third_try(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    missing = (1, "", "app: not listening yet\n")
    host.answer("timeout app-ready", missing, missing, (0, "", ""))

    report = verify(host, clock, health=[command_health(interval="1s", timeout="7s")])

    assert report.checks == (HealthResult("app", "command", True, 3, "app-ready exited 0"),)
    assert host.calls_of("timeout app-ready")[0] == ("timeout", "--kill-after=5", "7",
                                                     "app-ready")  # fmt: skip


def test_http_check_from_a_host_without_curl_fails_clearly(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("curl", (127, "", "env: 'curl': No such file or directory\n"))
    check = health({"name": "web", "kind": "http", "url": "http://localhost/", "from": "host",
                    "attempts": 2, "interval": "1s"})  # fmt: skip

    report = verify(host, clock, health=check)

    assert not report.ok
    assert report.checks[0].message.startswith("curl is not installed on the host")
    assert host.calls_of("curl")[0] == (
        "curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
        "http://localhost/",
    )  # fmt: skip


def test_http_check_from_the_workstation_does_not_touch_the_host(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    asked: list[tuple[str, float]] = []

    def http_get(url: str, timeout: float) -> tuple[bool, str]:
        asked.append((url, timeout))
        return True, "HTTP 200"

    check = health({"name": "web", "kind": "http", "url": "https://app.example/health"})

    report = verify(host, clock, health=check, http_get=http_get)

    assert report.ok
    assert asked == [("https://app.example/health", 10.0)]
    assert host.calls_of("curl") == []


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_runs_each_command_once_in_order(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("nix-env", (0, "switching from generation 42 to 41\n", ""))
    host.answer("/nix/var/nix/profiles/system/bin/switch-to-configuration",
                (0, "", "activating the configuration...\n"))  # fmt: skip

    result = rollback(SystemdClient(host), SETTINGS.rollback_commands)

    assert result.ok
    assert [step.argv for step in result.steps] == [
        ("nix-env", "-p", "/nix/var/nix/profiles/system", "--rollback"),
        ("/nix/var/nix/profiles/system/bin/switch-to-configuration", "switch"),
    ]
    assert result.steps[0].output == ("switching from generation 42 to 41",)


def test_rollback_stops_at_the_first_failing_command(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("nix-env", (1, "", "error: no generation older than the current (1) exists\n"))

    result = rollback(SystemdClient(host), SETTINGS.rollback_commands)

    assert not result.ok
    assert result.steps == (
        RollbackStep(("nix-env", "-p", "/nix/var/nix/profiles/system", "--rollback"), 1,
                     ("error: no generation older than the current (1) exists",)),
    )  # fmt: skip


def test_a_rollback_cut_off_by_the_connection_has_an_unknown_outcome(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("restore", ConnectionLost("web1", "connection reset by peer"))

    result = rollback(SystemdClient(host), [["restore"]])

    assert result.steps == (
        RollbackStep(("restore",), None, error="outcome unknown: connection reset by peer"),
    )
    assert not result.ok


def test_unhealthy_host_is_rolled_back_once_and_verified_again(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("timeout app-ready", (1, "", "down\n"), (1, "", "down\n"), (0, "", ""))
    host.answer("restore", (0, "restored\n", ""))
    settings = VerifySettings(rollback=True, rollback_commands=(("restore",),))
    check = command_health(attempts=2, interval="1s")
    request = VerifyRequest(before(), (check,), settings, clock)

    outcome = verify_deployed_host(SystemdClient(host), request)

    assert outcome.exit_code is ExitCode.UNHEALTHY
    assert not outcome.verify.ok
    assert outcome.rollback is not None
    assert outcome.rollback.ok
    assert outcome.after_rollback is not None
    assert outcome.after_rollback.ok
    assert host.calls_of("restore") == [("restore",)]
    document = verification_json(outcome)
    assert document["exit_code"] == 5
    assert document["rollback"] == {
        "ok": True,
        "steps": [{"command": ["restore"], "exit_code": 0, "output": ["restored"], "error": None}],
    }


def test_healthy_host_or_rollback_off_means_no_rollback(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    host.answer("timeout app-ready", (1, "", "down\n"))
    request = VerifyRequest(before(), (command_health(attempts=1),), VerifySettings(), clock)

    outcome = verify_deployed_host(SystemdClient(host), request)

    assert outcome.exit_code is ExitCode.UNHEALTHY
    assert (outcome.rollback, outcome.after_rollback) == (None, None)
    assert host.calls_of("nix-env") == []


def test_settings_from_config_and_the_command_line() -> None:
    config = parse_config({"verify": {"settle_timeout": "2m", "rollback_commands": [["r"]]}})

    settings = VerifySettings.from_config(config.verify, log_lines=7, rollback=True)

    assert (settings.settle_timeout, settings.rollback, settings.log_lines) == (120.0, True, 7)
    assert settings.rollback_commands == (("r",),)
    assert VerifySettings.from_config(parse_config({}).verify).rollback_commands == (
        ("nix-env", "-p", "/nix/var/nix/profiles/system", "--rollback"),
        ("/nix/var/nix/profiles/system/bin/switch-to-configuration", "switch"),
    )


# -- which hosts, and connecting after the deploy ---------------------------------------------


@pytest.mark.parametrize(
    ("steps", "attempted"),
    [
        ((DeployStep(("nixos-rebuild",), ("a",), 0), DeployStep(("nixos-rebuild",), ("b",), 1),
          DeployStep(("nixos-rebuild",), ("c",), None)), ("a", "b")),
        ((DeployStep(("colmena",), ("a", "b", "c"), 1),), ("a", "b", "c")),
        ((DeployStep(("colmena",), ("a", "b", "c"), None),), ()),
    ],
)  # fmt: skip
def test_only_hosts_whose_deploy_ran_are_verified_or_rolled_back(
    steps: tuple[DeployStep, ...], attempted: tuple[str, ...]
) -> None:
    outcome = DeployOutcome("nixos-rebuild", steps, ("a", "b", "c"), ("d",))

    assert attempted_hosts(outcome) == attempted


def test_connecting_is_retried_while_the_host_reboots_then_closed(clock: FakeClock) -> None:
    host = ScriptedHost(clock)
    answers: list[Exception | ScriptedHost] = [
        HostUnreachable("web1", "connection refused"), ConnectionLost("web1", "reset"), host,
    ]  # fmt: skip

    def connect() -> Transport:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    request = VerifyRequest(before(), (), VerifySettings(poll_interval=3), clock)

    outcome = connect_and_verify("web1", connect, request)

    assert outcome.verify.ok, outcome
    assert clock.monotonic() == 6.0
    assert host.closed


@pytest.mark.parametrize(
    ("error", "elapsed"),
    [
        (HostUnreachable("web1", "no answer from 10.0.0.1:22"), 300.0),  # settle_timeout
        (HostKeyChanged("web1", "the host key has CHANGED"), 0.0),  # waiting will not help
    ],
)
def test_a_host_that_cannot_be_reached_after_the_deploy_is_unhealthy(
    clock: FakeClock, error: TransportError, elapsed: float
) -> None:
    def connect() -> Transport:
        raise error

    request = VerifyRequest(before(), (command_health(),), VerifySettings(poll_interval=10), clock)

    outcome = connect_and_verify("web1", connect, request)

    assert outcome.exit_code is ExitCode.UNHEALTHY
    assert outcome.verify.problems == (f"cannot connect after the deploy: {error.reason}",)
    assert outcome.verify.checks[0].message == "not run: host unreachable"
    assert clock.monotonic() == elapsed


def test_output_filed_without_an_invocation_id_still_reaches_the_log_tail(
    clock: FakeClock,
) -> None:
    # journald tags a line with the invocation id through the sender's cgroup; a process that
    # exited within milliseconds can be gone by then (seen on the testbed with systemd 252).
    host = ScriptedHost(clock, [SimUnit("app.service", exit_status=1, duration=1)])
    host.trigger("app.service")
    clock.sleep(2)
    host._journal.insert(2, (0.5, {"_PID": "4242", "_SYSTEMD_UNIT": "app.service",
                                   "MESSAGE": "app: bad config"}))  # fmt: skip

    # Room for every line of the run: since the simulated systemd was grounded in recordings
    # it also writes "Main process exited, ...", which pushed the line out of a 5-line tail.
    report = verify(host, clock, settings=replace(SETTINGS, log_lines=10))

    assert "app: bad config" in report.new_failed_units[0].log_tail
    assert host.calls_of("unit-journal")[0][-3:] == (
        "_SYSTEMD_UNIT=app.service",
        "+",
        "UNIT=app.service",
    )
