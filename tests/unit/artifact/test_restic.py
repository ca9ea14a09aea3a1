"""restic: the newest snapshot of this job's paths, made after the run started.

RESTIC_014 is real output of `restic snapshots --json --latest 1 --host vm` from restic 0.14.0
(Debian 12's, the testbed's), recorded for a repository with two jobs (one tagged `a` backing
up /tmp/rr/data/a, one backing up both directories)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deploy_guard.artifact import ArtifactStatus, CheckOutput, restic

RESTIC_014 = (
    '[{"time":"2026-12-01T20:15:56.942700337Z","tree":"e88e18269d857d8a36f87c266ad794e42061e4f793'
    'dc86373776c4c360f33297","paths":["/tmp/rr/data/a"],"hostname":"vm","username":"root","tags"'
    ':["a"],"id":"85b85801ec5d2d12ecf1e01aabf3ed02d39ab7bdfec350c6278d4f8665e3f59d","short_id":"'
    '85b85801"},{"time":"2026-12-01T20:15:57.497672026Z","tree":"0687838c4b234d4a0d5466dbf920d89b'
    '8a5e75049450d954e2f44455f4df1783","paths":["/tmp/rr/data/a","/tmp/rr/data/b"],"hostname":"v'
    'm","username":"root","id":"741a05f72d4a9f3561876c242277294214970df05775dc6b4e0f324d058d6b2e"'
    ',"short_id":"741a05f7"}]\n'
)
SNAPSHOT_A = datetime(2026, 12, 1, 20, 15, 56, 942700, tzinfo=UTC)
BOTH = ["/tmp/rr/data/b", "/tmp/rr/data/a"]


def judge(stdout: str, started: datetime, exit_status: int = 0, **params: object):  # type: ignore[no-untyped-def]
    return restic.judge(CheckOutput(exit_status, stdout, "Fatal: wrong password"), started, params)


def test_snapshot_of_the_jobs_paths_after_the_start_is_verified_with_its_id() -> None:
    found = judge(RESTIC_014, SNAPSHOT_A - timedelta(seconds=5), paths=["/tmp/rr/data/a"])
    assert found.status is ArtifactStatus.VERIFIED
    assert (found.kind, found.id, found.time) == ("restic", "85b85801", SNAPSHOT_A)


def test_paths_are_compared_as_a_set() -> None:
    found = judge(RESTIC_014, SNAPSHOT_A, paths=BOTH)
    assert found.status is ArtifactStatus.VERIFIED
    assert found.id == "741a05f7"


def test_snapshot_older_than_the_run_is_stale_with_its_age() -> None:
    found = judge(RESTIC_014, SNAPSHOT_A + timedelta(days=3), paths=["/tmp/rr/data/a"])
    assert found.status is ArtifactStatus.STALE
    assert found.detail == (
        "restic exited 0 but the newest snapshot of /tmp/rr/data/a in the repository is 3 days old "
        "(taken before this run started)"
    )


def test_another_jobs_new_snapshot_does_not_prove_this_one() -> None:
    found = judge(RESTIC_014, SNAPSHOT_A, paths=["/srv"])
    assert found.status is ArtifactStatus.MISSING


def test_empty_repository_is_missing() -> None:
    found = judge("[]\n", SNAPSHOT_A)
    assert found.status is ArtifactStatus.MISSING
    assert found.detail is not None
    assert "no snapshot" in found.detail


@pytest.mark.parametrize("document", [RESTIC_014, RESTIC_014.split("},{", maxsplit=1)[0] + "}]"])
def test_without_the_jobs_paths_a_new_snapshot_proves_nothing(document: str) -> None:
    # Another job sharing the repository may have made it (fail closed).
    found = judge(document, SNAPSHOT_A - timedelta(seconds=5))
    assert found.status is ArtifactStatus.UNVERIFIED
    assert found.detail is not None
    assert "this job's paths are unknown" in found.detail


def test_without_the_jobs_paths_nothing_new_at_all_is_still_stale() -> None:
    found = judge(RESTIC_014, SNAPSHOT_A + timedelta(days=3))
    assert found.status is ArtifactStatus.STALE


def test_backup_end_of_restic_017_is_preferred_over_the_start() -> None:
    document = (
        '[{"time":"2026-12-01T10:00:00.5+01:00","paths":["/home"],"id":"ab","short_id":"ab",'
        '"summary":{"backup_start":"2026-12-01T10:00:00.5+01:00",'
        '"backup_end":"2026-12-01T10:05:00.123456789+01:00"}}]'
    )
    found = judge(document, datetime(2026, 12, 1, 9, 1, tzinfo=UTC), paths=["/home"])
    assert found.status is ArtifactStatus.VERIFIED
    assert found.time == datetime(2026, 12, 1, 9, 5, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("stdout", ["", "not json", "{}", '[{"time": "x", "id": "a"}]', "[1]"])
def test_unreadable_answer_is_unverified(stdout: str) -> None:
    assert judge(stdout, SNAPSHOT_A).status is ArtifactStatus.UNVERIFIED


def test_failing_restic_is_unverified_with_its_error() -> None:
    found = judge("", SNAPSHOT_A, exit_status=1)
    assert found.status is ArtifactStatus.UNVERIFIED
    assert found.detail == "restic snapshots exited 1: Fatal: wrong password"


def test_direct_params_take_absolute_paths_after_backup() -> None:
    argv = ["/usr/bin/restic", "backup", "--cache-dir=/var/cache/x", "--tag", "etc", "/etc"]
    assert restic.direct_params("restic-backups-etc.service", argv) == {"paths": ["/etc"]}
    assert restic.direct_params("restic-backups-etc.service", ["/bin/sh", "-c", "true"]) == {}


def test_argv_lists_the_newest_snapshot_per_path_set_of_this_host() -> None:
    assert restic.argv({"host": "forge", "restic": "restic-home"}) == [
        "restic-home",
        "--no-cache",
        "snapshots",
        "--json",
        "--latest",
        "1",
        "--host",
        "forge",
    ]
    assert restic.argv({})[:2] == ["sh", "-c"]
