"""The backup kinds table (deploy_guard/kinds.toml) gives the built-in stages and the proof
kind of each unit name exactly as they were written out by hand before it existed."""

from __future__ import annotations

import pytest

from deploy_guard import artifact
from deploy_guard.config import StageConfig, default_stages


def test_built_in_stages_are_the_ones_written_out_before_the_table() -> None:
    assert default_stages() == [
        StageConfig(name="snapshots", critical=True, timeout=300, units=["sanoid.service"]),
        StageConfig(
            name="replication",
            timeout=1800,
            units=["syncoid-*.service"],
            exclude=["*-replication-info.service", "*-target-reachability.service"],
        ),
        StageConfig(
            name="applications",
            timeout=3600,
            units=[
                "restic-backups-*.service",
                "restic-backup-*.service",
                "pgbackrest-*.service",
                "borgbackup-job-*.service",
                "postgresqlBackup*.service",
                "mysql-backup.service",
                "btrbk-*.service",
            ],
            exclude=["*-metrics.service", "*-stanza-create.service"],
        ),
    ]


@pytest.mark.parametrize(
    ("unit", "kind"),
    [
        ("restic-backups-home.service", "restic"),
        ("restic-backups-home-metrics.service", "restic"),
        ("restic-backup-home.service", None),
        ("restic-backups-.service", None),
        ("borgbackup-job-home.service", "borg"),
        ("borgbackup-repo-home.service", None),
        ("pgbackrest-main-full.service", "pgbackrest"),
        ("pgbackrest-main.service", None),
        ("pgbackrest-main-stanza-create.service", None),
        ("postgresqlBackup.service", "dump"),
        ("postgresqlBackup-app.service", "dump"),
        ("postgresqlBackupapp.service", None),
        ("mysql-backup.service", "dump"),
        ("sanoid.service", "sanoid"),
        ("syncoid-tank-data.service", "syncoid"),
        ("syncoid-tank-replication-info.service", None),
        ("syncoid-tank-target-reachability.service", None),
        ("btrbk-daily.service", None),
        ("zfs-snapshot-daily.service", None),
    ],
)
def test_proof_kind_of_each_unit_name(unit: str, kind: str | None) -> None:
    assert artifact.kind_for_unit(unit) == kind


def test_every_proof_kind_of_the_table_loads() -> None:
    kinds = {kind for _, kind in artifact.UNIT_KINDS}
    assert kinds == {"restic", "borg", "pgbackrest", "dump", "sanoid", "syncoid"}
    assert {artifact.load_kind(kind).KIND for kind in kinds} == kinds
    assert artifact.load_kind("command").KIND == "command"
    with pytest.raises(ValueError, match="unknown proof kind"):
        artifact.load_kind("btrbk")
