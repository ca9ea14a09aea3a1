"""A host that reboots in the middle of a stage (issue 11 case 9): the testbed reboots the
container in place (systemd-nspawn exits 133 and is started again from the same root, port and
host key), and the guard reports the runs it lost as failed, never as a success."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.guard import oneshot, write_config
from tests.testbed.host import REBOOT_EXIT_STATUS, TestHost

STAGES = """
[[stages]]
name = "applications"
timeout = "2m"
units = ["restic-backups-long.service", "restic-backups-longer.service"]

[[stages]]
name = "afterwards"
timeout = "1m"
units = ["restic-backups-etc.service"]
"""


def test_testbed_host_reboots_in_place_with_the_same_port_and_host_key(host: TestHost) -> None:
    old_boot_id, port, host_key = host.boot_id(), host.port, host.host_key
    host.ssh("touch /var/lib/survives-reboot")

    host.reboot()
    new_boot_id = host.wait_for_reboot(old_boot_id)

    # nspawn's exit status when the container's systemd reboots (docs/field-notes.md).
    assert host.exit_statuses == [REBOOT_EXIT_STATUS]
    assert host.reboots == 1
    assert new_boot_id != old_boot_id
    assert (host.port, host.host_key) == (port, host_key)
    host.ssh("test -e /var/lib/survives-reboot")  # same root; ssh checks the same host key


def test_host_rebooted_mid_stage_fails_the_runs_in_flight_and_reports_both_boot_ids(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("restic-backups-long.service", oneshot("echo backing up; sleep 60"))
    host.install_unit("restic-backups-longer.service", oneshot("echo backing up; sleep 90"))
    host.daemon_reload()
    old_boot_id = host.boot_id()
    argv = [sys.executable, "-m", "deploy_guard", "run", "forge", "--json",
            "--config", str(write_config(tmp_path, STAGES))]  # fmt: skip
    process = subprocess.Popen(
        argv, env=dg_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "started restic-backups-long.service" in line:
            break

    host.reboot()
    new_boot_id = host.wait_for_reboot(old_boot_id)
    stdout, stderr = process.communicate(timeout=300)

    assert host.exit_statuses == [REBOOT_EXIT_STATUS], host.log()
    report = json.loads(stdout)
    (entry,) = report["hosts"]
    units = {unit["unit"]: unit for stage in entry["stages"] for unit in stage["units"]}
    diagnostics = "".join(seen) + stderr
    assert process.returncode == 2, diagnostics
    assert [unit for unit in units.values() if unit["outcome"] == "succeeded"] == []
    for name in ("restic-backups-long.service", "restic-backups-longer.service"):
        assert units[name]["outcome"] == "failed", units[name]
        assert "host rebooted" in units[name]["reason"], units[name]
    assert units["restic-backups-etc.service"]["outcome"] == "not-started"
    assert entry["boot_ids"] == [old_boot_id, new_boot_id], entry
