"""`apply` below the CLI: the gate, the override record, and running the deploy commands.

`decide_gate` and the record are pure and table-tested. `run_deploy` runs real small `sh`
commands that leave marker files, so order, stopping and overlap are read from what the
commands did, never from how long they took.
"""

from __future__ import annotations

import json
import shlex
import stat
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import create_autospec

import pytest

from deploy_guard.deploy.gate import GateDecision, decide_gate
from deploy_guard.deploy.override import (
    AUDIT_FILE,
    OverrideNotRecorded,
    OverrideRecord,
    journal_override,
    write_audit,
)
from deploy_guard.deploy.runner import deploy_environment, run_deploy
from deploy_guard.deploy.tools import DeployCommand, DeployPlan
from deploy_guard.errors import CommandFailed, ExitCode, HostUnreachable
from deploy_guard.model import (
    DeployStep,
    Outcome,
    Override,
    RunReport,
    StageOutcome,
)
from deploy_guard.observe.report import guard_failures
from deploy_guard.systemd import files
from deploy_guard.transport.base import CommandResult, Transport
from tests import builders
from tests.builders import host_result, stage_result, unit_result

OK, PARTIAL, CRITICAL = ExitCode.OK, ExitCode.PARTIAL, ExitCode.CRITICAL
STARTED = datetime(2026, 11, 27, 10, 15, 0, 123456, tzinfo=UTC)
RUN_ID = "20261127T101500Z-3f9a1c"


def run_report(*codes: tuple[str, ExitCode], interrupted: bool = False) -> RunReport:
    """A guard run of hosts by name and exit code; Ctrl-C makes the run's code 130."""
    return builders.run_report(
        *(builders.host_result(name, code) for name, code in codes),
        run_id=RUN_ID,
        command="apply",
        started_at=STARTED,
        finished_at=STARTED + timedelta(minutes=3),
        exit_code=ExitCode.INTERRUPTED if interrupted else None,
    )


# -- decide_gate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "keep_going", "override", "expected"),
    [
        # Every guard passed: deploy them all.
        ([("forge", OK), ("web", OK)], False, None,
         GateDecision(("forge", "web"), (), False, False, OK)),
        # One failed: refused, with the worst guard code.
        ([("forge", OK), ("web", PARTIAL)], False, None,
         GateDecision((), ("web",), True, False, PARTIAL)),
        ([("forge", OK), ("web", CRITICAL)], False, None,
         GateDecision((), ("web",), True, False, CRITICAL)),
        ([("forge", PARTIAL), ("web", CRITICAL)], False, None,
         GateDecision((), ("forge", "web"), True, False, CRITICAL)),
        # A host whose configuration is broken (exit 3) keeps its code.
        ([("forge", OK), ("web", ExitCode.CONFIG)], False, None,
         GateDecision((), ("web",), True, False, ExitCode.CONFIG)),
        # --keep-going: deploy those that passed, skip the others, exit at least 1.
        ([("forge", OK), ("web", PARTIAL)], True, None,
         GateDecision(("forge",), ("web",), False, False, PARTIAL)),
        ([("forge", OK), ("web", CRITICAL), ("db", OK)], True, None,
         GateDecision(("forge", "db"), ("web",), False, False, CRITICAL)),
        # --keep-going with nothing that passed is a refusal.
        ([("forge", PARTIAL), ("web", PARTIAL)], True, None,
         GateDecision((), ("forge", "web"), True, False, PARTIAL)),
        ([("forge", CRITICAL)], True, None,
         GateDecision((), ("forge",), True, False, CRITICAL)),
        # --keep-going when everything passed changes nothing.
        ([("forge", OK)], True, None, GateDecision(("forge",), (), False, False, OK)),
        # --override after a failure: every host is deployed, on the record.
        ([("forge", CRITICAL)], False, "restic repo migration, ticket #42",
         GateDecision(("forge",), (), False, True, OK)),
        # It wins over --keep-going: nothing is skipped.
        ([("forge", OK), ("web", PARTIAL)], True, "ticket #42",
         GateDecision(("forge", "web"), (), False, True, OK)),
        # An override with nothing to override is not recorded as one.
        ([("forge", OK)], False, "ticket #42", GateDecision(("forge",), (), False, False, OK)),
    ],
)  # fmt: skip
def test_gate_opens_only_for_hosts_whose_guard_passed(
    hosts: list[tuple[str, ExitCode]], keep_going: bool, override: str | None,
    expected: GateDecision,
) -> None:  # fmt: skip
    assert decide_gate(run_report(*hosts), keep_going=keep_going, override=override) == expected


