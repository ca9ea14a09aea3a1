"""`history`: saved reports and the audit log read back, newest first, never crashing on a bad
file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from deploy_guard.cli import cli
from deploy_guard.deploy.override import OverrideRecord, write_audit
from deploy_guard.errors import ExitCode
from deploy_guard.model import (
    DeployOutcome,
    DeployStep,
    HostResult,
    Outcome,
    Override,
    RunReport,
    StageOutcome,
    UnitResult,
)
from deploy_guard.observe.history import entry_from_report, load_history
from deploy_guard.observe.report import guard_failures, run_json, save_run, state_dir
from tests import builders

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
FAILED_UNIT = UnitResult("restic-backups-home.service", Outcome.FAILED, reason="exit-code")
GOOD_UNIT = UnitResult("sanoid.service", Outcome.SUCCEEDED)


def host(name: str, code: ExitCode = ExitCode.OK) -> HostResult:
    unit = GOOD_UNIT if code is ExitCode.OK else FAILED_UNIT
    outcome = StageOutcome.SUCCEEDED if code is ExitCode.OK else StageOutcome.FAILED
    return builders.host_result(
        name, code, builders.stage_result("applications", unit, outcome=outcome)
    )


def run_report(minutes: int, command: str, *hosts: HostResult, **changes: Any) -> RunReport:
    """A run ``minutes`` after T0 that took 30 s, its id made of both."""
    started = T0 + timedelta(minutes=minutes)
    values: dict[str, Any] = {
        "run_id": f"20261127T10{minutes:02d}00Z-{command[:3]}000",
        "command": command,
        "started_at": started,
        "finished_at": started + timedelta(seconds=30),
    }
    return builders.run_report(*hosts, **(values | changes))


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    """An environment whose XDG_STATE_HOME is empty and private to the test."""
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


def history(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["history", *args], env=env, catch_exceptions=False)


def runs(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = history(env, *args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["schema"], document["command"]) == (1, "history")
    return list(document["runs"])


def override_by(reason: str, minutes: int) -> Override:
    return Override(reason, "alice", T0 + timedelta(minutes=minutes, seconds=20))


def test_runs_are_listed_newest_first_with_their_outcome(state: dict[str, str]) -> None:
    save_run(run_report(1, "run", host("forge")), state)
    save_run(run_report(3, "run", host("forge", ExitCode.PARTIAL)), state)
    save_run(run_report(2, "hook", host("web-1", ExitCode.CRITICAL), exit_code=ExitCode.CRITICAL),
             state)  # fmt: skip

    listed = runs(state)

    assert [entry["started_at"] for entry in listed] == [
        "2026-11-27T10:03:00Z", "2026-11-27T10:02:00Z", "2026-11-27T10:01:00Z"
    ]  # fmt: skip
    assert [(e["command"], e["exit_code"], e["outcome"]) for e in listed] == [
        ("run", 1, "partial failure"),
        ("hook", 2, "critical failure; push blocked"),
        ("run", 0, "all backups succeeded"),
    ]
    assert listed[0]["failures"] == [{"host": "forge", "stage": "applications",
                                      "unit": "restic-backups-home.service", "outcome": "failed",
                                      "reason": "exit-code"}]  # fmt: skip
    assert listed[2]["failures"] == []


def test_json_entries_carry_every_documented_field(state: dict[str, str]) -> None:
    path = save_run(run_report(1, "run", host("forge")), state)
    (entry,) = runs(state)
    assert entry == {
        "run_id": "20261127T100100Z-run000",
        "command": "run",
        "started_at": "2026-11-27T10:01:00Z",
        "finished_at": "2026-11-27T10:01:30Z",
        "hosts": ["forge"],
        "exit_code": 0,
        "outcome": "all backups succeeded",
        "override": None,
        "failures": [],
        "report": str(path),
    }


def test_host_filter_and_limit(state: dict[str, str]) -> None:
    for minute in range(1, 6):
        save_run(run_report(minute, "run", host("forge" if minute % 2 else "web-1")), state)
    assert [e["started_at"][11:16] for e in runs(state, "--host", "forge")] == [
        "10:05", "10:03", "10:01"
    ]  # fmt: skip
    assert [e["started_at"][11:16] for e in runs(state, "--host", "web-*", "--limit", "1")] == [
        "10:04"
    ]
    assert len(runs(state, "--limit", "2")) == 2
    assert len(runs(state, "--limit", "0")) == 5
    assert runs(state, "--host", "db-1") == []


def test_overrides_come_from_the_report_and_the_audit_log(state: dict[str, str]) -> None:
    failed = host("forge", ExitCode.PARTIAL)
    override = override_by("restic repo is being migrated, ticket #42", 7)
    deploy = DeployOutcome("command", (DeployStep(("true",), ("forge",), 0),), ("forge",))
    overridden = run_report(7, "apply", failed, exit_code=ExitCode.OK, override=override,
                            deploy=deploy)  # fmt: skip
    save_run(overridden, state)
    record = OverrideRecord(override, overridden.run_id, ("forge",), [], (("true",),))
    write_audit(record, state_dir(state))
    # An override whose report was never saved (or was deleted) still shows.
    orphan = OverrideRecord(override_by("hotfix", 9), "20261127T100900Z-lost00", ("web-1",),
                            [{"host": "web-1", "error": "no route"}], ())  # fmt: skip
    write_audit(orphan, state_dir(state))

    newest, older = runs(state)

    assert newest["run_id"] == "20261127T100900Z-lost00"
    assert (newest["command"], newest["exit_code"], newest["report"]) == (None, None, None)
    assert newest["override"] == {"reason": "hotfix", "by": "alice",
                                  "at": "2026-11-27T10:09:20Z", "audited": True}  # fmt: skip
    assert newest["failures"] == [{"host": "web-1", "error": "no route"}]
    assert older["override"]["reason"] == "restic repo is being migrated, ticket #42"
    assert older["override"]["audited"] is True
    assert older["outcome"] == "guard failed, overridden; deployed"

    text = history(state).stdout
    assert "override by alice: restic repo is being migrated, ticket #42 (audit log)" in text
    assert "apply  forge  exit 0 (guard failed, overridden; deployed)" in text


def test_corrupt_and_unreadable_files_are_skipped_with_a_warning(state: dict[str, str]) -> None:
    save_run(run_report(1, "run", host("forge")), state)
    directory = state_dir(state) / "runs"
    (directory / "truncated.json").write_text('{"schema": 1, "run_id": "x", "comm')
    (directory / "wrong.json").write_text(json.dumps({"run_id": "y", "command": "run"}))
    (directory / "list.json").write_text("[1, 2]")
    (directory / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (directory / "directory.json").mkdir()
    (state_dir(state) / "audit.jsonl").write_text('not json\n\n{"at": "yesterday"}\n')

    result = history(state, "--json")

    assert result.exit_code == 0
    assert [e["run_id"] for e in json.loads(result.stdout)["runs"]] == ["20261127T100100Z-run000"]
    for name in ("truncated.json", "wrong.json", "list.json", "binary.json", "directory.json"):
        assert f"{name}:" in result.stderr, name
    assert "audit.jsonl line 1" in result.stderr
    assert "audit.jsonl line 3" in result.stderr


def test_no_state_at_all_is_an_empty_history(state: dict[str, str]) -> None:
    assert runs(state) == []
    assert "no runs recorded" in history(state).stderr
    assert load_history(Path(state["XDG_STATE_HOME"]) / "deploy-guard") == ([], [])


def test_a_report_from_run_json_round_trips_into_an_entry() -> None:
    report = run_report(4, "apply", host("forge"), host("web-1", ExitCode.CRITICAL))
    entry = entry_from_report(json.loads(json.dumps(run_json(report))))
    assert entry.hosts == ("forge", "web-1")
    assert entry.started_at == T0 + timedelta(minutes=4)
    assert (entry.exit_code, entry.deployed, entry.override) == (2, False, None)


@pytest.mark.parametrize(
    "document",
    [
        {"run_id": "x", "command": "run", "started_at": "2026-11-27T10:00:00Z", "hosts": []},
        {"run_id": "x", "command": "run", "started_at": "soon", "exit_code": 0, "hosts": []},
        {"run_id": "x", "command": "run", "started_at": "2026-11-27T10:00:00Z", "exit_code": 0,
         "hosts": [{"name": "forge"}]},
        {"run_id": 7, "command": "run", "started_at": "2026-11-27T10:00:00Z", "exit_code": 0,
         "hosts": []},
    ],
)  # fmt: skip
def test_a_report_missing_what_history_needs_is_rejected(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"exit_code|started_at|host|run_id"):
        entry_from_report(document)


def test_a_saved_report_lists_the_failures_the_override_record_lists() -> None:
    db = builders.host_result("db", ExitCode.CRITICAL, error="connection refused")
    report = run_report(3, "apply", host("forge", ExitCode.PARTIAL), host("web"), db)

    entry = entry_from_report(json.loads(json.dumps(run_json(report))))

    failed = {"host": "forge", "stage": "applications", "unit": "restic-backups-home.service"}
    expected = [
        failed | {"outcome": "failed", "reason": "exit-code"},
        {"host": "db", "error": "connection refused"},
    ]
    assert guard_failures(report) == expected
    assert list(entry.failures) == expected
