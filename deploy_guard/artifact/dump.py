"""Database dumps (`postgresqlBackup`, `postgresqlBackup-DB`, `mysql-backup`): every dump
file the module writes was modified after the run started and is not empty."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from deploy_guard.artifact.base import (
    Artifact,
    ArtifactStatus,
    CheckOutput,
    Params,
    age_text,
    tool_failed,
    unverified,
)

KIND: Final = "dump"
POSTGRESQL_LOCATION: Final = "/var/backup/postgresql"  # services.postgresqlBackup.location
MYSQL_LOCATION: Final = "/var/backup/mysql"  # services.mysqlBackup.location

# Globs are expanded by the host's shell (IFS empty: no word splitting, only globbing); a
# glob that matches nothing stays literal and `[ -e ]` drops it.
_SCRIPT: Final = (
    'IFS=; for pattern in "$@"; do for file in $pattern; do '
    '[ -e "$file" ] && stat -L -c "%s %Y %n" -- "$file"; done; done; exit 0'
)


def argv(params: Params) -> list[str]:
    return ["sh", "-c", _SCRIPT, "sh", *[str(pattern) for pattern in params.get("files", [])]]


def describe(params: Params) -> str:
    return (
        f"dump files {' '.join(params.get('files', []))} modified after the run started, not empty"
    )


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    """The default locations of the NixOS modules: `postgresqlBackup.service` dumps all
    databases to all.sql*, `postgresqlBackup-DB.service` to DB.sql*, mysql-backup one file
    per database (which ones is not known here: every file in the location)."""
    stem = unit.removesuffix(".service")
    if stem == "mysql-backup":
        return {"files": [f"{MYSQL_LOCATION}/*"]}
    database = stem.removeprefix("postgresqlBackup").removeprefix("-") or "all"
    return {"files": [f"{POSTGRESQL_LOCATION}/{database}.sql*"]}


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `stat -c '%s %Y %n'` lines (size, mtime in epoch seconds, name)."""
    if output.exit_status != 0:
        return tool_failed(KIND, "stat", output)
    files: list[tuple[int, datetime, str]] = []
    for line in output.stdout.splitlines():
        size_text, _, rest = line.partition(" ")
        mtime_text, _, path = rest.partition(" ")
        if not size_text.isdigit() or not mtime_text.isdigit() or not path:
            return unverified(KIND, f"cannot read stat's answer: {line!r}")
        files.append((int(size_text), datetime.fromtimestamp(int(mtime_text), UTC), path))
    patterns = " ".join(params.get("files", []))
    if not files:
        detail = f"the unit exited 0 but no dump file matches {patterns}"
        return Artifact(ArtifactStatus.MISSING, KIND, detail=detail)
    threshold = started_at.replace(microsecond=0)  # mtimes are read in whole seconds
    old = [item for item in files if item[1] < threshold]
    if old:
        _size, mtime, name = min(old, key=lambda item: item[1])
        age = age_text((started_at - mtime).total_seconds())
        return Artifact(
            ArtifactStatus.STALE,
            KIND,
            name,
            mtime,
            f"the unit exited 0 but {name} is {age} old (written before this run started)",
        )
    empty = [name for size, _mtime, name in files if size == 0]
    if empty:
        return Artifact(
            ArtifactStatus.MISSING,
            KIND,
            empty[0],
            detail=f"the unit exited 0 but {', '.join(empty)} is empty",
        )
    newest = max(files, key=lambda item: item[1])
    names = ", ".join(name for _size, _mtime, name in files)
    return Artifact(
        ArtifactStatus.VERIFIED, KIND, newest[2], newest[1], f"written by this run: {names}"
    )
