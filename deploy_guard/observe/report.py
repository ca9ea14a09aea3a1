"""The JSON documents (`--json`, saved runs). Field names are a public interface: later
versions add fields, never rename them (README, "Report schema")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from deploy_guard.artifact.base import Artifact
from deploy_guard.deploy.verify import verification_json
from deploy_guard.guard.engine import PlanResult
from deploy_guard.guard.preflight import preflight_json
from deploy_guard.model import (
    BuildOutcome,
    DeployOutcome,
    Failure,
    HostResult,
    Outcome,
    Override,
    RunReport,
    StageResult,
    UnitResult,
)
from deploy_guard.statefiles import private_directory, write_private
from deploy_guard.transport.base import quote_argv

SCHEMA_VERSION: Final = 1
Json = dict[str, Any]


def time_text(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def artifact_json(found: Artifact | None) -> Json | None:
    """Stage 4's proof of a unit's backup (README, "Report schema": `artifact`)."""
    if found is None:
        return None
    return {
        "status": found.status.value,
        "kind": found.kind,
        "id": found.id,
        "time": time_text(found.time),
        "detail": found.detail,
    }


def unit_json(unit: UnitResult) -> Json:
    return {
        "unit": unit.unit,
        "outcome": unit.outcome.value,
        "joined": unit.joined,
        "result": unit.result,
        "exit_status": unit.exit_status,
        "invocation_id": unit.invocation_id,
        "started_at": time_text(unit.started_at),
        "finished_at": time_text(unit.finished_at),
        "log_tail": list(unit.log_tail),
        "reason": unit.reason,
        "age_s": unit.age_s,
        "artifact": artifact_json(unit.artifact),
    }


def stage_json(stage: StageResult) -> Json:
    return {
        "name": stage.name,
        "critical": stage.critical,
        "outcome": stage.outcome.value,
        "reason": stage.reason,
        "units": [unit_json(unit) for unit in stage.units],
    }


def host_json(host: HostResult) -> Json:
    return {
        "host": host.host,
        "exit_code": int(host.exit_code),
        "error": host.error,
        "warnings": list(host.warnings),
        "reconnects": host.reconnects,
        "boot_ids": list(host.boot_ids),
        "preflight": preflight_json(host.preflight) if host.preflight else [],
        "verify": verification_json(host.verification) if host.verification else None,
        "stages": [stage_json(stage) for stage in host.stages],
    }


def deploy_json(deploy: DeployOutcome | None) -> Json | None:
    if deploy is None:
        return None
    return {
        "tool": deploy.tool,
        "command": "; ".join(quote_argv(step.argv) for step in deploy.steps),
        "exit_code": deploy.exit_code,
        "refused": deploy.refused,
        "hosts": list(deploy.deployed_hosts),
        "skipped_hosts": list(deploy.skipped_hosts),
        "steps": [
            {"command": list(step.argv), "hosts": list(step.hosts), "exit_code": step.exit_code}
            for step in deploy.steps
        ],
        "build": build_json(deploy.build),
    }


def build_json(build: BuildOutcome | None) -> Json | None:
    if build is None:
        return None
    return {
        "duration_s": round(build.duration_s, 3),
        "exit_code": build.exit_code,
        "steps": [
            {"command": list(step.argv), "hosts": list(step.hosts), "exit_code": step.exit_code}
            for step in build.steps
        ],
    }


def override_json(override: Override | None) -> Json | None:
    if override is None:
        return None
    return {"reason": override.reason, "by": override.by, "at": time_text(override.at)}


def run_json(report: RunReport) -> Json:
    return {
        "schema": SCHEMA_VERSION,
        "run_id": report.run_id,
        "command": report.command,
        "started_at": time_text(report.started_at),
        "finished_at": time_text(report.finished_at),
        "exit_code": int(report.exit_code),
        "hosts": [host_json(host) for host in report.hosts],
        "override": override_json(report.override),
        "deploy": deploy_json(report.deploy),
        "warnings": list(report.warnings),
        "config_file": report.config_file,
    }


def plan_json(
    plans: Sequence[PlanResult], destinations: Mapping[str, tuple[str, str]] | None = None
) -> Json:
    """`plan`; ``destinations``: each host's guard and deploy destination (by host)."""
    hosts = []
    for result in plans:
        stages = []
        for stage in result.plan.stages if result.plan else ():
            stages.append(
                {
                    "name": stage.name,
                    "critical": stage.critical,
                    "timeout_s": stage.timeout_s,
                    "max_parallel": stage.max_parallel,
                    "source": stage.source,
                    "units": [
                        {
                            "unit": unit,
                            "source": stage.source,
                            "proof": result.proofs.get(unit),
                        }
                        for unit in stage.units
                    ],
                    "excluded": [{"unit": e.unit, "reason": e.reason} for e in stage.excluded],
                    "unmatched": list(stage.unmatched),
                }
            )
        preflight = preflight_json(result.preflight) if result.preflight else []
        entry = {
            "host": result.host,
            "error": result.error,
            "preflight": preflight,
            "stages": stages,
        }
        if destinations is not None and result.host in destinations:
            guard, deploy = destinations[result.host]
            entry |= {"guard_destination": guard, "deploy_destination": deploy}
        hosts.append(entry)
    return {"schema": SCHEMA_VERSION, "command": "plan", "hosts": hosts}


def dumps(document: Json) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def state_dir(env: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/deploy-guard (default ~/.local/state/deploy-guard)."""
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local/state"
    )
    return Path(base) / "deploy-guard"


def save_run(report: RunReport, env: Mapping[str, str]) -> Path:
    """Write the report to runs/RUN_ID.json atomically, created 0600 in 0700 directories.

    Raises:
        OSError: the state directory cannot be written.
    """
    state = state_dir(env)
    runs = state / "runs"
    private_directory(runs, up_to=state.parent)
    path = runs / f"{report.run_id}.json"
    write_private(path, dumps(run_json(report)))
    return path


def run_failures(hosts: Iterable[Mapping[str, Any]]) -> list[Failure]:
    """What failed in a run, in the audit record's `failures` shape: host errors and every unit
    that did not succeed, from the report document's ``hosts`` (`host_json`, or a saved
    report read back by `history`).

    Raises:
        ValueError: a stage or unit of a document read back is not a JSON object.
    """
    success = {outcome.value for outcome in Outcome if outcome.is_success}
    failures: list[Failure] = []
    for host in hosts:
        if host.get("error"):
            failures.append({"host": host["host"], "error": str(host["error"])})
        for stage in host.get("stages") or ():
            for unit in _object(stage, "a stage").get("units") or ():
                outcome = str(_object(unit, "a unit").get("outcome"))
                if outcome not in success:
                    failures.append(
                        {
                            "host": host["host"],
                            "stage": stage.get("name"),
                            "unit": unit.get("unit"),
                            "outcome": outcome,
                            "reason": unit.get("reason"),
                        }
                    )
    return failures


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return value


def guard_failures(report: RunReport) -> list[Failure]:
    """What failed in the guard run ``report``, for the audit record (`run_failures`)."""
    return run_failures(host_json(host) for host in report.hosts)
