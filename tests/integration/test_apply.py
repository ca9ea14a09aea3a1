"""`deploy-guard apply` on the testbed: the gate, the override record, the deploy command and
the tool adapters, through the real command line.

Deploy commands are small `sh -c` scripts writing marker files in tmp_path, or the stand-ins
of `standins.py` (nixos-rebuild, colmena, deploy) first on PATH, which record their argv.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.guard import (
    Guarded,
    guard,
    long_backup,
    oneshot,
    started_units,
    write_config,
)
from tests.integration.standins import Call, StandIns
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

BROKEN = "restic-backups-broken.service"
# One stage over one unit per host, named after the host: one unit keeps two-host tests fast,
# and distinct names show in the deploy records which host's guard ran what.
OWN_UNIT_STAGE = """
[[stages]]
name = "applications"
timeout = "1m"
units = ["restic-backups-t-*.service"]
"""


def apply(env: dict[str, str], config: Path, *args: str, command: Sequence[str] = (),
          timeout: float = 300) -> Guarded:  # fmt: skip
    """`deploy-guard apply ARGS --json --config CONFIG -- COMMAND`, parsed like `guard()`."""
    return guard(env, "apply", *args, config=config, command=command, timeout=timeout)


def fleet_deploy(directory: Path, *, build_first: bool = True) -> str:
    """A `[deploy]` table deploying from a flake without inputs that has forge and web for
    all three tools (the deploy checks evaluate their attribute names with the real nix)."""
    flake = directory / "fleet"
    flake.mkdir(exist_ok=True)
    nodes = "forge = { }; web = { };"
    (flake / "flake.nix").write_text(
        f"{{ outputs = {{ self }}: {{ nixosConfigurations = {{ {nodes} }}; "
        f"colmenaHive.deploymentConfig = {{ {nodes} }}; deploy.nodes = {{ {nodes} }}; }}; }}\n"
    )
    return f'\n[deploy]\nflake = "{flake}"\nbuild_first = {str(build_first).lower()}\n'


def touch(path: Path) -> tuple[str, ...]:
    return ("sh", "-c", f"touch {shlex.quote(str(path))}")


def own_unit(host: TestHost, command: str = "true") -> str:
    """Install the host's own backup unit for OWN_UNIT_STAGE; returns its name."""
    name = f"restic-backups-t-{host.name}.service"
    host.install_unit(name, oneshot(command))
    host.daemon_reload()
    return name


def break_unit(host: TestHost) -> None:
    """A failing application backup: the guard exits 1."""
    host.install_unit(BROKEN, oneshot("echo repository locked >&2; exit 1"))
    host.daemon_reload()


