"""Stage 4 on one host: which proof each unit gets, and what its answer does to the unit and
the stage. The host is scripted at the transport seam; its answers are real ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from deploy_guard.artifact import Artifact, ArtifactStatus
from deploy_guard.config import parse_config
from deploy_guard.errors import CommandTimeout, ConfigError
from deploy_guard.events import Event, HostWarning
from deploy_guard.guard.proof import (
    ProofSettings,
    Prover,
    apply_artifact,
    describe_plan,
    parse_proof_records,
    parse_unit_environments,
    plan_proof,
    with_environment,
)
from deploy_guard.guard.stage import EngineSettings, StageContext
from deploy_guard.hosts.targets import resolve_targets
from deploy_guard.manifest import ManifestProof
from deploy_guard.model import Outcome, StageOutcome, StagePlan, StageResult, UnitResult
from deploy_guard.observe.report import unit_json
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.base import CommandResult
from tests.unit.fakesystemd import FakeClock

# `systemctl --no-pager show -p Environment,EnvironmentFiles,ExecStart -- A B nope.service`
# on systemd 252 (the testbed): properties in systemd's order, argv[] unquoted, a unit that
# does not exist prints an empty Environment= only.
SHOW = (
    "ExecStart={ path=/usr/bin/restic ; argv[]=/usr/bin/restic backup --tag x /srv/a b /etc ; "
    "ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
    'Environment=RESTIC_REPOSITORY=/var/lib/restic-repo "NOTE=two words" '
    "RESTIC_PASSWORD_FILE=/etc/restic/password\n"
    "EnvironmentFiles=/etc/restic/env (ignore_errors=yes)\n"
    "EnvironmentFiles=/etc/restic/more (ignore_errors=no)\n"
    "\n"
    "ExecStart={ path=/usr/bin/restic ; argv[]=/usr/bin/restic backup --cache-dir=/var/cache/"
    "restic-backups-home --tag home /home ; ignore_errors=no ; start_time=[n/a] ; "
    "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n"
    "Environment=RESTIC_REPOSITORY=/var/lib/restic-repo RESTIC_PASSWORD_FILE=/etc/restic/password\n"
    "\n"
    "Environment=\n"
)
SHOWN = ("restic-backups-x.service", "restic-backups-home.service", "nope.service")
STARTED = datetime(2026, 12, 1, 20, 15, 50, tzinfo=UTC)
# restic 0.14.0 `snapshots --json --latest 1`, one snapshot of /home.
SNAPSHOT = (
    '[{"time":"2026-12-01T20:15:56.942700337Z","tree":"e88e1826","paths":["/home"],'
    '"hostname":"forge","username":"root","id":"85b85801ec5d2d12","short_id":"85b85801"}]\n'
)


def test_environments_parsed_per_unit_in_argument_order() -> None:
    found = parse_unit_environments(SHOW, SHOWN)
    x = found["restic-backups-x.service"]
    assert x.assignments == (
        "RESTIC_REPOSITORY=/var/lib/restic-repo", "NOTE=two words",
        "RESTIC_PASSWORD_FILE=/etc/restic/password",
    )  # fmt: skip
    assert x.files == ("/etc/restic/env", "/etc/restic/more")
    assert x.exec_argv[:3] == ("/usr/bin/restic", "backup", "--tag")
    assert found["restic-backups-home.service"].exec_argv[-1] == "/home"
    assert found["nope.service"].assignments == ()


def test_check_runs_with_the_units_environment_and_files() -> None:
    (environment,) = parse_unit_environments(SHOW, ["restic-backups-x.service"]).values()
    argv = with_environment(environment, ["restic", "snapshots"])
    assert argv[:4] == ["env", "RESTIC_REPOSITORY=/var/lib/restic-repo", "NOTE=two words",
                        "RESTIC_PASSWORD_FILE=/etc/restic/password"]  # fmt: skip
    assert argv[-6:] == ["sh", "/etc/restic/env", "/etc/restic/more", "--", "restic", "snapshots"]


PROOF = ManifestProof(unit="restic-backups-home.service", kind="restic",
                      proof_unit="deploy-guard-proof@restic-backups-home.service",
                      params={"paths": ["/home"]})  # fmt: skip


@pytest.mark.parametrize(
    ("unit", "settings", "method", "kind"),
    [
        ("restic-backups-home.service", ProofSettings(), "unit", "restic"),
        ("restic-backups-etc.service", ProofSettings(), "direct", "restic"),
        ("btrbk-a.service", ProofSettings(), "none", None),
        ("btrbk-a.service", ProofSettings(stage_commands={"apps": "x"}), "command", "command"),
        # a per-unit command wins over the stage's and over the host's proof unit
        (
            "restic-backups-home.service",
            ProofSettings(
                commands={"restic-backups-home.service": "y"}, stage_commands={"apps": "x"}
            ),
            "command",
            "command",
        ),
    ],
)
def test_which_proof_a_unit_gets(
    unit: str, settings: ProofSettings, method: str, kind: str | None
) -> None:
    plan = plan_proof(unit, "apps", settings, {PROOF.unit: PROOF})
    assert (plan.method, plan.kind) == (method, kind)


@pytest.mark.parametrize(
    ("status", "require", "outcome"),
    [
        (ArtifactStatus.VERIFIED, True, Outcome.SUCCEEDED),
        (ArtifactStatus.MISSING, False, Outcome.FAILED),
        (ArtifactStatus.STALE, False, Outcome.FAILED),
        (ArtifactStatus.UNVERIFIED, False, Outcome.SUCCEEDED),
        (ArtifactStatus.UNVERIFIED, True, Outcome.FAILED),
    ],
)
def test_what_an_artifact_does_to_a_unit(
    status: ArtifactStatus, require: bool, outcome: Outcome
) -> None:
    unit = UnitResult("restic-backups-home.service", Outcome.SUCCEEDED, started_at=STARTED)
    result = apply_artifact(unit, Artifact(status, "restic", detail="why"), require)
    assert result.outcome is outcome
    assert result.artifact is not None
    assert result.artifact.status is status
    if outcome is Outcome.FAILED:
        assert result.reason is not None
        assert result.reason.endswith("why")


def test_proof_records_are_matched_by_invocation_and_other_lines_ignored() -> None:
    messages = [
        ("deploy-guard-proof@a.service", "not json"),
        ("deploy-guard-proof@a.service", '{"deploy_guard_proof": 1, "invocation": "i1", "x": 1}'),
        ("deploy-guard-proof@b.service", '{"invocation": "i2"}'),
    ]
    assert parse_proof_records(messages) == {
        "i1": {"deploy_guard_proof": 1, "invocation": "i1", "x": 1}
    }


Handler = Callable[[Sequence[str]], CommandResult]


class ScriptedHost:
    """A transport answering `id -u`, the environment `show` and the checks."""

    def __init__(self, uid: int = 0, check: Handler | None = None) -> None:
        self.uid, self.check = uid, check
        self.calls: list[tuple[str, ...]] = []

    @property
    def host(self) -> str:
        return "forge"

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        self.calls.append(tuple(argv))
        if list(argv) == ["id", "-u"]:
            return CommandResult(tuple(argv), 0, f"{self.uid}\n", "")
        if argv[:3] == ["systemctl", "--no-pager", "show"]:
            units = list(argv[list(argv).index("--") + 1 :])
            blocks = dict(zip(SHOWN, SHOW.strip("\n").split("\n\n"), strict=True))
            text = "\n\n".join(blocks.get(unit, "Environment=") for unit in units) + "\n"
            return CommandResult(tuple(argv), 0, text, "")
        assert argv[0] == "timeout", argv  # every check is bounded on the host
        assert self.check is not None, argv
        return self.check(argv)

    def close(self) -> None:
        """Nothing to release."""


def answer(stdout: str, status: int = 0) -> Handler:
    return lambda argv: CommandResult(tuple(argv), status, stdout, "")


def prove(
    host: ScriptedHost, settings: ProofSettings, units: Sequence[str]
) -> tuple[StageResult, list[Event]]:
    events: list[Event] = []
    context = StageContext(SystemdClient(host), FakeClock(), EngineSettings(), events.append)
    stage = StagePlan("apps", True, 60.0, None, False, tuple(units))
    results = tuple(UnitResult(unit, Outcome.SUCCEEDED, invocation_id="i", started_at=STARTED)
                    for unit in units)  # fmt: skip
    before = StageResult("apps", True, StageOutcome.SUCCEEDED, results)
    return Prover(context, settings, {})(stage, before), events


def test_as_root_the_check_runs_with_the_units_environment_and_verifies() -> None:
    host = ScriptedHost(uid=0, check=answer(SNAPSHOT))
    result, _events = prove(host, ProofSettings(), ["restic-backups-home.service"])
    (unit,) = result.units
    assert unit.outcome is Outcome.SUCCEEDED
    assert unit.artifact == Artifact(
        ArtifactStatus.VERIFIED, "restic", "85b85801",
        datetime(2026, 12, 1, 20, 15, 56, 942700, tzinfo=UTC), "snapshot 85b85801 made by this run",
    )  # fmt: skip
    (check,) = [call for call in host.calls if call[0] == "timeout"]
    assert "RESTIC_PASSWORD_FILE=/etc/restic/password" in check


def test_an_empty_repository_fails_the_unit_and_the_stage() -> None:
    host = ScriptedHost(uid=0, check=answer("[]\n"))
    result, _events = prove(host, ProofSettings(), ["restic-backups-home.service"])
    assert result.outcome is StageOutcome.FAILED
    assert result.units[0].outcome is Outcome.FAILED
    assert (
        result.units[0].reason
        == "restic exited 0 but there is no snapshot of /home in the repository"
    )


def test_without_root_or_become_nothing_runs_and_the_unit_is_unverified_with_a_warning() -> None:
    host = ScriptedHost(uid=1000)
    result, events = prove(host, ProofSettings(), ["restic-backups-home.service"])
    assert result.outcome is StageOutcome.SUCCEEDED
    artifact = result.units[0].artifact
    assert artifact is not None
    assert artifact.status is ArtifactStatus.UNVERIFIED
    assert [call[0] for call in host.calls] == ["id"]
    assert any(isinstance(event, HostWarning) for event in events)


def test_become_skips_the_root_question() -> None:
    host = ScriptedHost(uid=1000, check=answer(SNAPSHOT))
    prove(host, ProofSettings(privileged=True), ["restic-backups-home.service"])
    assert ("id", "-u") not in host.calls


def test_require_turns_an_unprovable_unit_into_a_failure() -> None:
    result, _events = prove(ScriptedHost(), ProofSettings(require=True), ["btrbk-a.service"])
    assert result.units[0].outcome is Outcome.FAILED
    assert result.outcome is StageOutcome.FAILED


def test_a_check_past_its_deadline_or_a_lost_host_is_unverified() -> None:
    timed_out = ScriptedHost(uid=0, check=answer("", status=124))
    result, _events = prove(timed_out, ProofSettings(timeout=5), ["restic-backups-home.service"])
    artifact = result.units[0].artifact
    assert artifact is not None
    assert artifact.detail == "the proof did not finish within 5s"

    def hang(argv: Sequence[str]) -> CommandResult:
        raise CommandTimeout("forge", "timeout took longer than 15s")

    lost, _events = prove(ScriptedHost(uid=0, check=hang), ProofSettings(),
                          ["restic-backups-home.service"])  # fmt: skip
    artifact = lost.units[0].artifact
    assert artifact is not None
    assert artifact.status is ArtifactStatus.UNVERIFIED
    assert lost.units[0].outcome is Outcome.SUCCEEDED


def test_verify_command_gets_the_unit_and_the_run_start() -> None:
    made = (STARTED + timedelta(seconds=3)).isoformat()
    host = ScriptedHost(check=answer(f'{{"time": "{made}", "id": "v1"}}'))
    settings = ProofSettings(stage_commands={"apps": "my-check"})
    result, _events = prove(host, settings, ["btrbk-a.service"])
    artifact = result.units[0].artifact
    assert artifact is not None
    assert (artifact.status, artifact.id) == (ArtifactStatus.VERIFIED, "v1")
    (check,) = [call for call in host.calls if call[0] == "timeout"]
    assert "DEPLOY_GUARD_UNIT=btrbk-a.service" in check
    assert f"DEPLOY_GUARD_RUN_STARTED={STARTED.timestamp():.3f}" in check
    assert check[-3:] == ("sh", "-c", "my-check")


def test_disabled_proof_and_failed_units_are_left_alone() -> None:
    host = ScriptedHost()
    result, _events = prove(host, ProofSettings(enabled=False), ["restic-backups-home.service"])
    assert result.units[0].artifact is None
    assert host.calls == []


def test_proof_configuration_reaches_each_host() -> None:
    config = parse_config({
        "proof": {"require": True, "timeout": "30s",
                  "commands": {"btrbk-a.service": "my-check"}},
        "stages": [{"name": "apps", "timeout": "1m", "units": ["btrbk-*.service"],
                    "verify": "stage-check"}],
        "hosts": {"forge": {"become": "sudo"}},
    })  # fmt: skip
    (target,) = resolve_targets(config, ["forge"])
    assert target.proof == ProofSettings(
        require=True, timeout=30.0, commands={"btrbk-a.service": "my-check"},
        stage_commands={"apps": "stage-check"}, privileged=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "proof", [{"commands": {"not a unit": "x"}}, {"commands": {"a.service": " "}}, {"when": 1}]
)
def test_bad_proof_configuration_is_refused(proof: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="proof"):
        parse_config({"proof": proof})


def test_report_documents_the_artifact() -> None:
    made = datetime(2026, 12, 1, 20, 15, 56, 942700, tzinfo=UTC)
    found = Artifact(ArtifactStatus.VERIFIED, "restic", "85b85801", made, "d")
    unit = UnitResult("restic-backups-home.service", Outcome.SUCCEEDED, artifact=found)
    assert unit_json(unit)["artifact"] == {
        "status": "verified", "kind": "restic", "id": "85b85801",
        "time": "2026-12-01T20:15:56.942Z", "detail": "d",
    }  # fmt: skip
    assert unit_json(UnitResult("a.service", Outcome.FAILED))["artifact"] is None


def test_plan_says_what_proves_each_unit() -> None:
    proofs = {PROOF.unit: PROOF}
    settings = ProofSettings(stage_commands={"other": "x"})

    def described(unit: str, stage: str = "apps", chosen: ProofSettings = settings) -> str:
        return describe_plan(plan_proof(unit, stage, chosen, proofs), chosen)

    assert described("restic-backups-home.service") == (
        "restic: newest snapshot of /home of this host made after the run started "
        "(by deploy-guard-proof@restic-backups-home.service)"
    )
    assert described("sanoid.service").endswith("(when logged in as root, with the unit's "
                                                "environment; else unverified)")  # fmt: skip
    become = ProofSettings(privileged=True)
    assert "(through become" in described("sanoid.service", chosen=become)
    assert described("btrbk-a.service", "other") == "command: x"
    assert described("btrbk-a.service").startswith("unverified: no proof is known")
