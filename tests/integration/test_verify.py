"""Post-deploy verification against the testbed host "forge": a "deploy" that breaks a unit,
a health check that needs three tries, and a rollback through a stand-in script (the testbed
is Debian, not NixOS)."""

from __future__ import annotations

from typing import Any

from deploy_guard.clock import SystemClock
from deploy_guard.config import HealthCheck, parse_config
from deploy_guard.deploy.verify import (
    VerifyRequest,
    VerifySettings,
    verification_json,
    verify_deployed_host,
    verify_host,
)
from deploy_guard.errors import ExitCode
from deploy_guard.guard.preflight import run_preflight
from deploy_guard.model import PreflightReport
from deploy_guard.systemd.client import SystemdClient
from tests.testbed.host import TestHost

SETTINGS = VerifySettings(settle_timeout=30, poll_interval=0.3, log_lines=10)
BROKEN_UNIT = "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"app: bad config\"; exit 3'\n"
# Passes on the third call: a counter on the host.
APP_READY = """#!/bin/sh
count=$(( $(cat /run/app-ready.count 2>/dev/null || echo 0) + 1 ))
echo "$count" > /run/app-ready.count
[ "$count" -ge 3 ] || { echo "app: not ready (try $count)" >&2; exit 1; }
"""
# The rollback stand-in: records each call, and repairs what the "deploy" broke.
ROLLBACK = """#!/bin/sh
echo "rollback $*" >> /var/lib/rollback.log
systemctl reset-failed app.service
echo "switched back to generation 41"
"""


def health(*tables: dict[str, Any]) -> tuple[HealthCheck, ...]:
    return tuple(parse_config({"health": list(tables)}).health)


def deploy_that_breaks_app(host: TestHost) -> None:
    """What a bad deploy does: a unit that now fails on start."""
    host.install_unit("app.service", BROKEN_UNIT)
    host.daemon_reload()
    host.ssh("systemctl start app.service", check=False)


def fail_before_preflight(host: TestHost) -> None:
    host.install_unit("old.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
    host.daemon_reload()
    host.ssh("systemctl start old.service", check=False)


def test_a_unit_the_deploy_broke_is_a_new_failure_with_its_log_lines(
    client: SystemdClient, host: TestHost
) -> None:
    fail_before_preflight(host)
    before = run_preflight(client, [])
    assert "old.service" in before.failed_units

    deploy_that_breaks_app(host)
    report = verify_host(client, before=before, old_boot_id=before.boot_id, health=(),
                         settings=SETTINGS, clock=SystemClock())  # fmt: skip

    assert not report.ok
    assert report.system_state == "degraded"
    assert report.settled
    assert report.rebooted is False
    assert [unit.unit for unit in report.new_failed_units] == ["app.service"]
    failed = report.new_failed_units[0]
    assert failed.result == "exit-code"
    assert "app: bad config" in failed.log_tail
    assert any("Failed with result 'exit-code'" in line for line in failed.log_tail)


def test_command_health_check_that_passes_on_the_third_try_passes(
    client: SystemdClient, host: TestHost
) -> None:
    host.write_file("/usr/local/bin/app-ready", APP_READY, mode=0o755)
    before = run_preflight(client, [])
    checks = health(
        {"name": "app", "kind": "command", "argv": ["/usr/local/bin/app-ready"],
         "interval": "0.2s", "attempts": 5},
        {"name": "web", "kind": "http", "url": "http://127.0.0.1/", "from": "host",
         "attempts": 1},
    )  # fmt: skip

    report = verify_host(client, before=before, old_boot_id=before.boot_id, health=checks,
                         settings=SETTINGS, clock=SystemClock())  # fmt: skip

    app, web = report.checks
    assert (app.ok, app.attempts, app.message) == (True, 3, "/usr/local/bin/app-ready exited 0")
    assert host.ssh("cat /run/app-ready.count").stdout.strip() == "3"
    # Debian's minimal testbed has no curl: fail closed, and say what to do.
    assert not web.ok
    assert web.message.startswith("curl is not installed on the host: install it or use from = ")


def test_rollback_runs_the_configured_command_once_and_is_verified_again(
    client: SystemdClient, host: TestHost
) -> None:
    host.write_file("/usr/local/sbin/rollback-standin", ROLLBACK, mode=0o755)
    before: PreflightReport = run_preflight(client, [])
    deploy_that_breaks_app(host)
    settings = VerifySettings(settle_timeout=30, poll_interval=0.3, rollback=True,
                              rollback_commands=(("/usr/local/sbin/rollback-standin",
                                                  "--to", "previous"),))  # fmt: skip

    outcome = verify_deployed_host(client, VerifyRequest(before, (), settings, SystemClock()))

    assert outcome.exit_code is ExitCode.UNHEALTHY
    assert [unit.unit for unit in outcome.verify.new_failed_units] == ["app.service"]
    assert outcome.rollback is not None
    assert outcome.rollback.ok
    assert outcome.rollback.steps[0].output == ("switched back to generation 41",)
    assert host.ssh("cat /var/lib/rollback.log").stdout == "rollback --to previous\n"
    assert outcome.after_rollback is not None
    assert outcome.after_rollback.ok, outcome.after_rollback
    document = verification_json(outcome)
    assert document["exit_code"] == 5
    assert document["rollback"] == {"ok": True, "steps": [{
        "command": ["/usr/local/sbin/rollback-standin", "--to", "previous"], "exit_code": 0,
        "output": ["switched back to generation 41"], "error": None}]}  # fmt: skip