@pytest.mark.parametrize(
    ("keep_going", "override"), [(False, None), (True, None), (False, "why"), (True, "why")]
)
def test_no_guarded_host_is_a_refusal_with_exit_2_whatever_the_flags(
    keep_going: bool, override: str | None
) -> None:
    decision = decide_gate(run_report(), keep_going=keep_going, override=override)

    assert decision == GateDecision((), (), True, False, CRITICAL)


def test_empty_override_reason_does_not_open_the_gate() -> None:
    decision = decide_gate(run_report(("forge", PARTIAL)), keep_going=False, override="")

    assert decision.refused
    assert not decision.overridden


def test_override_deploys_every_host_in_the_order_they_were_guarded() -> None:
    """deploy.hosts and DEPLOY_GUARD_HOSTS follow the command line, like the commands do."""
    report = run_report(("web", PARTIAL), ("forge", OK), ("db", CRITICAL))

    decision = decide_gate(report, keep_going=False, override="ticket #42")

    assert decision.deploy == ("web", "forge", "db")


@pytest.mark.parametrize(
    ("keep_going", "override"), [(False, None), (True, None), (False, "why"), (True, "why")]
)
def test_interrupted_guard_never_deploys_whatever_the_flags(
    keep_going: bool, override: str | None
) -> None:
    """Ctrl-C yields a partial report (exit 130): not a verdict anything may deploy on."""
    report = run_report(("forge", OK), ("web", ExitCode.INTERRUPTED), interrupted=True)

    decision = decide_gate(report, keep_going=keep_going, override=override)

    assert decision == GateDecision((), ("web",), True, False, ExitCode.INTERRUPTED)


# -- guard_failures -------------------------------------------------------------------------


def test_guard_failures_name_host_errors_and_every_unit_that_did_not_succeed() -> None:
    forge = host_result(
        "forge",
        CRITICAL,
        stage_result(
            "snapshots",
            unit_result("sanoid.service", Outcome.FAILED, reason="systemd result exit-code"),
            critical=True,
            outcome=StageOutcome.FAILED,
        ),
        stage_result(
            "applications",
            unit_result(
                "restic-backups-home.service",
                Outcome.NOT_STARTED,
                reason="critical stage snapshots failed",
            ),
            outcome=StageOutcome.NOT_STARTED,
        ),
    )
    # Succeeded, or not run again because of a recent recorded success (--max-age): proven.
    web = host_result(
        "web",
        OK,
        stage_result(
            "applications",
            unit_result("restic-backups-home.service", Outcome.SUCCEEDED),
            unit_result("restic-backups-etc.service", Outcome.FRESH),
        ),
    )
    db = host_result("db", CRITICAL, error="connection refused")
    # Lost mid-run: the host error and the unit whose fate is unknown are both listed.
    nas = host_result(
        "nas",
        CRITICAL,
        stage_result(
            "applications",
            unit_result("restic-backups-nas.service", Outcome.UNKNOWN, reason="host lost"),
            unit_result("restic-backups-etc.service", Outcome.SUCCEEDED),
            outcome=StageOutcome.FAILED,
        ),
        error="connection lost",
    )
    report = builders.run_report(
        forge, web, db, nas, run_id=RUN_ID, command="apply", started_at=STARTED
    )

    assert guard_failures(report) == [
        {"host": "forge", "stage": "snapshots", "unit": "sanoid.service", "outcome": "failed",
         "reason": "systemd result exit-code"},
        {"host": "forge", "stage": "applications", "unit": "restic-backups-home.service",
         "outcome": "not-started", "reason": "critical stage snapshots failed"},
        {"host": "db", "error": "connection refused"},
        {"host": "nas", "error": "connection lost"},
        {"host": "nas", "stage": "applications", "unit": "restic-backups-nas.service",
         "outcome": "unknown", "reason": "host lost"},
    ]  # fmt: skip


