"""Dump files (`stat -c '%s %Y %n'`, GNU coreutils), verify commands, and borg."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deploy_guard.artifact import ArtifactStatus, CheckOutput, borg, command, dump, kind_for_unit

STARTED = datetime(2025, 12, 1, 20, 0, 0, 400000, tzinfo=UTC)
EPOCH = int(STARTED.timestamp())


def dump_judge(stdout: str):  # type: ignore[no-untyped-def]
    return dump.judge(
        CheckOutput(0, stdout), STARTED, {"files": ["/var/backup/postgresql/db.sql*"]}
    )


def test_dump_written_in_the_runs_first_second_is_verified() -> None:
    found = dump_judge(f"2048 {EPOCH} /var/backup/postgresql/db.sql.gz\n")
    assert (found.status, found.id) == (ArtifactStatus.VERIFIED, "/var/backup/postgresql/db.sql.gz")


def test_old_dump_is_stale_empty_is_missing_none_is_missing() -> None:
    old = dump_judge(f"2048 {EPOCH - 2 * 86400} /var/backup/postgresql/db.sql.gz\n")
    assert old.status is ArtifactStatus.STALE
    assert old.detail == (
        "the unit exited 0 but /var/backup/postgresql/db.sql.gz is 2 days old (written before "
        "this run started)"
    )
    assert (
        dump_judge(f"0 {EPOCH + 5} /var/backup/postgresql/db.sql.gz\n").status
        is ArtifactStatus.MISSING
    )
    assert dump_judge("").status is ArtifactStatus.MISSING


def test_dump_direct_params_follow_the_nixos_module_names() -> None:
    assert dump.direct_params("postgresqlBackup.service", []) == {
        "files": ["/var/backup/postgresql/all.sql*"]
    }
    assert dump.direct_params("postgresqlBackup-app.service", []) == {
        "files": ["/var/backup/postgresql/app.sql*"]
    }
    assert dump.direct_params("mysql-backup.service", []) == {"files": ["/var/backup/mysql/*"]}


@pytest.mark.parametrize(
    ("stdout", "status"),
    [
        ('{"time": "2025-12-01T20:00:05Z", "id": "n1"}', ArtifactStatus.VERIFIED),
        (f'{{"time": {EPOCH + 1}, "id": "n1"}}', ArtifactStatus.VERIFIED),
        ('{"time": "2025-11-01T20:00:05+01:00", "id": "n1"}', ArtifactStatus.STALE),
        ('{"time": null}', ArtifactStatus.MISSING),
        ("{}", ArtifactStatus.MISSING),
        ("nonsense", ArtifactStatus.UNVERIFIED),
        ('{"time": "yesterday"}', ArtifactStatus.UNVERIFIED),
    ],
)
def test_verify_command_answers(stdout: str, status: ArtifactStatus) -> None:
    assert command.judge(CheckOutput(0, stdout), STARTED, {}).status is status


def test_failing_verify_command_is_unverified() -> None:
    found = command.judge(CheckOutput(2, "", "no such bucket"), STARTED, {})
    assert found.detail == "the verify command exited 2: no such bucket"


# The shape of borg 1.2's `borg list --json` (archives[] with archive, barchive, id, name,
# start, time in local time without an offset; encryption; repository), preceded by `date +%z`.
BORG = (
    "+0100\n"
    '{"archives": [{"archive": "forge-home-2025-12-01T21:00:03", "barchive": '
    '"forge-home-2025-12-01T21:00:03", "id": "a9c3", "name": "forge-home-2025-12-01T21:00:03", '
    '"start": "2025-12-01T21:00:03.000000", "time": "2025-12-01T21:00:03.000000"}], '
    '"encryption": {"mode": "repokey"}, "repository": {"id": "0f", "last_modified": '
    '"2025-12-01T21:00:09.000000", "location": "/var/lib/borg"}}\n'
)


def test_borg_archive_times_are_read_in_the_hosts_zone() -> None:
    found = borg.judge(CheckOutput(0, BORG), STARTED, {})
    assert found.status is ArtifactStatus.VERIFIED
    assert found.time == datetime(2025, 12, 1, 21, 0, 3, tzinfo=timezone(timedelta(hours=1)))
    late = borg.judge(CheckOutput(0, BORG), STARTED + timedelta(seconds=10), {})
    assert late.status is ArtifactStatus.STALE


def test_borg_empty_repository_is_missing_and_failure_unverified() -> None:
    empty = '+0000\n{"archives": [], "encryption": {"mode": "none"}}'
    assert borg.judge(CheckOutput(0, empty), STARTED, {}).status is ArtifactStatus.MISSING
    failed = borg.judge(CheckOutput(2, "+0000\n", "Repository /x does not exist."), STARTED, {})
    assert failed.detail == "borg list exited 2: Repository /x does not exist."


def test_borg_argv_filters_the_jobs_archives() -> None:
    assert borg.argv({"glob": "forge-home-*"})[-2:] == ["--glob-archives", "forge-home-*"]


@pytest.mark.parametrize(
    ("unit", "kind"),
    [
        ("restic-backups-home.service", "restic"),
        ("borgbackup-job-home.service", "borg"),
        ("pgbackrest-main-full.service", "pgbackrest"),
        ("pgbackrest-main-stanza-create.service", None),
        ("postgresqlBackup.service", "dump"),
        ("postgresqlBackup-app.service", "dump"),
        ("mysql-backup.service", "dump"),
        ("sanoid.service", "sanoid"),
        ("syncoid-tank-data.service", "syncoid"),
        ("syncoid-tank-data-replication-info.service", None),
        ("btrbk-local.service", None),
        ("restic-backup-home.service", None),
    ],
)
def test_kind_by_unit_name(unit: str, kind: str | None) -> None:
    assert kind_for_unit(unit) == kind
