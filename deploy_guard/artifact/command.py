"""Any other backup: a command from the configuration (`[[stages]] verify`, or
`[proof.commands]` per unit) that prints JSON `{"time": ..., "id": ...}` about the newest
artifact. It runs with DEPLOY_GUARD_UNIT and DEPLOY_GUARD_RUN_STARTED (epoch seconds) set."""

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

KIND: Final = "command"


def argv(params: Params) -> list[str]:
    return [
        "env",
        f"DEPLOY_GUARD_UNIT={params.get('unit', '')}",
        f"DEPLOY_GUARD_RUN_STARTED={params.get('run_started', '')}",
        "sh",
        "-c",
        str(params.get("command", "")),
    ]


def describe(params: Params) -> str:
    return f"command: {params.get('command')}"


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    return {}


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from the command's JSON: `time` null or absent means there is no artifact."""
    if output.exit_status != 0:
        return tool_failed(KIND, "the verify command", output)
    lines = [line for line in output.stdout.splitlines() if line.strip()]
    try:
        data: Any = json.loads(lines[-1]) if lines else None
        if not isinstance(data, dict):
            raise ProofParseError('expected {"time": ..., "id": ...}')
        if data.get("time") is None:
            return Artifact(
                ArtifactStatus.MISSING, KIND, detail="the verify command reports no artifact"
            )
        candidate = Candidate(str(data.get("id") or "?"), parse_time(data["time"]))
    except (json.JSONDecodeError, ProofParseError) as exc:
        return unverified(KIND, f"cannot read the verify command's answer: {exc}")
    return newest_decision(
        KIND,
        [candidate],
        started_at,
        tool="the backup",
        what="artifact",
        where="the verify command reports",
    )
