"""Pre-flight checks and post-deploy verification through the real CLI on the testbed."""

from __future__ import annotations

from pathlib import Path

from tests.integration.guard import guard, oneshot, started_units, write_config
from tests.integration.test_apply import apply
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

IMPOSSIBLE_SPACE = """
[[preflight]]
name = "room-for-snapshots"
kind = "free_space"
path = "/"
min_free = "900TiB"
"""


def test_failed_preflight_check_blocks_the_run_before_any_backup_starts(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, IMPOSSIBLE_SPACE))

    assert result.code == 2
    (check,) = result.host()["preflight"]
    assert (check["name"], check["outcome"]) == ("room-for-snapshots", "failed")
    assert "/" in check["message"]
    assert {s["outcome"] for s in result.host()["stages"]} == {"not-started"}
    assert started_units(host, BACKUP_UNITS) == set()


def test_plan_reports_preflight_checks_and_starts_nothing(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    result = guard(dg_env, "plan", "forge", config=write_config(tmp_path, IMPOSSIBLE_SPACE))

    assert result.code == 2
    assert result.report is not None
    assert result.report["hosts"][0]["preflight"][0]["outcome"] == "failed"
    assert started_units(host, BACKUP_UNITS) == set()


def _break_host(testbed: Testbed) -> tuple[str, ...]:
    """A deploy command that breaks something on the host: starts a failing unit."""
    return ("ssh", "-F", str(testbed.ssh_config_path), "forge",
            "systemctl start broken-by-deploy.service || true")  # fmt: skip


def test_deploy_that_breaks_a_unit_is_unhealthy_and_rolled_back_once(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("broken-by-deploy.service", oneshot("echo the new config is wrong; exit 3"))
    host.write_file("/usr/local/bin/rollback-standin",
                    "#!/bin/sh\necho rolled back >> /var/lib/rollbacks\n", mode=0o755)  # fmt: skip
    host.daemon_reload()
    config = write_config(tmp_path, """
[verify]
settle_timeout = "30s"
rollback = true
rollback_commands = [["/usr/local/bin/rollback-standin"]]
""")  # fmt: skip

    result = apply(dg_env, config, "forge", command=_break_host(testbed))

    assert result.code == 5, result.stderr
    verify = result.host()["verify"]
    assert verify is not None
    failed = [unit["unit"] for unit in verify["verify"]["new_failed_units"]]
    assert failed == ["broken-by-deploy.service"]
    assert host.ssh("cat /var/lib/rollbacks").stdout.count("rolled back") == 1
    assert "UNHEALTHY" in result.stderr
    assert "the new config is wrong" in result.stderr


def test_clean_deploy_with_a_health_check_that_passes_on_the_third_try_is_healthy(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    counter = "n=$(cat /var/lib/tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/lib/tries"
    config = write_config(tmp_path, f"""
[[health]]
name = "app-answers"
kind = "command"
argv = ["sh", "-c", "{counter}; test $n -ge 3"]
attempts = 5
interval = "1s"
""")  # fmt: skip

    result = apply(dg_env, config, "forge", command=("true",))

    assert result.code == 0, result.stderr
    assert result.host()["verify"]["verify"]["checks"][0]["attempts"] == 3
