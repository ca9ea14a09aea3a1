"""Stage 4, verification, against real systemd and real restic: a backup unit that exits 0
is only a success when the backup tool's own records show its artifact (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.guard import guard, oneshot, simple, started_units, write_config
from tests.integration.proof_standins import add_snapshot, install_proof_unit, install_standins
from tests.integration.test_polkit import GUARD_USER, guard_ssh_config, install_guard_user
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

RESTIC_ENVIRONMENT = (
    "Environment=RESTIC_REPOSITORY=/var/lib/restic-repo\n"
    "Environment=RESTIC_PASSWORD_FILE=/etc/restic/password\n"
)
RESTIC_CLI = "RESTIC_PASSWORD_FILE=/etc/restic/password restic -r /var/lib/restic-repo --no-cache"


SNAPSHOTS = """
[[stages]]
name = "snapshots"
timeout = "2m"
units = ["sanoid.service"]
"""
REPLICATION = """
[[stages]]
name = "replication"
timeout = "2m"
units = ["syncoid-tank-*.service"]
exclude = ["*-replication-info.service"]
"""


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
    assert unit["reason"] == ("restic exited 0 but there is no snapshot in the repository")
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


SANOID_CONF = """\
[tank/data]
    use_template = production
[tank/old]
    hourly = 0
    daily = 30
[template_production]
    hourly = 36
