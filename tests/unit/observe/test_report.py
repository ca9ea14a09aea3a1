"""The JSON documents: field names are a public interface (README "Report": later versions add
fields, never rename), so each test names every field of schema 1 it relies on."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from deploy_guard.errors import ExitCode
from deploy_guard.guard.engine import PlanResult
from deploy_guard.model import (
    BuildOutcome,
    DeployOutcome,
    DeployStep,
    Exclusion,
    HostPlan,
    HostResult,
    Outcome,
    RunReport,
    StageOutcome,
    StagePlan,
    StageResult,
    UnitResult,
)
from deploy_guard.observe.report import dumps, plan_json, run_json, save_run, state_dir
from tests import builders

STARTED = datetime(2026, 11, 27, 10, 15, 0, 123456, tzinfo=UTC)
FINISHED = STARTED + timedelta(minutes=3)
PARIS = timezone(timedelta(hours=1))


def unit_result(**changes: object) -> UnitResult:
    values: dict[str, object] = {
        "unit": "restic-backups-home.service",
        "outcome": Outcome.FAILED,
        "joined": True,
        "result": "exit-code",
        "exit_status": 3,
        "invocation_id": "0123456789abcdef0123456789abcdef",
        "started_at": STARTED,
        "finished_at": FINISHED,
        "log_tail": ("Fatal: repository is locked", "restic-backups-home.service: Failed"),
        "reason": "systemd result exit-code",
    }
    return UnitResult(**(values | changes))  # type: ignore[arg-type]


def report(*hosts: HostResult) -> RunReport:
    return builders.run_report(
        *hosts,
        run_id="20261127T101500Z-3f9a1c",
        started_at=STARTED,
        finished_at=FINISHED,
        exit_code=ExitCode.CRITICAL,
    )


WEB1 = HostResult(
    "web1",
    ExitCode.PARTIAL,
    (StageResult("applications", False, StageOutcome.FAILED, (unit_result(),), reason=None),),
)
DB1 = HostResult("db1", ExitCode.CRITICAL, error="db1: connection refused")


def test_run_document_has_the_public_fields() -> None:
    document = run_json(report(WEB1, DB1))

    assert {
        key: document[key]
        for key in ("schema", "run_id", "command", "started_at", "finished_at", "exit_code")
    } == {
        "schema": 1,
        "run_id": "20261127T101500Z-3f9a1c",
        "command": "run",
        "started_at": "2026-11-27T10:15:00.123Z",
        "finished_at": "2026-11-27T10:18:00.123Z",
        "exit_code": 2,
    }
    assert [host["host"] for host in document["hosts"]] == ["web1", "db1"]


def test_run_document_names_the_configuration_file_loaded() -> None:
    assert run_json(report(WEB1))["config_file"] is None  # the built-in defaults
    loaded = replace(report(WEB1), config_file="/srv/fleet/deploy-guard.toml")
    assert run_json(loaded)["config_file"] == "/srv/fleet/deploy-guard.toml"


def test_host_stage_and_unit_entries_have_the_public_fields() -> None:
    host = run_json(report(WEB1))["hosts"][0]

    assert {key: host[key] for key in ("host", "exit_code", "error", "warnings")} == {
        "host": "web1",
        "exit_code": 1,
        "error": None,
        "warnings": [],
    }
    stage = host["stages"][0]
    assert {key: stage[key] for key in ("name", "critical", "outcome", "reason")} == {
        "name": "applications",
        "critical": False,
        "outcome": "failed",
        "reason": None,
    }
    unit = stage["units"][0]
    schema_fields = (
        "unit", "outcome", "joined", "result", "exit_status", "invocation_id",
        "started_at", "finished_at", "log_tail", "reason",
    )  # fmt: skip
    assert {key: unit[key] for key in schema_fields} == {
        "unit": "restic-backups-home.service",
        "outcome": "failed",
        "joined": True,
        "result": "exit-code",
        "exit_status": 3,
        "invocation_id": "0123456789abcdef0123456789abcdef",
        "started_at": "2026-11-27T10:15:00.123Z",
        "finished_at": "2026-11-27T10:18:00.123Z",
        "log_tail": ["Fatal: repository is locked", "restic-backups-home.service: Failed"],
        "reason": "systemd result exit-code",
    }


def test_host_that_failed_before_any_stage_has_its_error_and_no_stages() -> None:
    host = run_json(report(DB1))["hosts"][0]

    assert host["error"] == "db1: connection refused"
    assert host["exit_code"] == 2
    assert host["stages"] == []


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (Outcome.SUCCEEDED, "succeeded"),
        (Outcome.FAILED, "failed"),
        (Outcome.TIMED_OUT, "timed-out"),
        (Outcome.SKIPPED, "skipped"),
        (Outcome.NOT_STARTED, "not-started"),
        (Outcome.UNKNOWN, "unknown"),
    ],
)
def test_unit_outcome_spelling(outcome: Outcome, text: str) -> None:
    host = HostResult(
        "web1",
        ExitCode.OK,
        (StageResult("s", False, StageOutcome.SUCCEEDED, (unit_result(outcome=outcome),)),),
    )

    assert run_json(report(host))["hosts"][0]["stages"][0]["units"][0]["outcome"] == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 27, 10, 15, tzinfo=UTC), "2026-11-27T10:15:00.000Z"),
        (datetime(2026, 11, 27, 11, 15, 0, 999999, tzinfo=PARIS), "2026-11-27T10:15:00.999Z"),
        (None, None),
    ],
)
def test_times_are_iso_8601_utc_with_z(value: datetime | None, text: str | None) -> None:
    unit = unit_result(started_at=value, finished_at=value)
    host = HostResult("h", ExitCode.OK, (StageResult("s", False, StageOutcome.FAILED, (unit,)),))

    document = run_json(report(host))

    assert document["hosts"][0]["stages"][0]["units"][0]["started_at"] == text


def test_unit_that_never_ran_has_nulls_not_guesses() -> None:
    unit = UnitResult("sanoid.service", Outcome.NOT_STARTED, reason="critical stage failed")
    host = HostResult("h", ExitCode.CRITICAL, (StageResult("s", True, StageOutcome.NOT_STARTED,
                                                           (unit,)),))  # fmt: skip

    entry = run_json(report(host))["hosts"][0]["stages"][0]["units"][0]

    assert entry["outcome"] == "not-started"
    assert entry["joined"] is False
    assert [entry[key] for key in ("result", "exit_status", "invocation_id", "started_at")] == [
        None,
        None,
        None,
        None,
    ]
    assert entry["log_tail"] == []


def test_plan_document_fields() -> None:
    stage = StagePlan(
        "replication",
        False,
        1800.0,
        2,
        False,
        ("syncoid-tank-data.service",),
        (Exclusion("syncoid-@.service", "template unit (needs an instance name)"),),
        ("borgbackup-job-*.service",),
    )
    plans = [
        PlanResult("web1", HostPlan("web1", (stage,)), proofs={"syncoid-tank-data.service": "P"}),
        PlanResult("db1", None, "db1: host key changed"),
    ]

    document = plan_json(plans)

    assert document == {
        "schema": 1,
        "command": "plan",
        "hosts": [
            {
                "host": "web1",
                "error": None,
                "preflight": [],
                "stages": [
                    {
                        "name": "replication",
                        "critical": False,
                        "timeout_s": 1800.0,
                        "max_parallel": 2,
                        "source": "patterns",
                        "units": [
                            {
                                "unit": "syncoid-tank-data.service",
                                "source": "patterns",
                                "proof": "P",
                            },
                        ],
                        "excluded": [
                            {
                                "unit": "syncoid-@.service",
                                "reason": "template unit (needs an instance name)",
                            }
                        ],
                        "unmatched": ["borgbackup-job-*.service"],
                    }
                ],
            },
            {"host": "db1", "error": "db1: host key changed", "preflight": [], "stages": []},
        ],
    }


def test_plan_document_names_both_destinations_of_each_host_when_given() -> None:
    plans = [PlanResult("forge", HostPlan("forge", ())), PlanResult("db1", None, "refused")]
    destinations = {"forge": ("deploy-guard@forge.lan", "root@forge.lan")}

    hosts = plan_json(plans, destinations)["hosts"]

    assert hosts[0]["guard_destination"] == "deploy-guard@forge.lan"
    assert hosts[0]["deploy_destination"] == "root@forge.lan"
    assert "guard_destination" not in hosts[1]
    assert "guard_destination" not in plan_json(plans)["hosts"][0]


def test_deploy_document_records_the_build_and_its_duration() -> None:
    build = BuildOutcome(
        (DeployStep(("nixos-rebuild", "build", "--flake", ".#forge"), ("forge",), 0),
         DeployStep(("nixos-rebuild", "build", "--flake", ".#web"), ("web",), 1)),
        12.34567,
    )  # fmt: skip
    deploy = DeployOutcome("nixos-rebuild", (), (), ("forge", "web"), True, build=build)
    document = run_json(RunReport("r", "apply", STARTED, FINISHED, ExitCode.DEPLOY_FAILED,
                                  deploy=deploy))  # fmt: skip

    assert document["deploy"]["build"] == {
        "duration_s": 12.346,
        "exit_code": 1,
        "steps": [
            {"command": ["nixos-rebuild", "build", "--flake", ".#forge"], "hosts": ["forge"],
             "exit_code": 0},
            {"command": ["nixos-rebuild", "build", "--flake", ".#web"], "hosts": ["web"],
             "exit_code": 1},
        ],
    }  # fmt: skip
    without = DeployOutcome("command", (DeployStep(("true",), ("forge",), 0),))
    assert run_json(RunReport("r", "apply", STARTED, FINISHED, ExitCode.OK,
                              deploy=without))["deploy"]["build"] is None  # fmt: skip


def test_dumps_is_json_with_a_final_newline_and_unicode_kept() -> None:
    text = dumps({"log_tail": ["snapshot “daily” failed"]})

    assert text.endswith("}\n")
    assert json.loads(text) == {"log_tail": ["snapshot “daily” failed"]}
    assert "“daily”" in text


def test_saved_run_is_private_and_named_after_the_run_id(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}

    path = save_run(report(WEB1), env)

    assert path == tmp_path / "state" / "deploy-guard" / "runs" / "20261127T101500Z-3f9a1c.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert json.loads(path.read_text(encoding="utf-8")) == run_json(report(WEB1))
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_saved_run_replaces_an_earlier_file_with_the_same_id(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    save_run(report(DB1), env)

    path = save_run(report(WEB1), env)

    assert json.loads(path.read_text(encoding="utf-8"))["hosts"][0]["host"] == "web1"


def test_state_directory_defaults_to_home_local_state(tmp_path: Path) -> None:
    assert state_dir({"HOME": str(tmp_path)}) == tmp_path / ".local" / "state" / "deploy-guard"
    assert state_dir({"HOME": str(tmp_path), "XDG_STATE_HOME": ""}) == (
        tmp_path / ".local" / "state" / "deploy-guard"
    )
