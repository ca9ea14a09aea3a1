"""pgBackRest (`pgbackrest-S-J`): the stanza's newest backup of the job's type stopped after
the run started (`pgbackrest info --output=json --stanza=S`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from deploy_guard.artifact.base import (
    Artifact,
    ArtifactStatus,
    Candidate,
    CheckOutput,
    Params,
    ProofParseError,
    newest_decision,
    parse_time,
    tool_failed,
    unverified,
)

KIND: Final = "pgbackrest"
BACKUP_TYPES: Final = ("full", "diff", "incr")


def argv(params: Params) -> list[str]:
    return [
        str(params.get("pgbackrest", "pgbackrest")),
        "info",
        "--output=json",
        f"--stanza={params.get('stanza', '')}",
    ]


def describe(params: Params) -> str:
    kind = params.get("type") or "any type"
    stanza = params.get("stanza")
    return f"pgBackRest: newest {kind} backup of stanza {stanza} stopped after the run started"


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    """`pgbackrest-S-J.service`: the stanza and job from the name, the type from the
    ExecStart's `--type=` (or the job name when it is a type, as in the NixOS examples)."""
    stem = unit.removesuffix(".service").removeprefix("pgbackrest-")
    stanza, _, job = stem.rpartition("-")
    params: dict[str, Any] = {"stanza": stanza or stem}
    for arg in exec_argv:
        if arg.startswith("--type=") and arg.removeprefix("--type=") in BACKUP_TYPES:
            params["type"] = arg.removeprefix("--type=")
    if "type" not in params and job in BACKUP_TYPES:
        params["type"] = job
    return params


def _backups(data: Any, stanza: str, backup_type: str | None) -> tuple[list[Candidate], int]:
    if not isinstance(data, list):
        raise ProofParseError("not a JSON list of stanzas")
    entry = next(
        (item for item in data if isinstance(item, dict) and item.get("name") == stanza), None
    )
    if entry is None:
        raise ProofParseError(f"no stanza {stanza!r} in the answer")
    candidates, errored = [], 0
    for backup in entry.get("backup") or []:
        if not isinstance(backup, dict):
            raise ProofParseError("a backup that is not an object")
        if backup_type and backup.get("type") != backup_type:
            continue
        if backup.get("error") is True:  # pgBackRest 2.36+: page checksum errors found
            errored += 1
            continue
        stamp = backup.get("timestamp")
        stop = stamp.get("stop") if isinstance(stamp, dict) else None
        candidates.append(Candidate(str(backup.get("label")), parse_time(stop)))
    return candidates, errored


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `pgbackrest info --output=json` output."""
    if output.exit_status != 0:
        return tool_failed(KIND, "pgbackrest info", output)
    stanza = str(params.get("stanza", ""))
    backup_type = params.get("type")
    try:
        candidates, errored = _backups(json.loads(output.stdout or "null"), stanza, backup_type)
    except (json.JSONDecodeError, ProofParseError) as exc:
        return unverified(KIND, f"cannot read pgBackRest's answer: {exc}")
    what = f"{backup_type} backup" if backup_type else "backup"
    artifact = newest_decision(
        KIND, candidates, started_at, tool="pgbackrest", what=what, where=f"of stanza {stanza}"
    )
    if errored and artifact.status is not ArtifactStatus.VERIFIED:
        note = f"; {errored} backup(s) recorded with errors were not counted"
        return Artifact(
            artifact.status, KIND, artifact.id, artifact.time, (artifact.detail or "") + note
        )
    return artifact
