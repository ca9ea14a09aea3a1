"""Deadlines, critical stages and gathering failures, on real systemd."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.guard import guard, long_backup, oneshot, started_units, write_config
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost


def test_hung_units_are_stopped_at_the_deadline_and_reported_timed_out(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("restic-backups-hang.service", oneshot("sleep 600"))
    # Ignores SIGTERM, so only the escalation to SIGKILL can end it.
    host.install_unit("restic-backups-stubborn.service",
                      oneshot('trap "" TERM; while :; do sleep 1; done'))  # fmt: skip
    host.daemon_reload()
    config = write_config(tmp_path, """
[[stages]]
name = "applications"
timeout = "3s"
units = ["restic-backups-hang.service", "restic-backups-stubborn.service"]
""")  # fmt: skip

    result = guard(dg_env, "run", "forge", config=config)

    units = result.units()
    for name in ("restic-backups-hang.service", "restic-backups-stubborn.service"):
        assert units[name]["outcome"] == "timed-out", units[name]
        state = host.ssh(f"systemctl show -P ActiveState {name}").stdout.strip()
        assert state in ("inactive", "failed"), (name, state)
    assert units["restic-backups-stubborn.service"]["exit_status"] == 9  # SIGKILL
    assert result.code == 1


def test_failed_critical_stage_stops_the_host_and_exits_2(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("sanoid.service", "[Service]\nType=simple\nExecStart=/bin/sh -c 'exit 1'\n")
    host.daemon_reload()

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path))

    assert result.code == 2
    stages = result.stages()
    assert stages["snapshots"]["outcome"] == "failed"
    assert stages["replication"]["outcome"] == "not-started"
    assert stages["applications"]["outcome"] == "not-started"
    assert all(u["outcome"] == "not-started" for u in stages["applications"]["units"])
    assert started_units(host, BACKUP_UNITS) == {"sanoid.service"}


def test_non_critical_failure_does_not_stop_the_other_units(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit(
        "restic-backups-broken.service", oneshot("echo repository locked >&2; exit 1")
    )
    host.daemon_reload()

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path))

    assert result.code == 1
    units = result.units()
    assert units["restic-backups-broken.service"]["outcome"] == "failed"
    others = {name: unit["outcome"] for name, unit in units.items() if "broken" not in name}
    assert set(others.values()) == {"succeeded"}, others
    assert "pgbackrest-main-full.service" in others
    assert "restic-backups-broken.service" in result.stderr
    assert "repository locked" in result.stderr


def test_empty_critical_stage_is_a_critical_failure_unless_allowed(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    stage = (
        '[[stages]]\nname = "snapshots"\ncritical = true\ntimeout = "1m"\n'
        'units = ["zfs-nothing-*.service"]\n'
    )

    refused = guard(dg_env, "run", "forge", config=write_config(tmp_path, stage))
    allowed = guard(dg_env, "run", "forge",
                    config=write_config(tmp_path, stage + "allow_empty = true\n"))  # fmt: skip

    assert refused.code == 2
    assert "no unit matched" in refused.stages()["snapshots"]["reason"]
    assert allowed.code == 0, allowed.stderr


def test_several_hosts_are_guarded_and_the_worst_exit_code_wins(
    testbed: object, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    web = testbed.boot("web")  # type: ignore[attr-defined]
    try:
        web.install_unit("restic-backups-broken.service", oneshot("exit 1"))
        web.daemon_reload()

        result = guard(dg_env, "run", "forge", "web", config=write_config(tmp_path))

        assert result.host("forge")["exit_code"] == 0
        assert result.host("web")["exit_code"] == 1
        assert result.code == 1
    finally:
        web.stop()


def test_report_is_saved_under_xdg_state_home(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**dg_env, "XDG_STATE_HOME": str(tmp_path / "state")}

    result = guard(env, "run", "forge", "--stage", "snapshots", config=write_config(tmp_path))

    assert result.report is not None
    saved = tmp_path / "state" / "deploy-guard" / "runs" / f"{result.report['run_id']}.json"
    assert saved.is_file()
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert list(result.stages()) == ["snapshots"]


def test_interrupt_exits_130_and_leaves_started_backups_running(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = long_backup(host, tmp_path)
    env = {"DEPLOY_GUARD_SSH_CONFIG": str(Path(dg_env["HOME"]) / ".ssh/config"), **dg_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy_guard", "run", "forge", "--config", str(config)],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "started restic-backups-long.service" in line:
            break
    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=30) == 130
    assert "interrupted" in process.stderr.read()
    state = host.ssh("systemctl show -P ActiveState restic-backups-long.service").stdout.strip()
    assert state == "activating"  # still backing up: safe to let it finish
