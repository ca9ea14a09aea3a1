"""The testbed itself: hosts boot with systemd as PID 1, sshd, and the sample backup units."""

from __future__ import annotations

import json
import subprocess

from tests.testbed import (
    BACKUP_UNITS,
    HELPER_UNITS,
    RESTIC_PASSWORD_FILE,
    RESTIC_REPOSITORY,
    TIMERS,
    TestHost,
)
from tests.testbed.testbed import Testbed

SAMPLE_UNITS = (*BACKUP_UNITS, *HELPER_UNITS, *TIMERS)
RESTIC = f"restic --no-cache -r {RESTIC_REPOSITORY} --password-file {RESTIC_PASSWORD_FILE}"


def restic_snapshots(host: TestHost) -> list[dict[str, object]]:
    """Return the snapshots in the host's restic repository."""
    snapshots: list[dict[str, object]] = json.loads(host.ssh(f"{RESTIC} snapshots --json").stdout)
    return snapshots


def test_host_boots_with_its_own_name_and_systemd_as_pid_1(host: TestHost) -> None:
    assert host.ssh("hostname").stdout.strip() == "forge"
    assert host.ssh("readlink /proc/1/exe").stdout.strip().endswith("/systemd")
    assert host.ssh("systemctl --version").stdout.startswith("systemd ")
    state = host.ssh("systemctl is-system-running", check=False).stdout.strip()
    assert state in ("running", "degraded")


def test_boot_id_is_32_hex_digits(host: TestHost) -> None:
    boot_id = host.boot_id()
    assert len(boot_id) == 32
    int(boot_id, 16)


def test_sample_units_are_installed_and_none_has_run(host: TestHost) -> None:
    listed = host.ssh("systemctl list-unit-files --no-legend --plain 'restic-backups-*'").stdout
    assert sorted(line.split()[0] for line in listed.splitlines()) == [
        "restic-backups-etc.service",
        "restic-backups-home.service",
        "restic-backups-home.timer",
    ]
    units = " ".join(SAMPLE_UNITS)
    shown = host.ssh(f"systemctl show -p Id,ActiveState,InvocationID {units}").stdout
    blocks = [
        dict(line.split("=", 1) for line in block.splitlines()) for block in shown.split("\n\n")
    ]
    assert [block["Id"] for block in blocks] == list(SAMPLE_UNITS)
    for block in blocks:
        if block["Id"].endswith(".timer"):
            assert block["ActiveState"] == "active"
        else:
            assert block["ActiveState"] == "inactive", block
            assert block["InvocationID"] == "", block
    assert restic_snapshots(host) == []


def test_restic_unit_makes_a_real_snapshot(host: TestHost) -> None:
    host.ssh("systemctl start restic-backups-home.service")
    snapshots = restic_snapshots(host)
    assert len(snapshots) == 1
    assert snapshots[0]["paths"] == ["/home"]
    assert snapshots[0]["hostname"] == "forge"


def test_stand_in_units_run_and_succeed(host: TestHost) -> None:
    # Type=simple units return from start at once; oneshots block until done.
    host.ssh("systemctl start sanoid.service pgbackrest-main-full.service")
    host.ssh("while systemctl -q is-active sanoid.service; do sleep 0.2; done", timeout=30)
    host.ssh("systemctl start syncoid-tank-data.service")
    host.ssh("while systemctl -q is-active syncoid-tank-data.service; do sleep 0.2; done")
    markers = host.ssh("ls /var/lib/syncoid-standin/data").stdout.split()
    assert len(markers) == 1
    assert markers[0].startswith("tank-data@autosnap_")
    journal = host.ssh("journalctl -b -q -o cat -u pgbackrest-main-full.service").stdout
    assert "full backup of stanza main finished" in journal


def test_installed_unit_runs_after_daemon_reload(host: TestHost) -> None:
    host.install_unit(
        "probe.service", "[Service]\nType=oneshot\nExecStart=/bin/touch /run/probe-ran\n"
    )
    host.daemon_reload()
    host.ssh("systemctl start probe.service")
    assert host.ssh("test -e /run/probe-ran", check=False).returncode == 0


def test_write_file_is_visible_inside(host: TestHost) -> None:
    host.write_file("/etc/deploy-guard/probe.txt", "hello\n", mode=0o600)
    assert host.ssh("stat -c '%a %s' /etc/deploy-guard/probe.txt").stdout.split() == ["600", "6"]


def test_two_hosts_boot_at_once_on_different_ports(testbed: Testbed, host: TestHost) -> None:
    second = testbed.boot("vault", sample_units=False)
    try:
        assert second.port != host.port
        assert second.ssh("hostname").stdout.strip() == "vault"
        assert host.ssh("hostname").stdout.strip() == "forge"
        assert second.boot_id() != host.boot_id()
        assert (
            second.ssh("systemctl list-unit-files 'restic-backups-*'", check=False).returncode != 0
        )
    finally:
        second.stop()
    assert "vault" not in testbed.ssh_config_path.read_text()


def test_ssh_config_works_with_plain_ssh_and_strict_host_keys(
    testbed: Testbed, host: TestHost
) -> None:
    result = subprocess.run(
        [
            "ssh",
            "-F",
            str(testbed.ssh_config_path),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "forge",
            "true",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    known_hosts = testbed.known_hosts_path.read_text()
    assert f"[127.0.0.1]:{host.port} {host.host_key}" in known_hosts


def test_dg_env_points_home_at_the_testbed(testbed: Testbed, dg_env: dict[str, str]) -> None:
    assert dg_env["HOME"] == str(testbed.home)
    assert "SSH_AUTH_SOCK" not in dg_env
    assert (testbed.home / ".ssh/id_ed25519").is_file()