def test_guard_failures_of_a_passing_guard_are_empty() -> None:
    assert guard_failures(run_report(("forge", OK))) == []


# -- the override record --------------------------------------------------------------------


def record(reason: str = "restic repo migration, ticket #42",
           at: datetime = STARTED) -> OverrideRecord:  # fmt: skip
    return OverrideRecord(
        override=Override(reason, "alice", at),
        run_id=RUN_ID,
        hosts=("forge", "web"),
        failures=[{"host": "web", "error": "connection refused"}],
        commands=(("nixos-rebuild", "switch", "--flake", ".#forge"), ("colmena", "apply")),
    )


def test_audit_line_is_one_json_object_with_every_field() -> None:
    line = record().audit_line()

    assert "\n" not in line
    assert json.loads(line) == {
        "at": "2026-11-27T10:15:00.123456Z",
        "user": "alice",
        "hosts": ["forge", "web"],
        "reason": "restic repo migration, ticket #42",
        "run_id": RUN_ID,
        "failures": [{"host": "web", "error": "connection refused"}],
        "command": [["nixos-rebuild", "switch", "--flake", ".#forge"], ["colmena", "apply"]],
    }


def test_audit_line_keeps_a_multiline_unicode_reason_on_one_line() -> None:
    """A reason must not be able to forge a second record in the log."""
    reason = 'Migration läuft\n{"user": "mallory"}'

    line = record(reason).audit_line()

    assert "\n" not in line
    assert "läuft" in line  # readable, not \u escapes
    assert json.loads(line)["reason"] == reason


def test_journal_message_names_the_run_the_user_and_the_reason() -> None:
    message = record().journal_message()

    assert RUN_ID in message
    assert "alice" in message
    assert "restic repo migration, ticket #42" in message


def test_write_audit_appends_one_line_per_override_in_a_private_file(tmp_path: Path) -> None:
    state = tmp_path / "state" / "deploy-guard"

    path = write_audit(record("first"), state)
    write_audit(record("second"), state)

    assert path == state / AUDIT_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["reason"] for line in lines] == ["first", "second"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_write_audit_keeps_earlier_records(tmp_path: Path) -> None:
    audit = tmp_path / AUDIT_FILE
    audit.write_text('{"reason": "older"}\n', encoding="utf-8")

    write_audit(record("newer"), tmp_path)

    lines = audit.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"reason": "older"}'
    assert json.loads(lines[1])["reason"] == "newer"
    assert len(lines) == 2


@pytest.mark.parametrize("blocked", ["parent-is-a-file", "audit-is-a-directory"])
def test_unwritable_audit_log_refuses_the_override(tmp_path: Path, blocked: str) -> None:
    # Root ignores permission bits, so the path is made impossible rather than read-only.
    if blocked == "parent-is-a-file":
        (tmp_path / "state").write_text("not a directory")
        state = tmp_path / "state" / "deploy-guard"
    else:
        state = tmp_path / "deploy-guard"
        (state / AUDIT_FILE).mkdir(parents=True)

    with pytest.raises(OverrideNotRecorded, match="cannot record the override") as caught:
        write_audit(record(), state)

    assert "nothing was deployed" in str(caught.value)
    assert caught.value.exit_code is ExitCode.CRITICAL  # README: exit 2


# -- journal_override: through the transport seam ------------------------------------------


def fake_transport(host: str, fail: bool = False) -> Transport:
    transport = create_autospec(Transport, instance=True)
    if fail:
        transport.run.side_effect = CommandFailed(host, ["logger"], 1, "logger: socket error")
    else:
        transport.run.return_value = CommandResult(("logger",), 0, "", "")
    return transport  # type: ignore[no-any-return]