def journal_entries(host: TestHost, expected: str = "") -> str:
    """The host's `deploy-guard` override entries in its journal (each run also leaves a
    plain run entry, which is not an override), waiting a little for ``expected`` (journald
    writes asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        text = host.ssh("journalctl -q -t deploy-guard -o cat", check=False).stdout
        text = "".join(line + "\n" for line in text.splitlines() if "override" in line)
        if (expected and expected in text) or not expected or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def env(dg_env: dict[str, str], state: Path) -> dict[str, str]:
    """deploy-guard's environment with a state directory of the test's own."""
    return {**dg_env, "XDG_STATE_HOME": str(state)}


@pytest.fixture
def web(testbed: Testbed, host: TestHost) -> Iterator[TestHost]:
    """A second host, "web", next to "forge"."""
    second = testbed.boot("web")
    try:
        yield second
    finally:
        second.stop()


# -- the gate -------------------------------------------------------------------------------


def test_failed_guard_refuses_the_deploy_and_exits_with_the_guard_code(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    break_unit(host)
    marker = tmp_path / "deployed"

    result = apply(env, write_config(tmp_path), "forge", command=touch(marker))

    assert result.code == 1, result.stderr
    assert not marker.exists()
    assert result.report is not None
    assert result.report["exit_code"] == 1
    deploy = result.report["deploy"]
    assert deploy["refused"] is True
    assert deploy["exit_code"] is None
    assert deploy["hosts"] == []
    assert deploy["skipped_hosts"] == ["forge"]
    assert [step["exit_code"] for step in deploy["steps"]] == [None]
    assert result.report["override"] is None
    assert result.units()[BROKEN]["outcome"] == "failed"
    assert "deploy refused" in result.stderr


def test_clean_guard_runs_the_deploy_with_the_run_in_its_environment(
    host: TestHost, env: dict[str, str], state: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    report_copy = tmp_path / "report-copy.json"
    script = (
        "echo deploying forge; "
        f'printf "%s\\n" "$DEPLOY_GUARD_RUN_ID" "$DEPLOY_GUARD_HOSTS" "$DEPLOY_GUARD_REPORT" '
        f"> {shlex.quote(str(seen))}; "
        f'cp "$DEPLOY_GUARD_REPORT" {shlex.quote(str(report_copy))}'
    )

    own_unit(host)

    result = apply(env, write_config(tmp_path, OWN_UNIT_STAGE), "forge",
                   command=("sh", "-c", script))  # fmt: skip

    assert result.code == 0, result.stderr
    assert result.report is not None
    run_id = result.report["run_id"]
    report_path = state / "deploy-guard" / "runs" / f"{run_id}.json"
    assert seen.read_text().splitlines() == [run_id, "forge", str(report_path)]
    # What the command could read: this run's report, the guard's verdict in it.
    during = json.loads(report_copy.read_text())
    assert during["run_id"] == run_id
    assert during["command"] == "apply"
    assert [h["exit_code"] for h in during["hosts"]] == [0]
    assert during["deploy"]["hosts"] == ["forge"]
    # Its output went to stderr: stdout held only the report (parsed above).
    assert "deploying forge" in result.stderr
    deploy = result.report["deploy"]
    assert deploy["refused"] is False
    assert deploy["exit_code"] == 0
    assert deploy["tool"] == "command"
    assert deploy["steps"] == [{"command": ["sh", "-c", script], "hosts": ["forge"],
                                "exit_code": 0}]  # fmt: skip
    # The saved report is rewritten with the deploy's result.
    assert json.loads(report_path.read_text())["deploy"]["exit_code"] == 0


def test_failing_deploy_command_exits_4_with_its_status_in_the_report(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)

    result = apply(env, write_config(tmp_path, OWN_UNIT_STAGE), "forge",
                   command=("sh", "-c", "exit 7"))  # fmt: skip

    assert result.code == 4, result.stderr
    assert result.report is not None
    assert result.report["exit_code"] == 4
    assert result.report["deploy"]["exit_code"] == 7
    assert result.report["deploy"]["steps"][0]["exit_code"] == 7
    assert [h["exit_code"] for h in result.report["hosts"]] == [0]


def test_keep_going_deploys_only_the_hosts_whose_guard_passed(
    host: TestHost, web: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)
    broken = own_unit(web, "exit 1")
    deployed = tmp_path / "deployed"
    command = ("sh", "-c", f"echo {{host}} >> {shlex.quote(str(deployed))}")
    config = write_config(tmp_path, OWN_UNIT_STAGE)

    result = apply(env, config, "forge", "web", "--keep-going", command=command)

    assert result.code == 1, result.stderr
    assert deployed.read_text().splitlines() == ["forge"]
    assert result.report is not None
    deploy = result.report["deploy"]
    assert deploy["refused"] is False
    assert deploy["hosts"] == ["forge"]
    assert deploy["skipped_hosts"] == ["web"]
    assert [step["hosts"] for step in deploy["steps"]] == [["forge"]]
    assert result.host("web")["exit_code"] == 1
    assert result.units("web")[broken]["outcome"] == "failed"
    assert "skipped (guard failed): web" in result.stderr


def test_hosts_are_guarded_at_the_same_time(
    host: TestHost, web: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    for each in (host, web):
        own_unit(each, "date +%s.%N > /run/guard-started; sleep 3; "
                       "date +%s.%N > /run/guard-ended")  # fmt: skip

    result = apply(env, write_config(tmp_path, OWN_UNIT_STAGE), "forge", "web",
                   command=("true",))  # fmt: skip

    assert result.code == 0, result.stderr

    def interval(each: TestHost) -> tuple[float, float]:
        started, ended = each.ssh("cat /run/guard-started /run/guard-ended").stdout.split()
        return float(started), float(ended)

    forge_started, forge_ended = interval(host)
    web_started, web_ended = interval(web)
    # Each host's backup started before the other's ended: the intervals overlap.
    assert forge_started < web_ended
    assert web_started < forge_ended


# -- --override -----------------------------------------------------------------------------


def without_user_variables(env: dict[str, str]) -> dict[str, str]:
    """getpass reads $LOGNAME and friends first; without them the audit names the account."""
    names = ("LOGNAME", "USER", "LNAME", "USERNAME")
    return {key: value for key, value in env.items() if key not in names}


def test_override_deploys_after_a_failed_guard_and_is_recorded_everywhere(
    host: TestHost, env: dict[str, str], state: Path, tmp_path: Path
) -> None:
    break_unit(host)
    marker = tmp_path / "deployed"
    audit = state / "deploy-guard" / "audit.jsonl"
    audit.parent.mkdir(parents=True)
    audit.write_text('{"reason": "an earlier override"}\n')
    # Quotes, $ and a non-ASCII letter: the reason must reach the host's journal verbatim.
    reason = 'restic repo migration, ticket #42: it\'s "safe" for $HOME — Müller'
    account = pwd.getpwuid(os.getuid()).pw_name
    before = datetime.now(UTC)

    result = apply(without_user_variables(env), write_config(tmp_path), "forge",
                   "--override", reason, command=touch(marker))  # fmt: skip

    assert result.code == 0, result.stderr
    assert marker.exists()
    assert result.report is not None
    run_id = result.report["run_id"]
    # The guard's failure is still reported.
    assert result.host()["exit_code"] == 1
    assert result.units()[BROKEN]["outcome"] == "failed"
    # The audit log: exactly one new line, after the earlier one.
    lines = audit.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0] == '{"reason": "an earlier override"}'
    entry = json.loads(lines[1])
    assert entry["reason"] == reason
    assert entry["user"] == account
    assert entry["hosts"] == ["forge"]
    assert entry["run_id"] == run_id
    assert entry["command"] == [list(touch(marker))]
    assert before <= datetime.fromisoformat(entry["at"]) <= datetime.now(UTC)
    assert {"host": "forge", "stage": "applications", "unit": BROKEN, "outcome": "failed",
            "reason": result.units()[BROKEN]["reason"]} in entry["failures"]  # fmt: skip
    # The host's journal.
    journal = journal_entries(host, run_id)
    assert run_id in journal
    assert reason in journal
    assert account in journal
    # The report.
    override = result.report["override"]
    assert set(override) == {"reason", "by", "at"}
    assert override["reason"] == reason
    assert override["by"] == account
    assert before <= datetime.fromisoformat(override["at"]) <= datetime.now(UTC)
    assert result.report["deploy"]["refused"] is False
    assert result.report["deploy"]["hosts"] == ["forge"]
    assert "OVERRIDE by" in result.stderr


def test_override_that_cannot_be_recorded_deploys_nothing(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host, "exit 1")
    marker = tmp_path / "deployed"
    # The state directory lies under a regular file (root ignores permission bits).
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    env = {**dg_env, "XDG_STATE_HOME": str(blocked)}

    result = apply(env, write_config(tmp_path, OWN_UNIT_STAGE), "forge", "--override",
                   "ticket #42", command=touch(marker))  # fmt: skip

    assert result.code == 2, result.stderr
    assert "cannot record the override" in result.stderr
    assert not marker.exists()
    assert journal_entries(host) == ""


def test_empty_override_reason_is_a_usage_error_that_starts_nothing(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    break_unit(host)
    marker = tmp_path / "deployed"

    for reason in ("", "   "):
        result = apply(env, write_config(tmp_path), "forge", "--override", reason,
                       command=touch(marker))  # fmt: skip

        assert result.code == 3, result.stderr
        assert "--override needs a reason" in result.stderr
    assert not marker.exists()
    assert started_units(host, (*BACKUP_UNITS, BROKEN)) == set()


def test_arguments_after_dash_dash_with_tool_are_not_a_command(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    """`--tool colmena -- ARGS` appends ARGS to colmena's command line (issue 14): they are
    never run as a command of their own."""
    own_unit(host)
    standins = StandIns.install(tmp_path / "standins")
    marker = tmp_path / "ran"
    config = write_config(tmp_path, OWN_UNIT_STAGE + fleet_deploy(tmp_path, build_first=False))

    result = apply(standins.env(env), config, "forge", "--tool", "colmena",
                   command=touch(marker))  # fmt: skip

    assert result.code == 0, result.stderr
    assert not marker.exists()
    (call,) = standins.calls()
    assert call.argv == ["colmena", "apply", "switch", "--on", "forge", *touch(marker)]


# -- Ctrl-C ---------------------------------------------------------------------------------


def test_interrupt_during_the_guard_exits_130_and_deploys_nothing(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    config = long_backup(host, tmp_path)
    marker = tmp_path / "deployed"
    # An override does not survive an interrupt either: a partial guard proves nothing.
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy_guard", "apply", "forge", "--override", "ticket #42",
         "--json", "--config", str(config), "--", *touch(marker)],
        env={**env, "DEPLOY_GUARD_SSH_CONFIG": str(Path(env["HOME"]) / ".ssh/config")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "started restic-backups-long.service" in line:
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr
    assert not marker.exists()
    assert "interrupted" in stderr
    report = json.loads(stdout)
    assert report["exit_code"] == 130
    assert report["deploy"]["refused"] is True
    assert report["deploy"]["exit_code"] is None
    assert report["override"] is None
    assert journal_entries(host) == ""  # no override was recorded
    state = host.ssh("systemctl show -P ActiveState restic-backups-long.service").stdout.strip()
    assert state == "activating"  # the backup itself is left to finish


def test_interrupt_during_the_deploy_keeps_the_status_of_steps_that_finished(
    host: TestHost, web: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "deployed"
    # forge deploys at once, web hangs; config order [forge, web] is the deploy order.
    script = (f"echo {{host}} >> {shlex.quote(str(log))}; "
              '[ {host} = web ] && exec sleep 60; true')  # fmt: skip
    own_unit(host)
    own_unit(web)
    config = write_config(tmp_path, OWN_UNIT_STAGE)
    argv = [sys.executable, "-m", "deploy_guard", "apply", "forge", "web", "--json",
            "--config", str(config), "--", "sh", "-c", script]  # fmt: skip
    process = subprocess.Popen(
        argv, env={**env, "DEPLOY_GUARD_SSH_CONFIG": str(Path(env["HOME"]) / ".ssh/config")},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while "web" not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, "apply ended before web was deployed"
        assert time.monotonic() < deadline, "web was never deployed"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)

    assert process.returncode == 130
    steps = json.loads(stdout)["deploy"]["steps"]
    assert [step["hosts"] for step in steps] == [["forge"], ["web"]]
    assert [step["exit_code"] for step in steps] == [0, 130]


# -- the tool adapters, end to end with stand-ins --------------------------------------------


def test_nixos_rebuild_gets_flake_target_host_sudo_flag_and_extra_args(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)
    standins = StandIns.install(tmp_path / "standins")
    deploy = fleet_deploy(tmp_path, build_first=False)
    config = write_config(tmp_path, OWN_UNIT_STAGE + deploy + """