"""


def test_sanoid_proof_reads_every_managed_datasets_newest_snapshot(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_standins(host)
    host.write_file("/etc/sanoid/sanoid.conf", SANOID_CONF)
    add_snapshot(host, "tank/old@autosnap_2025-11-28_23:59:01_daily", 3 * 86400)
    take = "zfs snapshot tank/data@autosnap_$(date -u +%Y-%m-%d_%H:%M:%S)_hourly"
    host.install_unit("sanoid.service", simple(take))
    host.daemon_reload()
    config = write_config(tmp_path, SNAPSHOTS)

    result = guard(dg_env, "run", "forge", config=config)

    unit = result.units()["sanoid.service"]
    assert unit["outcome"] == "failed", unit
    assert unit["artifact"]["status"] == "stale"
    assert unit["reason"] == (
        "sanoid exited 0 but the newest snapshot of tank/old@autosnap_2025-11-28_23:59:01_daily "
        "is 3 days old (period 24h)"
    )
    host.write_file("/etc/sanoid/sanoid.conf", SANOID_CONF.split("[tank/old]", maxsplit=1)[0])
    again = guard(dg_env, "run", "forge", config=config)
    assert again.units()["sanoid.service"]["artifact"]["status"] == "verified", again.stderr
    assert again.code == 0, again.stderr


def test_syncoid_proof_needs_a_sync_snapshot_made_by_the_run(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_standins(host)
    add_snapshot(host, "tank/logs@syncoid_forge_2025-11-30:10:00:00-GMT+00:00", 86400)
    units = {
        "syncoid-tank-data.service": "/usr/local/sbin/syncoid --sendoptions w tank/data nas:d",
        "syncoid-tank-home.service": "/usr/local/sbin/syncoid --no-sync-snap tank/home nas:h",
        # exits 0 without replicating anything (a wrapper that swallowed syncoid's failure)
        "syncoid-tank-logs.service": "/bin/true tank/logs backup@nas:tank/logs",
    }
    for unit, command in units.items():
        host.install_unit(unit, f"[Service]\nType=simple\nExecStart={command}\n")
    host.daemon_reload()
    config = write_config(tmp_path, REPLICATION)

    result = guard(dg_env, "run", "forge", config=config)

    found = {name: unit["artifact"] for name, unit in result.units().items()}
    assert found["syncoid-tank-data.service"]["status"] == "verified", found
    assert found["syncoid-tank-data.service"]["id"].startswith("tank/data@syncoid_forge_")
    assert found["syncoid-tank-home.service"]["status"] == "unverified"
    assert "--no-sync-snap" in found["syncoid-tank-home.service"]["detail"]
    assert found["syncoid-tank-logs.service"]["status"] == "stale"
    assert result.units()["syncoid-tank-logs.service"]["outcome"] == "failed"
    assert result.code == 1, result.stderr


def test_pgbackrest_proof_reads_the_newest_backup_of_the_jobs_type(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_standins(host)
    backup = "/usr/local/sbin/pgbackrest --stanza=main --type={type} backup"
    host.install_unit("pgbackrest-main-full.service", oneshot(backup.format(type="full")))
    # exits 0 without a backup: no diff backup exists in the repository
    host.install_unit("pgbackrest-main-diff.service", oneshot("echo diff backup done"))
    host.daemon_reload()
    config = write_config(tmp_path, stage("pgbackrest-main-*.service"))

    result = guard(dg_env, "run", "forge", config=config)

    units = result.units()
    full = units["pgbackrest-main-full.service"]
    assert (full["outcome"], full["artifact"]["status"]) == ("succeeded", "verified"), full
    assert full["artifact"]["id"].endswith("F")
    diff = units["pgbackrest-main-diff.service"]
    assert (diff["outcome"], diff["artifact"]["status"]) == ("failed", "missing"), diff
    assert diff["reason"] == "pgbackrest exited 0 but there is no diff backup of stanza main"
    assert result.code == 1, result.stderr


def test_with_the_hosts_proof_units_the_check_runs_as_a_proven_unit(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_silent_restic_job(host, "silent")
    check = 'restic --no-cache snapshots --json --latest 1 --host "$(uname -n)"'
    proofs = []
    for unit, paths in (("restic-backups-home.service", ["/home"]),
                        ("restic-backups-silent.service", ["/srv"])):  # fmt: skip
        proof_unit = install_proof_unit(host, unit, "restic", check, RESTIC_ENVIRONMENT)
        proofs.append({"unit": unit, "kind": "restic", "proof_unit": proof_unit,
                       "params": {"paths": paths}})  # fmt: skip
    host.daemon_reload()
    units = ["restic-backups-home.service", "restic-backups-silent.service"]
    manifest = {"schema_version": 1, "proofs": proofs,
                "stages": [{"name": "applications", "units": units}]}  # fmt: skip
    host.write_file("/etc/deploy-guard/manifest.json", json.dumps(manifest))
    config = write_config(tmp_path, stage("restic-backups-*.service"))

    result = guard(dg_env, "run", "forge", config=config)

    found = result.units()
    assert found["restic-backups-home.service"]["artifact"]["status"] == "verified", found
    assert found["restic-backups-silent.service"]["artifact"]["status"] == "missing"
    assert found["restic-backups-silent.service"]["outcome"] == "failed"
    proof_units = tuple(proof["proof_unit"] for proof in proofs)
    assert started_units(host, proof_units) == set(proof_units)
    assert result.code == 1, result.stderr


BORG_ENVIRONMENT = (
    "Environment=BORG_REPO=/var/lib/borg-repo\n"
    "Environment=BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes\n"
    "Environment=BORG_RELOCATED_REPO_ACCESS_IS_OK=yes\n"
)


def test_borg_proof_reads_the_newest_archive_of_the_repository(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.ssh("borg init --encryption=none /var/lib/borg-repo")
    # Type=simple like the NixOS borgbackup jobs; the archive name as NixOS makes it.
    create = "borg create ::forge-docs-$(date +%Y-%m-%dT%H:%M:%S) /home"
    config = write_config(tmp_path, stage("borgbackup-job-*.service"))

    def install(name: str, command: str) -> None:
        unit = simple(command).replace("[Service]\n", "[Service]\n" + BORG_ENVIRONMENT)
        host.install_unit(f"borgbackup-job-{name}.service", unit)
        host.daemon_reload()

    install("docs", create)
    first = guard(dg_env, "run", "forge", config=config)
    install("docs", "echo archive created")  # the job breaks: exits 0, archives nothing
    second = guard(dg_env, "run", "forge", config=config)

    docs = first.units()["borgbackup-job-docs.service"]
    assert (docs["outcome"], docs["artifact"]["status"]) == ("succeeded", "verified"), docs
    assert docs["artifact"]["id"].startswith("forge-docs-")
    assert first.code == 0, first.stderr
    broken = second.units()["borgbackup-job-docs.service"]
    assert (broken["outcome"], broken["artifact"]["status"]) == ("failed", "stale"), broken
    assert broken["artifact"]["id"] == docs["artifact"]["id"]
    assert second.code == 1, second.stderr


def test_guard_user_proves_through_the_granted_proof_units_only(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_silent_restic_job(host, "silent")
    check = 'restic --no-cache snapshots --json --latest 1 --host "$(uname -n)"'
    units = ["restic-backups-home.service", "restic-backups-silent.service"]
    proofs = [
        {"unit": unit, "kind": "restic", "params": {"paths": [path]},
         "proof_unit": install_proof_unit(host, unit, "restic", check, RESTIC_ENVIRONMENT)}
        for unit, path in zip(units, ["/home", "/srv"], strict=True)
    ]  # fmt: skip
    host.daemon_reload()
    manifest = {"schema_version": 1, "proofs": proofs,
                "stages": [{"name": "applications", "units": units}]}  # fmt: skip
    host.write_file("/etc/deploy-guard/manifest.json", json.dumps(manifest))
    # What the module grants: the backups and their proof units, nothing else.
    install_guard_user(testbed, host, [*units, *(proof["proof_unit"] for proof in proofs)])
    home = guard_ssh_config(testbed, tmp_path / "home").parent.parent
    config = write_config(tmp_path, stage("restic-backups-*.service"))

    result = guard({**dg_env, "HOME": str(home)}, "run", "forge", config=config)

    found = result.units()
    assert found["restic-backups-home.service"]["artifact"]["status"] == "verified", found
    assert found["restic-backups-silent.service"]["artifact"]["status"] == "missing"
    assert result.code == 1, result.stderr
    logins = host.ssh("journalctl -b -q -o cat _COMM=sshd | grep 'Accepted publickey for'").stdout
    assert f"Accepted publickey for {GUARD_USER}" in logins


def test_dump_files_must_be_new_and_not_empty(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.ssh("mkdir -p /var/backup/postgresql && echo old > /var/backup/postgresql/wiki.sql.gz "
             "&& touch -d '2 days ago' /var/backup/postgresql/wiki.sql.gz")  # fmt: skip
    dump = "mkdir -p /var/backup/postgresql && echo dump | gzip > /var/backup/postgresql/{}.sql.gz"
    host.install_unit("postgresqlBackup-app.service", oneshot(dump.format("app")))
    host.install_unit("postgresqlBackup-wiki.service", oneshot("echo dumped wiki"))
    host.install_unit("postgresqlBackup-shop.service",
                      oneshot("touch /var/backup/postgresql/shop.sql.gz"))  # fmt: skip
    host.daemon_reload()
    config = write_config(tmp_path, stage("postgresqlBackup-*.service"))

    result = guard(dg_env, "run", "forge", config=config)

    found = {name: unit["artifact"] for name, unit in result.units().items()}
    assert found["postgresqlBackup-app.service"]["status"] == "verified", found
    assert found["postgresqlBackup-app.service"]["id"] == "/var/backup/postgresql/app.sql.gz"
    assert found["postgresqlBackup-wiki.service"]["status"] == "stale"
    assert found["postgresqlBackup-shop.service"]["status"] == "missing"  # empty
    assert result.code == 1, result.stderr
