"""pgBackRest: the stanza's newest backup of the job's type stopped after the run started.

INFO is in the format of `pgbackrest info --output=json` from pgBackRest 2.45 (the shape the
public pgbackrest_exporter test suite records from that version: archive, backup[] with
backrest.version, error, label, timestamp.start/stop, type; db, name, repo, status), with our
own values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploy_guard.artifact import ArtifactStatus, CheckOutput, pgbackrest

FULL_STOP = 1764619322  # 2025-12-01T20:02:02Z
INFO = (
    '[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000006",'
    '"min":"000000010000000000000001"}],"backup":['
    '{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},'
    '"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,'
    '"info":{"delta":24316343,"repository":{"delta":2969512,"size":2969512},"size":24316343},'
    '"label":"20251201-200000F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,'
    '"reference":null,"timestamp":{"start":1764619200,"stop":'
    + str(FULL_STOP)
    + '},"type":"full"},'
    '{"archive":{"start":"000000010000000000000004","stop":"000000010000000000000004"},'
    '"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,'
    '"info":{"delta":8192,"repository":{"delta":1024,"size":2969600},"size":24316343},'
    '"label":"20251201-200000F_20251201-210000I","lsn":{"start":"0/4000028","stop":"0/4000100"},'
    '"prior":"20251201-200000F","reference":["20251201-200000F"],'
    '"timestamp":{"start":1764622800,"stop":1764622810},"type":"incr"}],'
    '"cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7000000000000000001,"version":"15"}],'
    '"name":"main","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],'
    '"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]'
)
STOPPED = datetime.fromtimestamp(FULL_STOP, UTC)


def judge(stdout: str, started: datetime, **params: object):  # type: ignore[no-untyped-def]
    return pgbackrest.judge(CheckOutput(0, stdout), started, {"stanza": "main", **params})


def test_full_backup_stopped_after_the_start_is_verified_with_its_label() -> None:
    found = judge(INFO, STOPPED - timedelta(minutes=3), type="full")
    assert found.status is ArtifactStatus.VERIFIED
    assert (found.id, found.time) == ("20251201-200000F", STOPPED)


def test_newer_backup_of_another_type_does_not_count() -> None:
    found = judge(INFO, STOPPED + timedelta(minutes=30), type="full")
    assert found.status is ArtifactStatus.STALE
    assert found.id == "20251201-200000F"
    assert found.detail is not None
    assert "full backup of stanza main is 30m old" in found.detail


def test_without_a_type_the_newest_backup_counts() -> None:
    found = judge(INFO, STOPPED + timedelta(minutes=30))
    assert (found.status, found.id) == (
        ArtifactStatus.VERIFIED,
        "20251201-200000F_20251201-210000I",
    )


def test_backup_recorded_with_errors_is_not_an_artifact() -> None:
    errored = INFO.replace(
        '"error":false,"info":{"delta":24316343', '"error":true,"info":{"delta":24316343'
    )
    found = judge(errored, STOPPED - timedelta(minutes=3), type="full")
    assert found.status is ArtifactStatus.MISSING
    assert found.detail is not None
    assert "recorded with errors" in found.detail


def test_stanza_without_backups_is_missing() -> None:
    empty = (
        '[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"main",'
        '"status":{"code":2,"message":"no valid backups"}}]'
    )
    assert judge(empty, STOPPED).status is ArtifactStatus.MISSING


def test_unknown_stanza_is_unverified() -> None:
    found = pgbackrest.judge(CheckOutput(0, INFO), STOPPED, {"stanza": "other"})
    assert found.status is ArtifactStatus.UNVERIFIED


def test_direct_params_from_the_unit_name_and_exec_start() -> None:
    assert pgbackrest.direct_params("pgbackrest-main-full.service", []) == {
        "stanza": "main",
        "type": "full",
    }
    assert pgbackrest.direct_params(
        "pgbackrest-my-db-nightly.service", ["pgbackrest", "--type=diff", "backup"]
    ) == {"stanza": "my-db", "type": "diff"}
    assert pgbackrest.direct_params("pgbackrest-main-nightly.service", []) == {"stanza": "main"}