sudo_flag = "--use-remote-sudo"
extra_args = ["--show-trace"]
""")  # fmt: skip
    flake = tmp_path / "fleet"

    result = guard(standins.env(env), "apply", "forge", "--tool", "nixos-rebuild", config=config)

    assert result.code == 0, result.stderr
    assert result.report is not None
    run_id = result.report["run_id"]
    (call,) = standins.calls()
    assert call.argv == ["nixos-rebuild", "switch", "--flake", f"{flake}#forge",
                         "--target-host", "forge", "--use-remote-sudo", "--show-trace"]  # fmt: skip
    assert call.env["DEPLOY_GUARD_RUN_ID"] == run_id
    assert call.env["DEPLOY_GUARD_HOSTS"] == "forge"
    assert call.env["NIX_SSHOPTS"] is None
    assert result.report["deploy"]["tool"] == "nixos-rebuild"
    assert result.report["deploy"]["steps"][0]["command"] == call.argv


def test_nixos_rebuild_gets_the_port_of_the_destination_through_nix_sshopts(
    host: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)
    standins = StandIns.install(tmp_path / "standins")
    hosts = f'[hosts.forge]\nssh = "forge:{host.port}"\n'
    config = write_config(tmp_path, OWN_UNIT_STAGE + hosts + fleet_deploy(tmp_path))

    result = guard(standins.env(env), "apply", "forge", config=config)

    assert result.code == 0, result.stderr
    build, call = standins.calls()
    assert build.argv[:2] == ["nixos-rebuild", "build"]
    assert build.env["NIX_SSHOPTS"] is None  # the build runs here
    assert call.argv == ["nixos-rebuild", "switch", "--flake", f"{tmp_path}/fleet#forge",
                         "--target-host", "forge", "--sudo"]  # fmt: skip
    assert call.env["NIX_SSHOPTS"] == f"-p {host.port}"


def test_nixos_rebuild_stops_at_the_first_host_whose_deploy_failed(
    host: TestHost, web: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)
    own_unit(web)
    standins = StandIns.install(tmp_path / "standins")
    standins.fail_with(1)
    config = write_config(tmp_path, OWN_UNIT_STAGE + fleet_deploy(tmp_path, build_first=False))

    result = guard(standins.env(env), "apply", "forge", "web", config=config)

    assert result.code == 4, result.stderr
    assert [call.argv[3] for call in standins.calls()] == [f"{tmp_path}/fleet#forge"]
    assert result.report is not None
    steps = result.report["deploy"]["steps"]
    assert [(step["hosts"], step["exit_code"]) for step in steps] == [
        (["forge"], 1),
        (["web"], None),
    ]
    assert result.report["deploy"]["exit_code"] == 1


def test_colmena_and_deploy_rs_deploy_every_host_with_one_command(
    host: TestHost, web: TestHost, env: dict[str, str], tmp_path: Path
) -> None:
    own_unit(host)
    own_unit(web)
    standins = StandIns.install(tmp_path / "standins")
    config = write_config(tmp_path, OWN_UNIT_STAGE + fleet_deploy(tmp_path, build_first=False))

    colmena = guard(standins.env(env), "apply", "forge", "web", "--tool", "colmena",
                    config=config)  # fmt: skip
    deploy_rs = guard(standins.env(env), "apply", "forge", "web", "--tool", "deploy-rs",
                      config=config)  # fmt: skip

    assert (colmena.code, deploy_rs.code) == (0, 0), colmena.stderr + deploy_rs.stderr
    assert colmena.report is not None
    assert deploy_rs.report is not None
    flake = tmp_path / "fleet"
    expected = [
        (["colmena", "apply", "switch", "--on", "forge,web"], colmena.report["run_id"]),
        (["deploy", "--targets", f"{flake}#forge", f"{flake}#web"], deploy_rs.report["run_id"]),
    ]
    calls: list[Call] = standins.calls()
    assert [(call.argv, call.env["DEPLOY_GUARD_RUN_ID"]) for call in calls] == expected
    assert [call.env["DEPLOY_GUARD_HOSTS"] for call in calls] == ["forge,web", "forge,web"]
