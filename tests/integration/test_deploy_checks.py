"""`apply` checks the deploy before any backup runs, builds first, and deploys through the
deploy destination while the guard logs in as the module's guard user (issue 13), on the
testbed with the real `nix eval` of a tiny flake and the stand-in deploy tools.

"Nothing started" is proven from the host's own journal (`started_units`: systemd's job
messages) and from the stand-ins' record (no build, no deploy).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from tests.integration.guard import Guarded, guard, oneshot, started_units, write_config
from tests.integration.standins import StandIns
from tests.integration.test_polkit import GUARD_USER, guard_ssh_config, install_guard_user
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import SSH_OPTIONS, TestHost
from tests.testbed.testbed import Testbed

UNIT: Final = "restic-backups-t-forge.service"
STAGE: Final = f"""
[[stages]]
name = "applications"
timeout = "1m"
units = ["{UNIT}"]
"""
EVERY_UNIT: Final = (*BACKUP_UNITS, UNIT)


@pytest.fixture(autouse=True)
def need_nix() -> None:
    if shutil.which("nix") is None:
        pytest.fail("nix is not installed (the deploy checks run the real nix eval)")


def fleet(directory: Path, *names: str) -> Path:
    """A flake without inputs whose three host lists (nixos-rebuild, colmena, deploy-rs)
    name ``names``: only attribute names are ever evaluated, so the values are empty."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes = " ".join(f"{name} = {{ }};" for name in names)
    (directory / "flake.nix").write_text(
        "{ outputs = { self }: {\n"
        f"  nixosConfigurations = {{ {nodes} }};\n"
        f"  colmenaHive.deploymentConfig = {{ {nodes} }};\n"
        f"  deploy.nodes = {{ {nodes} }};\n"
        "}; }\n"
    )
    return directory


def setup(host: TestHost, tmp_path: Path, body: str = "", *names: str) -> Path:
    """The host's own backup unit and a config deploying from a flake with ``names``."""
    host.install_unit(UNIT, oneshot("true"))
    host.daemon_reload()
    flake = fleet(tmp_path / "fleet", *(names or ("forge",)))
    return write_config(tmp_path, f'{STAGE}\n[deploy]\nflake = "{flake}"\n{body}')


def nothing_started(host: TestHost, standins: StandIns, result: Guarded) -> None:
    assert started_units(host, EVERY_UNIT) == set(), result.stderr
    assert standins.calls() == [], result.stderr


@pytest.fixture
def standins(tmp_path: Path) -> StandIns:
    return StandIns.install(tmp_path / "standins")


# -- before stage 1: exit 3, nothing started -------------------------------------------------


