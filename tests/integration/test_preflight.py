"""Pre-flight checks against the testbed host "forge": real systemd 252, real sshd, real
paramiko, run in-process through the same SshTransport + SystemdClient as the engine."""

from __future__ import annotations

import socket
from typing import Any

from deploy_guard.clock import SystemClock
from deploy_guard.config import PreflightCheck, parse_config
from deploy_guard.guard.preflight import run_preflight
from deploy_guard.guard.stage import EngineSettings, StageContext
from deploy_guard.model import CheckResult, PreflightReport
from deploy_guard.systemd.client import SystemdClient
from tests.testbed.host import TestHost

REACHABILITY = "syncoid-nas-target-reachability.service"  # sample unit: echo "nas: reachable"


def preflight(client: SystemdClient, *tables: dict[str, Any], **options: Any) -> PreflightReport:
    checks: list[PreflightCheck] = parse_config({"preflight": list(tables)}).preflight
    context = StageContext(client, SystemClock(), EngineSettings(0.3), lambda event: None)
    return run_preflight(client, checks, context=context, **options)


def by_name(report: PreflightReport) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


def closed_port() -> int:
    """A loopback port nothing listens on (the container shares this machine's loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_free_space_with_an_impossible_minimum_fails_naming_path_and_numbers(
    client: SystemdClient,
) -> None:
    report = preflight(
        client,
        {"name": "huge", "kind": "free_space", "path": "/var/lib", "min_free": "1000000TiB"},
        {"name": "room", "kind": "free_space", "path": "/var/lib", "min_free": "1MiB",
         "min_free_percent": 0.001},
    )  # fmt: skip

    checks = by_name(report)
    assert not report.ok
    assert not checks["huge"].ok
    message = checks["huge"].message
    assert message.startswith("/var/lib (on /): only ")
    assert f"at least 1000000.0 TiB ({1_000_000 * 1024**4} bytes)" in message
    assert checks["room"].ok, checks["room"]
    assert checks["room"].message.startswith("/var/lib (on /): ")


def test_free_space_of_a_missing_path_fails_closed(client: SystemdClient) -> None:
    report = preflight(client, {"name": "gone", "kind": "free_space", "path": "/no/such/dir",
                                "min_free": "1"})  # fmt: skip

    assert report.checks == (
        CheckResult("gone", "free_space", False,
                    "df /no/such/dir failed: df: /no/such/dir: No such file or directory"),
    )  # fmt: skip


def test_tcp_from_the_host_names_a_closed_address_and_reaches_sshd(
    client: SystemdClient, host: TestHost
) -> None:
    port = closed_port()

    report = preflight(
        client,
        {"name": "closed", "kind": "tcp", "host": "127.0.0.1", "port": port, "timeout": "5s"},
        {"name": "sshd", "kind": "tcp", "host": "127.0.0.1", "port": host.port},
    )

    checks = by_name(report)
    assert checks["closed"] == CheckResult(
        "closed", "tcp", False,
        f"cannot connect to 127.0.0.1:{port}: Connection refused",
    )  # fmt: skip
    assert checks["sshd"] == CheckResult(
        "sshd", "tcp", True, f"connected to 127.0.0.1:{host.port} from the host"
    )


def test_unit_check_runs_the_unit_and_a_failing_one_fails_with_its_log(
    client: SystemdClient, host: TestHost
) -> None:
    host.install_unit(
        "nas-unreachable.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"nas: no route to host\"; exit 1'\n",
    )
    host.daemon_reload()

    report = preflight(
        client,
        {"name": "nas", "kind": "unit", "unit": REACHABILITY, "timeout": "30s"},
        {"name": "offsite", "kind": "unit", "unit": "nas-unreachable.service", "timeout": "30s"},
    )

    checks = by_name(report)
    assert checks["nas"].ok, checks["nas"]
    assert checks["nas"].message.startswith(f"{REACHABILITY} succeeded, invocation ")
    ran = host.ssh(f"journalctl -b -o cat -u {REACHABILITY}").stdout
    assert "nas: reachable" in ran
    assert not checks["offsite"].ok
    assert "nas: no route to host" in checks["offsite"].message
    # Recorded after the checks: the failed check unit is not blamed on a later deploy.
    assert "nas-unreachable.service" in report.failed_units


def test_plan_mode_only_checks_that_the_check_unit_exists(
    client: SystemdClient, host: TestHost
) -> None:
    report = preflight(client, {"name": "nas", "kind": "unit", "unit": REACHABILITY},
                       start_units=False)  # fmt: skip

    assert report.checks[0].ok
    assert "not started" in report.checks[0].message
    ran = host.ssh(f"journalctl -b -o cat -u {REACHABILITY}").stdout
    assert "nas: reachable" not in ran


def test_units_exist_names_the_missing_unit_and_records_the_host_state(
    client: SystemdClient, host: TestHost
) -> None:
    report = preflight(
        client,
        {"name": "needed", "kind": "units_exist",
         "units": ["sanoid.service", "tank-data.mount", "ssh.service"]},
        {"name": "state", "kind": "system_state"},
        {"name": "pool", "kind": "command", "argv": ["zpool", "status", "-x"]},
        {"name": "true", "kind": "command", "argv": ["test", "-d", "/etc"]},
        required_units=["sanoid.service", "restic-backups-nowhere.service"],
    )  # fmt: skip

    checks = by_name(report)
    assert checks["needed"] == CheckResult(
        "needed", "units_exist", False, "missing on the host: tank-data.mount"
    )
    assert checks["required-units"].message == (
        "missing on the host: restic-backups-nowhere.service"
    )
    assert checks["state"].ok, checks["state"]
    assert checks["pool"] == CheckResult(
        "pool", "command", False,
        "not found on the host: timeout: failed to run command 'zpool': No such file or "
        "directory",
    )  # fmt: skip
    assert checks["true"].ok
    assert report.boot_id == host.boot_id()
