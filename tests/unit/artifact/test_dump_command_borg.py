"""Dump files (`stat -c '%s %Y %n'`, GNU coreutils), verify commands, and borg."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


# Real output of `date +%z; borg list --last 1 --json` from borg 1.2.4 (Debian 12, the
# testbed) run with TZ=Asia/Kolkata: borg prints local time without an offset.
BORG_124 = (
    "+0530\n"
    "{\n"
    '    "archives": [\n'
    "        {\n"
    '            "archive": "forge-docs-2026-12-01T21:00:03",\n'
    '            "barchive": "forge-docs-2026-12-01T21:00:03",\n'
    '            "id": "9a54ff14ff544d601bfff0b82dd36e4f57535a682752f2d330b5f4a1b93e70a4",\n'
    '            "name": "forge-docs-2026-12-01T21:00:03",\n'
    '            "start": "2026-12-02T02:29:41.000000",\n'
    '            "time": "2026-12-02T02:29:41.000000"\n'
    "        }\n"
    "    ],\n"
    '    "encryption": {\n'
    '        "mode": "none"\n'
    "    },\n"
    '    "repository": {\n'
    '        "id": "a85d143039daf08167a2fed7b44d311461c8ae4548443fd76339c98f97b577ee",\n'
    '        "last_modified": "2026-12-02T02:29:41.000000",\n'
    '        "location": "/var/lib/b"\n'
    "    }\n"
    "}\n"
)
ARCHIVED = datetime(2026, 12, 1, 20, 59, 41, tzinfo=UTC)


def test_borg_archive_times_are_read_in_the_hosts_zone() -> None:
    found = borg.judge(CheckOutput(0, BORG_124), ARCHIVED - timedelta(seconds=2), {})
    assert found.status is ArtifactStatus.VERIFIED
    assert (found.id, found.time) == ("forge-docs-2026-12-01T21:00:03", ARCHIVED)
    late = borg.judge(CheckOutput(0, BORG_124), ARCHIVED + timedelta(hours=5), {})
    assert late.status is ArtifactStatus.STALE
    assert late.detail == (
        "borg exited 0 but the newest archive in the repository is 5h old (taken before this "
        "run started)"
    )


def test_borg_empty_repository_is_missing_and_failure_unverified() -> None:
    empty = '+0000\n{"archives": [], "encryption": {"mode": "none"}}'
    assert borg.judge(CheckOutput(0, empty), STARTED, {}).status is ArtifactStatus.MISSING
    failed = borg.judge(CheckOutput(2, "+0000\n", "Repository /x does not exist."), STARTED, {})
    assert failed.detail == "borg list exited 2: Repository /x does not exist."


def test_borg_argv_filters_the_jobs_archives() -> None:
    assert borg.argv({"glob": "forge-home-*"})[-2:] == ["--glob-archives", "forge-home-*"]
    assert borg.direct_params("borgbackup-job-docs.service", []) == {"glob": "*-docs-*"}


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
