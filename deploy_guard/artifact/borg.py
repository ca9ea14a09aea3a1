"""borg (`borgbackup-job-NAME`): the newest archive of the job's repository (`borg list
--last 1 --json`), made after the run started."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from deploy_guard.artifact.base import (
    Artifact,
    Candidate,
    CheckOutput,
    Params,
    ProofParseError,
    newest_decision,
    parse_offset,
    parse_time,
    tool_failed,
    unverified,
)

KIND: Final = "borg"


def argv(params: Params) -> list[str]:
    """`date +%z` first: borg 1.x prints archive times in local time without an offset.

    The repository comes from the job's environment (BORG_REPO), or ``params["repo"]``;
    ``params["glob"]`` keeps only this job's archives when several jobs share a repository.
    """
    borg = str(params.get("borg", "borg"))
    extra: list[str] = []
    if params.get("glob"):
        extra += ["--glob-archives", str(params["glob"])]
    if params.get("repo"):
        extra.append(str(params["repo"]))
    return ["sh", "-c", 'date +%z; exec "$0" list --last 1 --json "$@"', borg, *extra]


def describe(params: Params) -> str:
    glob = f" matching {params['glob']}" if params.get("glob") else ""
    return f"borg: newest archive{glob} made after the run started"


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    """The NixOS module names archives `HOSTNAME-JOB-TIMESTAMP` (archiveBaseName's default):
    keep this job's, so that another job sharing the repository cannot prove this one."""
    job = unit.removesuffix(".service").removeprefix("borgbackup-job-")
    return {"glob": f"*-{job}-*"}


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `date +%z` followed by `borg list --last 1 --json` output."""
    if output.exit_status != 0:
        return tool_failed(KIND, "borg list", output)
    offset_line, _, document = output.stdout.partition("\n")
    try:
        offset = parse_offset(offset_line)
        data = json.loads(document or "null")
        archives = data.get("archives") if isinstance(data, dict) else None
        if not isinstance(archives, list):
            raise ProofParseError("no archive list")
        candidates = []
        for archive in archives:
            if not isinstance(archive, dict):
                raise ProofParseError("an archive that is not an object")
            name = archive.get("archive") or archive.get("name")
            time = parse_time(archive.get("start") or archive.get("time"), local_offset=offset)
            candidates.append(Candidate(str(name), time))
    except (json.JSONDecodeError, ProofParseError) as exc:
        return unverified(KIND, f"cannot read borg's answer: {exc}")
    return newest_decision(KIND, candidates, started_at, tool="borg", what="archive")
