"""`deploy-guard init HOST`: surveys a real host over SSH, writes a deploy-guard.toml that
loads and plans, shows the plan, starts nothing, and never overwrites without --force."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from deploy_guard.config import load_config
from tests.integration.guard import started_units
from tests.testbed import BACKUP_UNITS, HELPER_UNITS
from tests.testbed.host import TestHost

NIGHTLY = """\
[Unit]
Description=A hand-written backup no built-in pattern names
[Service]
Type=oneshot
ExecStart=/bin/true
"""


def init(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy_guard", "init", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_init_writes_the_hosts_entry_and_shows_the_plan_starting_nothing(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    completed = init(dg_env, tmp_path, "forge")

    assert completed.returncode == 0, completed.stderr
    written = tmp_path / "deploy-guard.toml"
    text = written.read_text()
    assert text.startswith("#:schema ./deploy-guard.schema.json\n")
    schema = json.loads((tmp_path / "deploy-guard.schema.json").read_text())
    assert schema["title"] == "deploy-guard.toml"
    config, _path = load_config(written)
    assert config.hosts["forge"].ssh == "forge"
    assert [stage.name for stage in config.stages] == ["snapshots", "replication", "applications"]
    assert "#   snapshots: sanoid.service\n" in text
    assert "#   applications: pgbackrest-main-full.service, restic-backups-etc.service, " in text
    assert "patterns that match here: syncoid-*.service" in text
    # The plan, from the file just written: every backup, no helper.
    for unit in BACKUP_UNITS:
        assert f"run      {unit}" in completed.stderr
    assert "exclude  syncoid-tank-data-replication-info.service" in completed.stderr
    assert started_units(host, (*BACKUP_UNITS, *HELPER_UNITS)) == set()

    again = init(dg_env, tmp_path, "forge")

    assert again.returncode == 3
    assert "exists; nothing was written (--force replaces it)" in again.stderr
    assert written.read_text() == text


def test_init_lets_an_empty_critical_stage_be_empty_and_offers_unknown_backups(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    # A host without sanoid: its timer goes too, or systemd keeps sanoid.service loaded
    # (not-found) for the timer's sake.
    host.ssh(
        "systemctl stop sanoid.timer; cd /etc/systemd/system; "
        "rm sanoid.service sanoid.timer timers.target.wants/sanoid.timer"
    )
    host.install_unit("nightly-backup.service", NIGHTLY)
    host.daemon_reload()
    (tmp_path / "deploy-guard.toml").write_text("# an older file\n")

    completed = init(dg_env, tmp_path, "--force", "vault=forge")

    assert completed.returncode == 0, completed.stderr
    text = (tmp_path / "deploy-guard.toml").read_text()
    data = tomllib.loads(text)
    assert data["hosts"]["vault"]["ssh"] == "forge"
    assert data["hosts"]["vault"]["stages"]["snapshots"] == {"allow_empty": True}
    # Offered, not enabled (Debian's own dpkg-db-backup.service is offered too).
    (offer,) = [line for line in text.splitlines() if line.startswith("# extra_units = ")]
    assert '"nightly-backup.service"' in offer
    assert "extra_units" not in data["hosts"]["vault"]["stages"].get("applications", {})
    assert "run      nightly-backup.service" not in completed.stderr
    assert "1. snapshots" in completed.stderr
    assert started_units(host, ("nightly-backup.service", *BACKUP_UNITS)) == set()


def test_init_of_an_unreachable_host_writes_nothing(dg_env: dict[str, str], tmp_path: Path) -> None:
    completed = init(dg_env, tmp_path, "ghost=root@127.0.0.1:1")

    assert completed.returncode == 2, completed.stderr
    assert "ghost: cannot survey it; nothing was written" in completed.stderr
    assert not (tmp_path / "deploy-guard.toml").exists()