def test_override_is_logged_with_logger_on_every_host() -> None:
    transports = {"forge": fake_transport("forge"), "web": fake_transport("web")}

    warnings = journal_override(record(), ["forge", "web"], transports.__getitem__)

    assert warnings == []
    for transport in transports.values():
        transport.run.assert_called_once_with(  # type: ignore[attr-defined]
            files.journal_argv([f"MESSAGE={record().journal_message()}", "PRIORITY=5"]),
            timeout=30, check=True,
        )  # fmt: skip
        transport.close.assert_called_once_with()  # type: ignore[attr-defined]


def test_journal_failure_on_one_host_is_a_warning_and_the_others_are_logged() -> None:
    logging_fails = fake_transport("web", fail=True)
    db = fake_transport("db")

    def connect(host: str) -> Transport:
        if host == "forge":
            raise HostUnreachable("forge", "connection refused")
        return {"web": logging_fails, "db": db}[host]

    warnings = journal_override(record(), ["forge", "web", "db"], connect)

    assert len(warnings) == 2
    assert warnings[0].startswith("forge: could not log the override in its journal")
    assert "connection refused" in warnings[0]
    assert warnings[1].startswith("web: could not log the override in its journal")
    logging_fails.close.assert_called_once_with()  # type: ignore[attr-defined]
    db.run.assert_called_once()  # type: ignore[attr-defined]


# -- deploy_environment ---------------------------------------------------------------------


def test_deploy_environment_names_the_run_the_hosts_and_the_report(tmp_path: Path) -> None:
    report = tmp_path / "run.json"

    assert deploy_environment(RUN_ID, ["forge", "web"], report) == {
        "DEPLOY_GUARD_RUN_ID": RUN_ID,
        "DEPLOY_GUARD_HOSTS": "forge,web",
        "DEPLOY_GUARD_REPORT": str(report),
    }
    # An unsaved report is not pointed at.
    assert "DEPLOY_GUARD_REPORT" not in deploy_environment(RUN_ID, ["forge"], None)


# -- run_deploy: real commands ----------------------------------------------------------------


def sh(script: str, hosts: Sequence[str] = ("forge",), **env: str) -> DeployCommand:
    return DeployCommand(("sh", "-c", script), tuple(hosts), dict(env))


def append(path: Path, text: str) -> str:
    return f"echo {shlex.quote(text)} >> {shlex.quote(str(path))}"


def test_commands_run_in_plan_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    plan = DeployPlan(tuple(sh(append(log, name), [name]) for name in ("forge", "web", "db")))

    steps = run_deploy(plan, {})

    assert log.read_text().splitlines() == ["forge", "web", "db"]
    assert steps == (
        DeployStep(("sh", "-c", append(log, "forge")), ("forge",), 0),
        DeployStep(("sh", "-c", append(log, "web")), ("web",), 0),
        DeployStep(("sh", "-c", append(log, "db")), ("db",), 0),
    )


def test_in_order_the_first_failure_stops_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "log"
    plan = DeployPlan((
        sh(append(log, "forge"), ["forge"]),
        sh(f"{append(log, 'web')}; exit 3", ["web"]),
        sh(append(log, "db"), ["db"]),
    ))  # fmt: skip

    steps = run_deploy(plan, {})

    assert log.read_text().splitlines() == ["forge", "web"]
    assert [step.exit_code for step in steps] == [0, 3, None]
    assert [step.hosts for step in steps] == [("forge",), ("web",), ("db",)]


