"""--max-age and `status` on the testbed: freshness is proven by systemd's own record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.guard import guard, oneshot, started_units, write_config
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost


def _status(env: dict[str, str], config: Path, *args: str) -> tuple[int, dict[str, object]]:
    env = {**env, "DEPLOY_GUARD_SSH_CONFIG": str(Path(env["HOME"]) / ".ssh/config")}
    completed = subprocess.run(
        [sys.executable, "-m", "deploy_guard", "status", "forge", "--json", "--config",
         str(config), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return completed.returncode, json.loads(completed.stdout)


def test_recent_success_is_fresh_and_not_run_again_but_max_age_zero_runs_it(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    first = guard(dg_env, "run", "forge", config=config)
    assert first.code == 0, first.stderr
    starts_before = host.ssh("journalctl -b -q -o cat _PID=1 UNIT=restic-backups-etc.service "
                             "| grep -c '^Starting' || true").stdout  # fmt: skip

    fresh = guard(dg_env, "run", "forge", "--max-age", "10m", config=config)

    assert fresh.code == 0, fresh.stderr
    units = fresh.units()
    assert {unit["outcome"] for unit in units.values()} == {"fresh"}
    etc = units["restic-backups-etc.service"]
    assert etc["invocation_id"] == first.units()["restic-backups-etc.service"]["invocation_id"]
    assert 0 <= etc["age_s"] < 600
    starts_after = host.ssh("journalctl -b -q -o cat _PID=1 UNIT=restic-backups-etc.service "
                            "| grep -c '^Starting' || true").stdout  # fmt: skip
    assert starts_after == starts_before  # nothing was started again

    again = guard(dg_env, "run", "forge", "--max-age", "0s", config=config)

    assert {unit["outcome"] for unit in again.units().values()} == {"succeeded"}


def test_unit_that_failed_last_time_runs_even_within_max_age(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("restic-backups-flaky.service", oneshot(
        "test -e /var/lib/flaky-ok || { touch /var/lib/flaky-ok; exit 1; }"))  # fmt: skip
    host.daemon_reload()
    config = write_config(tmp_path)
    first = guard(dg_env, "run", "forge", config=config)
    assert first.units()["restic-backups-flaky.service"]["outcome"] == "failed"

    second = guard(dg_env, "run", "forge", "--max-age", "10m", config=config)

    flaky = second.units()["restic-backups-flaky.service"]
    assert flaky["outcome"] == "succeeded"  # it ran again, and this time it worked
    assert flaky["invocation_id"] != first.units()["restic-backups-flaky.service"]["invocation_id"]
    assert second.units()["sanoid.service"]["outcome"] == "fresh"
    assert second.code == 0


def test_status_reads_last_runs_without_starting_anything(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)

    code, never = _status(dg_env, config, "--max-age", "1h")

    assert code == 1  # no unit has a recorded success yet
    units = never["hosts"][0]["units"]  # type: ignore[index]
    assert {unit["result"] for unit in units} == {None}
    assert started_units(host, BACKUP_UNITS) == set()

    run = guard(dg_env, "run", "forge", config=config)
    code, after = _status(dg_env, config, "--max-age", "1h")

    assert code == 0
    by_unit = {unit["unit"]: unit for unit in after["hosts"][0]["units"]}  # type: ignore[index]
    for name, reported in run.units().items():
        assert by_unit[name]["result"] == "success"
        assert by_unit[name]["invocation_id"] == reported["invocation_id"]
        assert by_unit[name]["duration_s"] is not None
    assert _status(dg_env, config, "--max-age", "0s")[0] == 1