def test_bad_action_stops_apply_before_any_unit_starts(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    config = setup(host, tmp_path, 'action = "swtich"')

    result = guard(standins.env(dg_env), "apply", "forge", config=config)

    assert result.code == 3, result.stderr
    assert "action 'swtich' is not a nixos-rebuild action" in result.stderr
    nothing_started(host, standins, result)


def test_missing_tool_stops_apply_before_any_unit_starts(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    (standins.bin / "colmena").unlink()
    config = setup(host, tmp_path)
    env = standins.env(dg_env)
    env["PATH"] = f"{standins.bin}:/usr/bin:/bin"  # no colmena anywhere on it

    result = guard(env, "apply", "forge", "--tool", "colmena", config=config)

    assert result.code == 3, result.stderr
    assert "colmena is not on PATH" in result.stderr
    nothing_started(host, standins, result)


def test_missing_flake_attribute_stops_apply_before_any_unit_starts(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    config = setup(host, tmp_path, "", "web", "db")

    result = guard(standins.env(dg_env), "apply", "forge", config=config)

    assert result.code == 3, result.stderr
    assert "has no nixosConfigurations.forge (it has: db, web)" in result.stderr
    nothing_started(host, standins, result)


def test_guard_user_without_a_deploy_destination_is_refused_before_stage_1(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    """docs/nix.md's setup: ~/.ssh/config logs in to forge as the guard user."""
    install_guard_user(testbed, host, [UNIT])
    home = guard_ssh_config(testbed, tmp_path / "home").parent.parent
    config = setup(host, tmp_path)

    result = guard({**standins.env(dg_env), "HOME": str(home)}, "apply", "forge", config=config)

    assert result.code == 3, result.stderr
    assert f"the guard logs in as {GUARD_USER}" in result.stderr
    assert "set [hosts.forge] deploy_target" in result.stderr
    nothing_started(host, standins, result)


def test_failing_build_exits_4_before_any_unit_starts_with_the_build_in_the_report(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    standins.fail_with(1)
    config = setup(host, tmp_path)

    result = guard(standins.env(dg_env), "apply", "forge", config=config)

    assert result.code == 4, result.stderr
    assert started_units(host, EVERY_UNIT) == set()
    (call,) = standins.calls()  # the build, and nothing after it
    flake = str(tmp_path / "fleet")
    assert call.argv == ["nixos-rebuild", "build", "--flake", f"{flake}#forge"]
    assert result.report is not None
    assert result.report["exit_code"] == 4
    assert result.report["hosts"] == []
    build = result.report["deploy"]["build"]
    assert build["exit_code"] == 1
    assert isinstance(build["duration_s"], float)
    assert [step["command"] for step in build["steps"]] == [call.argv]
    assert [step["exit_code"] for step in result.report["deploy"]["steps"]] == [None]
    assert "build failed: nothing was started on the hosts" in result.stderr


# -- two identities: the guard user for the backups, root for the deploy ---------------------

# nixos-rebuild that logs in where --target-host says, as the real one would, and records
# who it was there.
_LOGGING_IN_NIXOS_REBUILD: Final = """#!{python}
import json, subprocess, sys
args = sys.argv[1:]
entry = {{"argv": ["nixos-rebuild", *args]}}
if "--target-host" in args:
    target = args[args.index("--target-host") + 1]
    done = subprocess.run(["ssh", "-F", {config!r}, *{options!r}, target, "id -un"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    entry["user"], entry["status"] = done.stdout.strip(), done.returncode
with open({record!r}, "a") as record:
    record.write(json.dumps(entry) + "\\n")
"""


def test_guard_user_runs_the_backups_and_the_deploy_logs_in_as_the_deploy_target(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    install_guard_user(testbed, host, [UNIT])
    ssh_config = guard_ssh_config(testbed, tmp_path / "home")
    bin_directory, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_directory.mkdir()
    tool = bin_directory / "nixos-rebuild"
    tool.write_text(_LOGGING_IN_NIXOS_REBUILD.format(
        python=sys.executable, config=str(ssh_config), options=list(SSH_OPTIONS),
        record=str(record)))  # fmt: skip
    tool.chmod(0o755)
    config = setup(host, tmp_path, '[hosts.forge]\ndeploy_target = "root@forge"\n')
    env = {**dg_env, "HOME": str(ssh_config.parent.parent),
           "PATH": f"{bin_directory}:{dg_env['PATH']}"}  # fmt: skip

    result = guard(env, "apply", "forge", config=config)

    assert result.code == 0, result.stderr
    assert result.units()[UNIT]["outcome"] == "succeeded"
    logins = host.ssh("journalctl -b -q -o cat _COMM=sshd | grep 'Accepted publickey for'").stdout
    assert f"Accepted publickey for {GUARD_USER}" in logins
    calls: list[dict[str, Any]] = [json.loads(line) for line in record.read_text().splitlines()]
    flake = f"{tmp_path / 'fleet'}#forge"
    assert [call["argv"] for call in calls] == [
        ["nixos-rebuild", "build", "--flake", flake],
        ["nixos-rebuild", "switch", "--flake", flake, "--target-host", "root@forge", "--sudo"],
    ]
    assert (calls[1]["user"], calls[1]["status"]) == ("root", 0)
    assert isinstance(result.report and result.report["deploy"]["build"]["duration_s"], float)


def test_plan_shows_the_guard_and_the_deploy_destination_of_each_host(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, '[hosts.forge]\nssh = "forge"\ndeploy_target = "root@forge.lan"\n'
    )

    result = guard(dg_env, "plan", "forge", config=config)

    assert result.code == 0, result.stderr
    assert result.report is not None
    (entry,) = result.report["hosts"]
    assert (entry["guard_destination"], entry["deploy_destination"]) == ("forge", "root@forge.lan")
    assert "guard as   forge" in result.stderr
    assert "deploy via root@forge.lan" in result.stderr


# -- apply --dry-run, pass-through arguments, --show-trace -----------------------------------


def test_dry_run_shows_both_destinations_and_the_commands_and_starts_nothing(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    config = setup(host, tmp_path, '[hosts.forge]\nssh = "forge"\ndeploy_target = "root@forge"\n')
    arguments = ("--show-trace", "--build-host", "nixbuild")

    result = guard(standins.env(dg_env), "apply", "forge", "--dry-run", "--tool",
                   "nixos-rebuild", config=config, command=arguments)  # fmt: skip

    assert result.code == 0, result.stderr
    nothing_started(host, standins, result)
    assert result.report is not None
    (entry,) = result.report["hosts"]
    assert (entry["guard_destination"], entry["deploy_destination"]) == ("forge", "root@forge")
    assert [unit["unit"] for stage in entry["stages"] for unit in stage["units"]] == [UNIT]
    flake = f"{tmp_path / 'fleet'}#forge"
    assert result.report["deploy"] == {
        "tool": "nixos-rebuild",
        "build": [["nixos-rebuild", "build", "--flake", flake, *arguments]],
        "commands": [["nixos-rebuild", "switch", "--flake", flake, "--target-host", "root@forge",
                      "--sudo", *arguments]],
        "problems": [],
    }  # fmt: skip
    assert "guard as   forge" in result.stderr
    assert "deploy via root@forge" in result.stderr
    assert "would deploy: nixos-rebuild switch" in result.stderr


def test_arguments_after_dash_dash_go_to_the_tool_given_with_tool(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    config = setup(host, tmp_path)

    result = guard(standins.env(dg_env), "apply", "forge", "--tool", "colmena", config=config,
                   command=("--show-trace", "--build-host", "nixbuild"))  # fmt: skip

    assert result.code == 0, result.stderr
    assert [call.argv for call in standins.calls()] == [
        ["colmena", "build", "--on", "forge", "--show-trace", "--build-host", "nixbuild"],
        ["colmena", "apply", "switch", "--on", "forge", "--show-trace", "--build-host",
         "nixbuild"],
    ]  # fmt: skip
    assert result.report is not None
    assert result.report["deploy"]["tool"] == "colmena"


# A nix that records its arguments, then runs the real one.
_RECORDING_NIX: Final = """#!/bin/sh
printf '%s\\n' "$*" >> {record}
exec {nix} "$@"
"""


def test_show_trace_reaches_every_nix_call_and_the_build(
    host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    record = tmp_path / "nix-calls"
    nix = shutil.which("nix")
    assert nix is not None
    (standins.bin / "nix").write_text(_RECORDING_NIX.format(record=record, nix=nix))
    (standins.bin / "nix").chmod(0o755)
    config = setup(host, tmp_path, f'\n[inventory]\nfrom = "colmena"\nflake = "{tmp_path}/fleet"\n')

    result = guard(standins.env(dg_env), "apply", "forge", "--show-trace", config=config)

    assert result.code == 0, result.stderr
    nix_calls = record.read_text().splitlines()
    assert len(nix_calls) == 2, nix_calls  # the inventory, the attribute check
    assert all(" --show-trace " in f" {call} " for call in nix_calls), nix_calls
    assert "colmenaHive.deploymentConfig" in nix_calls[0]
    assert "nixosConfigurations --apply builtins.attrNames" in nix_calls[1]
    assert [call.argv[:2] + call.argv[-1:] for call in standins.calls()] == [
        ["nixos-rebuild", "build", "--show-trace"],
        ["nixos-rebuild", "switch", "--sudo"],
    ]


def test_dry_run_with_only_the_guard_user_shows_the_plan_and_the_refusal_with_exit_3(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], standins: StandIns, tmp_path: Path
) -> None:
    install_guard_user(testbed, host, [UNIT])
    home = guard_ssh_config(testbed, tmp_path / "home").parent.parent
    config = setup(host, tmp_path)

    result = guard({**standins.env(dg_env), "HOME": str(home)}, "apply", "forge", "--dry-run",
                   config=config)  # fmt: skip

    assert result.code == 3, result.stderr
    nothing_started(host, standins, result)
    assert result.report is not None
    (entry,) = result.report["hosts"]
    assert entry["error"] is None  # the guard user could plan: it reads what it needs
    assert entry["guard_destination"] == "forge"
    assert entry["deploy_destination"].startswith(f"NONE: forge: the guard logs in as {GUARD_USER}")
    (problem,) = result.report["deploy"]["problems"]
    assert "set [hosts.forge] deploy_target" in problem
    assert "deploy check failed: forge: the guard logs in as" in result.stderr
