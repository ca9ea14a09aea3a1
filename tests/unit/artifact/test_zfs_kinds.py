"""sanoid and syncoid: judged from `zfs list -Hp -t snapshot -o name,creation` (name TAB
creation in epoch seconds: -p prints exact numbers, -H no header, tab-separated: OpenZFS 2.x).
Snapshot names follow sanoid's `autosnap_YYYY-MM-DD_HH:MM:SS_PERIOD` and syncoid 2.2's
`syncoid_HOST_YYYY-MM-DD:HH:MM:SS-GMT-05:00`, as printed by real sanoid/syncoid runs
(e.g. `send/test@syncoid_orion_2025-04-05:09:35:45-GMT-05:00` in a public syncoid log)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploy_guard.artifact import ArtifactStatus, CheckOutput, sanoid, syncoid

NOW = 1764619800  # 2025-12-01T20:10:00Z
HOUR = 3600
LISTING = (
    f"tank/data@autosnap_2025-12-01_19:00:01_hourly\t{NOW - 70 * 60}\n"
    f"tank/data@autosnap_2025-12-01_20:00:02_hourly\t{NOW - 10 * 60}\n"
    f"tank/home@autosnap_2025-11-30_23:59:01_daily\t{NOW - 20 * HOUR}\n"
    f"tank/data@syncoid_forge_2025-12-01:20:05:00-GMT00:00\t{NOW - 5 * 60}\n"
    f"tank/data@manual\t{NOW - 60}\n"
)
SANOID_CONF = """\
[tank/data]
\tuse_template = production
[tank/home]
\thourly = 0
\tdaily = 30
[tank/scratch]
\tautosnap = no
[template_production]
\tfrequently = 0
\thourly = 36
"""


def sanoid_judge(stdout: str, **params: object):  # type: ignore[no-untyped-def]
    started = datetime.fromtimestamp(NOW - 30, UTC)
    return sanoid.judge(CheckOutput(0, stdout), started, params)


def test_every_dataset_within_its_period_is_verified() -> None:
    found = sanoid_judge(
        f"{NOW}\n--- zfs\n{LISTING}", datasets={"tank/data": HOUR, "tank/home": 86400}
    )
    assert found.status is ArtifactStatus.VERIFIED
    assert found.id == "tank/home@autosnap_2025-11-30_23:59:01_daily"  # the oldest newest one


def test_a_dataset_past_its_period_is_stale() -> None:
    found = sanoid_judge(f"{NOW}\n--- zfs\n{LISTING}", datasets={"tank/home": HOUR})
    assert found.status is ArtifactStatus.STALE
    assert found.detail == (
        "sanoid exited 0 but the newest snapshot of tank/home@autosnap_2025-11-30_23:59:01_daily "
        "is 20h old (period 1h)"
    )


def test_a_dataset_without_a_sanoid_snapshot_is_missing() -> None:
    found = sanoid_judge(
        f"{NOW}\n--- zfs\n{LISTING}", datasets={"tank/data": HOUR, "tank/db": HOUR}
    )
    assert found.status is ArtifactStatus.MISSING
    assert found.detail == "sanoid exited 0 but tank/db has no sanoid snapshot"


def test_periods_come_from_sanoid_conf_without_the_module() -> None:
    assert sanoid.periods_from_config(SANOID_CONF) == {"tank/data": HOUR, "tank/home": 86400}
    found = sanoid_judge(f"{NOW}\n--- sanoid.conf\n{SANOID_CONF}--- zfs\n{LISTING}")
    assert found.status is ArtifactStatus.VERIFIED


def test_sanoid_defaults_and_frequent_period() -> None:
    assert sanoid.periods_from_config("[tank/a]\n") == {"tank/a": HOUR}  # hourly = 48
    conf = (
        "[tank/a]\nfrequently = 4\nfrequent_period = 5\n"
        "[tank/b]\nhourly = 0\ndaily = 0\nmonthly = 0\n"
    )
    assert sanoid.periods_from_config(conf) == {"tank/a": 300}


def test_no_managed_dataset_is_unverified() -> None:
    found = sanoid_judge(f"{NOW}\n--- sanoid.conf\n[tank/x]\nautosnap = no\n--- zfs\n")
    assert found.status is ArtifactStatus.UNVERIFIED


def test_sanoid_argv_reads_the_config_only_without_datasets() -> None:
    assert sanoid.argv({"datasets": {"tank": HOUR}})[-1] == ""
    assert sanoid.argv({})[-1] == sanoid.CONFIG_PATH
    assert sanoid.direct_params("sanoid.service", ["sanoid", "--cron", "--configdir=/etc/x/"]) == {
        "config": "/etc/x/sanoid.conf"
    }
    store = ["sanoid", "--cron", "--configdir", "/nix/store/abc-sanoid.d", "--verbose"]
    assert sanoid.direct_params("sanoid.service", store) == {
        "config": "/nix/store/abc-sanoid.d/sanoid.conf"
    }


def syncoid_judge(started: datetime, stdout: str = LISTING, **params: object):  # type: ignore[no-untyped-def]
    return syncoid.judge(CheckOutput(0, stdout), started, {"source": "tank/data", **params})


def test_sync_snapshot_created_after_the_start_is_verified() -> None:
    found = syncoid_judge(datetime.fromtimestamp(NOW - 6 * 60, UTC))
    assert found.status is ArtifactStatus.VERIFIED
    assert found.id == "tank/data@syncoid_forge_2025-12-01:20:05:00-GMT00:00"


def test_sync_snapshot_from_the_runs_first_second_counts() -> None:
    started = datetime.fromtimestamp(NOW - 5 * 60, UTC) + timedelta(milliseconds=700)
    assert syncoid_judge(started).status is ArtifactStatus.VERIFIED


def test_older_sync_snapshot_is_stale_and_none_is_missing() -> None:
    assert syncoid_judge(datetime.fromtimestamp(NOW, UTC)).status is ArtifactStatus.STALE
    found = syncoid_judge(
        datetime.fromtimestamp(NOW, UTC), stdout=LISTING.replace("syncoid_", "x_")
    )
    assert found.status is ArtifactStatus.MISSING


def test_no_sync_snap_and_remote_sources_cannot_be_proven() -> None:
    found = syncoid_judge(datetime.fromtimestamp(NOW, UTC), no_sync_snap=True)
    assert found.status is ArtifactStatus.UNVERIFIED
    assert found.detail is not None
    assert "--no-sync-snap" in found.detail
    remote = syncoid_judge(datetime.fromtimestamp(NOW, UTC), source="root@nas:tank/data")
    assert remote.status is ArtifactStatus.UNVERIFIED


def test_syncoid_direct_params_from_exec_start() -> None:
    argv = ["/bin/syncoid", "--sendoptions", "w", "--no-sync-snap", "tank/data", "backup/data"]
    assert syncoid.direct_params("syncoid-tank-data.service", argv) == {
        "no_sync_snap": True,
        "source": "tank/data",
    }