def test_in_parallel_every_command_runs_at_the_same_time_even_after_a_failure(
    tmp_path: Path,
) -> None:
    """Each command announces itself, then waits for the others' announcements before it
    ends: it can only see them if they started while it was still running, so exit 0 from
    every one proves the overlap. Run one after another, the first would time out (exit 9)."""
    names = ("forge", "web", "db")

    def rendezvous(name: str, status: int) -> DeployCommand:
        others = " ".join(shlex.quote(str(tmp_path / f"{o}.started")) for o in names if o != name)
        script = (
            # Written then renamed: the others must not see the file before its time is in it.
            f"date +%s.%N > {shlex.quote(str(tmp_path / f'{name}.tmp'))}\n"
            f"mv {shlex.quote(str(tmp_path / f'{name}.tmp'))} "
            f"{shlex.quote(str(tmp_path / f'{name}.started'))}\n"
            f"for other in {others}; do\n"
            "  tries=0\n"
            '  until [ -e "$other" ]; do\n'
            "    tries=$((tries + 1)); [ $tries -gt 200 ] && exit 9; sleep 0.05\n"
            "  done\n"
            "done\n"
            f"date +%s.%N > {shlex.quote(str(tmp_path / f'{name}.ended'))}\n"
            f"exit {status}\n"
        )
        return sh(script, [name])

    plan = DeployPlan((rendezvous("forge", 0), rendezvous("web", 5), rendezvous("db", 0)),
                      parallel=True)  # fmt: skip

    steps = run_deploy(plan, {})

    assert [step.exit_code for step in steps] == [0, 5, 0]
    times = {
        name: (float((tmp_path / f"{name}.started").read_text()),
               float((tmp_path / f"{name}.ended").read_text()))
        for name in names
    }  # fmt: skip
    for name, (started, _) in times.items():
        for other, (_, ended) in times.items():
            assert started <= ended, f"{name} started after {other} ended"


def test_deploy_environment_and_per_command_env_reach_the_command(tmp_path: Path) -> None:
    seen = tmp_path / "env.json"
    report = tmp_path / "runs" / f"{RUN_ID}.json"
    dump = (
        f"{shlex.quote(sys.executable)} -c 'import json, os, sys; json.dump(dict(os.environ), "
        f'open(sys.argv[1], "w"))\' {shlex.quote(str(seen))}'
    )
    plan = DeployPlan((sh(dump, NIX_SSHOPTS="-p 2222"),))

    (step,) = run_deploy(plan, deploy_environment(RUN_ID, ["forge", "web"], report))

    assert step.exit_code == 0
    env = json.loads(seen.read_text())
    assert env["DEPLOY_GUARD_RUN_ID"] == RUN_ID
    assert env["DEPLOY_GUARD_HOSTS"] == "forge,web"
    assert env["DEPLOY_GUARD_REPORT"] == str(report)
    assert env["NIX_SSHOPTS"] == "-p 2222"
    assert "PATH" in env  # the user's environment is kept, not replaced


def test_command_output_goes_to_the_given_stream_so_stdout_stays_for_the_report(
    tmp_path: Path,
) -> None:
    output = tmp_path / "deploy-output"
    plan = DeployPlan((sh("echo building forge"),))

    with output.open("w") as stream:
        (step,) = run_deploy(plan, {}, stream)

    assert step.exit_code == 0
    assert output.read_text() == "building forge\n"


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("program", ["/nonexistent/nixos-rebuild", "deploy-guard-no-such-tool"])
def test_missing_deploy_executable_exits_127(program: str, parallel: bool) -> None:
    plan = DeployPlan((DeployCommand((program, "switch"), ("forge",)),), parallel=parallel)

    (step,) = run_deploy(plan, {})

    assert step == DeployStep((program, "switch"), ("forge",), 127)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("kind", ["not-executable", "directory"])
def test_deploy_command_that_cannot_be_executed_exits_126(
    tmp_path: Path, kind: str, parallel: bool
) -> None:
    """Like the shell: a failed step (apply exits 4), not a traceback."""
    program = tmp_path / "deploy.sh"
    if kind == "directory":
        program.mkdir()
    else:
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o644)  # root may execute only files with an x bit
    plan = DeployPlan((DeployCommand((str(program),), ("forge",)),), parallel=parallel)

    (step,) = run_deploy(plan, {})

    assert step.exit_code == 126


def test_empty_plan_runs_nothing() -> None:
    assert run_deploy(DeployPlan(()), {}) == ()
    assert run_deploy(DeployPlan((), parallel=True), {}) == ()
