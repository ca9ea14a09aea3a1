"""Stage 4, verification, against real systemd and real restic: a backup unit that exits 0
is only a success when the backup tool's own records show its artifact (issue 16)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.guard import guard, oneshot, write_config
from tests.testbed.host import TestHost

RESTIC_ENVIRONMENT = (
    "Environment=RESTIC_REPOSITORY=/var/lib/restic-repo\n"
    "Environment=RESTIC_PASSWORD_FILE=/etc/restic/password\n"
)
RESTIC_CLI = "RESTIC_PASSWORD_FILE=/etc/restic/password restic -r /var/lib/restic-repo --no-cache"


def stage(units: str, extra: str = "") -> str:
    return f"""
[[stages]]
name = "applications"
timeout = "2m"
units = ["{units}"]
{extra}
"""


def install_silent_restic_job(host: TestHost, name: str) -> None:
    """A restic job whose script never calls restic: it exits 0 and backs up nothing."""
    host.install_unit(
        f"restic-backups-{name}.service",
        oneshot("echo backup finished", extra_service=RESTIC_ENVIRONMENT),
    )
    host.daemon_reload()


def test_restic_job_that_exits_0_without_a_snapshot_is_failed_missing(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_silent_restic_job(host, "silent")
    config = write_config(tmp_path, stage("restic-backups-silent.service"))

    result = guard(dg_env, "run", "forge", config=config)

    unit = result.units()["restic-backups-silent.service"]
    assert unit["outcome"] == "failed", unit
    assert unit["artifact"]["status"] == "missing"
    assert unit["artifact"]["kind"] == "restic"
    assert unit["reason"] == (
        "restic exited 0 but there is no snapshot of this backup in the repository"
    )
    assert result.code == 1, result.stderr


def test_real_restic_backup_is_verified_with_its_snapshot_id(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, stage("restic-backups-home.service"))

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 0, result.stderr
    unit = result.units()["restic-backups-home.service"]
    assert unit["outcome"] == "succeeded"
    short_id = host.ssh(f"{RESTIC_CLI} snapshots --json --path /home | grep -o "
                        '\'"short_id":"[0-9a-f]*"\' | cut -d\\" -f4').stdout.strip()  # fmt: skip
    assert unit["artifact"]["status"] == "verified"
    assert unit["artifact"]["id"] == short_id
    assert unit["artifact"]["time"] >= unit["started_at"]


def test_restic_repository_whose_newest_snapshot_predates_the_run_is_stale(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    old = host.ssh("date -u -d '3 days ago' '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    host.ssh(f"{RESTIC_CLI} backup --quiet --time '{old}' /home")
    install_silent_restic_job(host, "stale")
    config = write_config(tmp_path, stage("restic-backups-stale.service"))

    result = guard(dg_env, "run", "forge", config=config)

    unit = result.units()["restic-backups-stale.service"]
    assert unit["outcome"] == "failed", unit
    assert unit["artifact"]["status"] == "stale"
    assert unit["reason"] == (
        "restic exited 0 but the newest snapshot in the repository is 3 days old "
        "(taken before this run started)"
    )
    assert result.code == 1, result.stderr


def test_a_unit_no_proof_knows_is_unverified_and_fails_only_with_require(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("btrbk-local.service", oneshot("echo snapshot taken"))
    host.daemon_reload()

    lenient = guard(dg_env, "run", "forge",
                    config=write_config(tmp_path, stage("btrbk-local.service")))  # fmt: skip
    strict = guard(dg_env, "run", "forge", config=write_config(
        tmp_path, stage("btrbk-local.service") + "\n[proof]\nrequire = true\n"))  # fmt: skip

    assert lenient.code == 0, lenient.stderr
    unit = lenient.units()["btrbk-local.service"]
    assert (unit["outcome"], unit["artifact"]["status"]) == ("succeeded", "unverified")
    assert any("artifact unverified" in warning for warning in lenient.host()["warnings"])
    assert strict.code == 1, strict.stderr
    unit = strict.units()["btrbk-local.service"]
    assert (unit["outcome"], unit["artifact"]["status"]) == ("failed", "unverified")


def test_stage_verify_command_proves_any_backup(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("btrbk-local.service", oneshot("date +%s > /run/btrbk-local-made"))
    host.install_unit("btrbk-lazy.service", oneshot("true"))
    host.daemon_reload()
    host.ssh("echo 1000 > /run/btrbk-lazy-made")
    verify = (
        'verify = "printf \'{\\"time\\": %s, \\"id\\": \\"%s\\"}\' '
        '$(cat /run/${DEPLOY_GUARD_UNIT%.service}-made) $DEPLOY_GUARD_UNIT"'
    )
    config = write_config(tmp_path, stage("btrbk-*.service", verify))

    result = guard(dg_env, "run", "forge", config=config)

    units = result.units()
    assert units["btrbk-local.service"]["artifact"]["status"] == "verified", units
    assert units["btrbk-local.service"]["artifact"]["id"] == "btrbk-local.service"
    assert units["btrbk-lazy.service"]["artifact"]["status"] == "stale"
    assert units["btrbk-lazy.service"]["outcome"] == "failed"
    assert result.code == 1, result.stderr
