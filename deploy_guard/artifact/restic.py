"""restic (`restic-backups-NAME`): the repository's newest snapshot of this host, made after
the run started (`restic snapshots --json --latest 1 --host H`)."""

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

KIND: Final = "restic"


def argv(params: Params) -> list[str]:
    """The listing command. ``host`` defaults to the host's own name, as restic's does.

    `--latest 1` keeps the newest snapshot of each set of paths; the judge picks this
    job's. `--no-cache`: a proof must not write a cache as whoever runs it.
    """
    restic = str(params.get("restic", "restic"))
    host = params.get("host")
    if host:
        return [restic, "--no-cache", "snapshots", "--json", "--latest", "1", "--host", str(host)]
    script = 'exec "$0" --no-cache snapshots --json --latest 1 --host "$(uname -n)"'
    return ["sh", "-c", script, restic]


def describe(params: Params) -> str:
    paths = params.get("paths")
    where = f" of {' '.join(paths)}" if paths else ""
    return f"restic: newest snapshot{where} of this host made after the run started"


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    """Without the NixOS module: the paths are the absolute paths given to `restic backup`
    in the unit's ExecStart (a NixOS unit passes them in a file: then none are known)."""
    if "backup" not in exec_argv:
        return {}
    after = list(exec_argv)[list(exec_argv).index("backup") + 1 :]
    paths = sorted(arg for arg in after if arg.startswith("/"))
    return {"paths": paths} if paths else {}


def _snapshot(item: Any) -> tuple[Candidate, tuple[str, ...]]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ProofParseError("a snapshot without an id")
    summary = item.get("summary")
    # restic 0.17+ records when the backup ended; older ones only when it started.
    ended = summary.get("backup_end") if isinstance(summary, dict) else None
    time = parse_time(ended or item.get("time"))
    paths = item.get("paths") or []
    if not isinstance(paths, list):
        raise ProofParseError("snapshot paths are not a list")
    short = item.get("short_id")
    return Candidate(short if isinstance(short, str) else item["id"][:8], time), tuple(
        sorted(str(path) for path in paths)
    )


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `restic snapshots --json` output."""
    if output.exit_status != 0:
        return tool_failed(KIND, "restic snapshots", output)
    try:
        data = json.loads(output.stdout or "null")
        if not isinstance(data, list):
            raise ProofParseError("not a JSON list of snapshots")
        snapshots = [_snapshot(item) for item in data]
    except (json.JSONDecodeError, ProofParseError) as exc:
        return unverified(KIND, f"cannot read restic's answer: {exc}")
    wanted = params.get("paths")
    if wanted:
        key = tuple(sorted(str(path) for path in wanted))
        candidates = [candidate for candidate, paths in snapshots if paths == key]
        where = f"of {' '.join(key)} in the repository"
        return newest_decision(
            KIND, candidates, started_at, tool="restic", what="snapshot", where=where
        )
    # This job's paths are unknown: another job sharing the repository may have made any
    # new snapshot, so only "nothing at all" and "nothing new at all" can be told.
    everything = [candidate for candidate, _paths in snapshots]
    decision = newest_decision(KIND, everything, started_at, tool="restic", what="snapshot")
    if decision.status is not ArtifactStatus.VERIFIED:
        return decision
    groups = sorted({" ".join(paths) for _candidate, paths in snapshots})
    return unverified(
        KIND,
        f"the repository has a snapshot made since the run started ({decision.id}, of "
        f"{'; '.join(groups)}), but this job's paths are unknown: whose it is cannot be told",
    )
