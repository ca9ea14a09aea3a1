"""`deploy-guard plan` and `run --dry-run`: what would run, and nothing started."""

from __future__ import annotations

from pathlib import Path

from tests.integration.guard import guard, started_units, write_config
from tests.testbed import BACKUP_UNITS, HELPER_UNITS
from tests.testbed.host import TestHost


def test_plan_lists_units_exclusions_and_unmatched_patterns_and_starts_nothing(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    result = guard(dg_env, "plan", "forge", config=write_config(tmp_path))

    assert result.code == 0, result.stderr
    assert result.report is not None
    assert result.report["schema"] == 1
    assert result.report["command"] == "plan"
    (entry,) = result.report["hosts"]
    assert entry["host"] == "forge"
    assert entry["error"] is None
    stages = {stage["name"]: stage for stage in entry["stages"]}
    planned = {unit["unit"] for stage in stages.values() for unit in stage["units"]}
    assert planned == set(BACKUP_UNITS)
    excluded = {e["unit"]: e["reason"] for s in stages.values() for e in s["excluded"]}
    assert set(excluded) == set(HELPER_UNITS)
    assert "exclude pattern" in excluded["syncoid-nas-target-reachability.service"]
    assert "borgbackup-job-*.service" in stages["applications"]["unmatched"]
    assert stages["snapshots"]["critical"] is True
    assert stages["snapshots"]["timeout_s"] == 300
    assert started_units(host, (*BACKUP_UNITS, *HELPER_UNITS)) == set()


def test_run_dry_run_is_the_same_as_plan(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)

    plan = guard(dg_env, "plan", "forge", config=config)
    dry = guard(dg_env, "run", "forge", "--dry-run", config=config)

    assert dry.report == plan.report
    assert started_units(host, BACKUP_UNITS) == set()
