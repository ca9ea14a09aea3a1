"""The sample backup units: NixOS unit names and types, stand-ins where ZFS or PostgreSQL
would be needed, and real restic backups."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

UNITS_DIRECTORY: Final = Path(__file__).parent / "units"
HELPER_DIRECTORY: Final = "usr/local/lib/deploy-guard-testbed"

BACKUP_UNITS: Final = (
    "sanoid.service",
    "syncoid-tank-data.service",
    "syncoid-tank-home.service",
    "restic-backups-home.service",
    "restic-backups-etc.service",
    "pgbackrest-main-full.service",
)
HELPER_UNITS: Final = (
    "syncoid-tank-data-replication-info.service",
    "syncoid-nas-target-reachability.service",
    "pgbackrest-main-stanza-create.service",
)
TIMERS: Final = ("sanoid.timer", "syncoid-tank-data.timer", "restic-backups-home.timer")


def install_sample_units(root: Path) -> None:
    """Copy the sample units and their helper scripts into a host's root before it boots.

    Timers are enabled the way NixOS does it, with a symlink in timers.target.wants, so the
    timed services are loaded at boot while the others stay unloaded until started.
    """
    unit_directory = root / "etc/systemd/system"
    wants_directory = unit_directory / "timers.target.wants"
    wants_directory.mkdir(parents=True, exist_ok=True)
    for unit_name in (*BACKUP_UNITS, *HELPER_UNITS, *TIMERS):
        shutil.copyfile(UNITS_DIRECTORY / unit_name, unit_directory / unit_name)
    for timer_name in TIMERS:
        (wants_directory / timer_name).symlink_to(f"/etc/systemd/system/{timer_name}")
    helper_directory = root / HELPER_DIRECTORY
    helper_directory.mkdir(parents=True, exist_ok=True)
    for script in UNITS_DIRECTORY.glob("*.sh"):
        shutil.copyfile(script, helper_directory / script.name)
        (helper_directory / script.name).chmod(0o755)
