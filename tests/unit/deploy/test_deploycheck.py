"""The deploy checks `apply` runs before any backup, and each host's two destinations.

`ssh -G` and `nix eval` are replaced by functions that answer like them (the integration
tests run the real ones); everything else is the real code.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from deploy_guard.config import parse_config
from deploy_guard.deploy.check import (
    DeployCheck,
    DeployCheckFailed,
    attribute_problems,
    check_deploy,
    deploy_hosts,
    executable_problem,
    guard_user_problem,
    nodes_argv,
    routes,
)
from deploy_guard.deploy.tools import DeployPlan, plan_build, plan_deploy
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.guard.engine import HostTarget
from deploy_guard.hosts.inventory import InventoryHost, NixEval, nix_eval_argv
from deploy_guard.hosts.targets import resolve_targets

GUARD = "deploy-guard"


def users(table: dict[str, str]) -> Any:
    """`login_user` as ssh -G would answer for an ssh config: alias -> User."""

    def user_of(destination: str, _config: Path | None) -> str:
        if "@" in destination:
            return destination.split("@", 1)[0]
        return table.get(destination, "root")

    return user_of


def targets(body: dict[str, Any], *names: str,
            flake: dict[str, InventoryHost] | None = None) -> tuple[HostTarget, ...]:  # fmt: skip
    return resolve_targets(parse_config(body), list(names), flake_hosts=flake, env={})


# -- the two destinations ---------------------------------------------------------------------


def test_deploy_target_is_the_deploy_destination_and_ssh_stays_the_guard_destination() -> None:
    body = {"hosts": {"forge": {"ssh": "deploy-guard@forge.lan", "deploy_target": "root@forge"}}}

    (target,) = targets(body, "forge")

    assert target.destination == "deploy-guard@forge.lan"
    assert target.deploy_destination == "root@forge"
    assert deploy_hosts([target])[0].destination == "root@forge"


def test_flake_target_is_the_deploy_destination_when_ssh_names_the_guard() -> None:
    flake = {"forge": InventoryHost("forge", "root@forge.lan:2222")}
    body = {"hosts": {"forge": {"ssh": "deploy-guard@forge.lan"}}}

    (target,) = targets(body, "forge", flake=flake)

    assert target.destination == "deploy-guard@forge.lan"
    assert target.deploy_destination == "root@forge.lan:2222"


def test_deploy_target_wins_over_the_flake_target() -> None:
    flake = {"forge": InventoryHost("forge", "root@forge.lan")}
    body = {"hosts": {"forge": {"deploy_target": "admin@forge.lan"}}}

    (target,) = targets(body, "forge", flake=flake)

    assert target.deploy_destination == "admin@forge.lan"


def test_without_either_no_deploy_destination_is_known() -> None:
    (target,) = targets({"hosts": {"forge": {"ssh": "root@forge.lan"}}}, "forge")

    assert target.deploy_destination is None
    # The deploy then goes where the guard goes, as before.
    assert deploy_hosts([target])[0].destination == "root@forge.lan"


def test_root_as_guard_user_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"deploy\.guard_user: the guard user is never root"):
        parse_config({"deploy": {"guard_user": "root"}})


def test_empty_deploy_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"hosts\.forge\.deploy_target"):
        parse_config({"hosts": {"forge": {"deploy_target": ""}}})


# -- the guard user cannot deploy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "ssh_users"),
    [
        ({"hosts": {"forge": {"ssh": "deploy-guard@forge.lan"}}}, {}),
        # docs/nix.md's recommended ssh config: `Host forge` / `User deploy-guard`.
        ({}, {"forge": "deploy-guard"}),
        ({"hosts": {"forge": {"ssh": "guard@forge.lan"}}, "deploy": {"guard_user": "guard"}}, {}),
    ],
)
def test_guard_user_with_no_deploy_destination_is_refused_naming_the_key(
    body: dict[str, Any], ssh_users: dict[str, str]
) -> None:
    (target,) = targets(body, "forge")
    guard_user = parse_config(body).deploy.guard_user

    problem = guard_user_problem(target, "nixos-rebuild", guard_user, users(ssh_users))

    assert problem is not None
    assert "[hosts.forge] deploy_target" in problem
    assert "no deploy destination is known" in problem


def test_deploy_target_that_logs_in_as_the_guard_user_is_refused() -> None:
    body = {"hosts": {"forge": {"deploy_target": "forge-admin"}}}
    (target,) = targets(body, "forge")

    problem = guard_user_problem(target, "nixos-rebuild", GUARD, users({"forge-admin": GUARD}))

    assert problem is not None
    assert "'forge-admin' logs in as the guard user" in problem


@pytest.mark.parametrize(
    ("body", "tool"),
    [
        ({"hosts": {"forge": {"ssh": "deploy-guard@forge", "deploy_target": "root@forge"}}},
         "nixos-rebuild"),
        ({"hosts": {"forge": {"ssh": "root@forge"}}}, "nixos-rebuild"),
        ({"hosts": {"forge": {"ssh": "alice@forge", "become": "sudo"}}}, "nixos-rebuild"),
        # colmena, deploy-rs and commands deploy with their own settings.
        ({"hosts": {"forge": {"ssh": "deploy-guard@forge"}}}, "colmena"),
        ({"hosts": {"forge": {"ssh": "deploy-guard@forge"}}}, "deploy-rs"),
        ({"hosts": {"forge": {"ssh": "deploy-guard@forge"}}}, "command"),
    ],
)  # fmt: skip
def test_a_deploy_that_does_not_log_in_as_the_guard_user_passes(
    body: dict[str, Any], tool: str
) -> None:
    (target,) = targets(body, "forge")

    assert guard_user_problem(target, tool, GUARD, users({})) is None


def test_local_host_is_never_refused() -> None:
    (target,) = targets({}, "local")

    assert guard_user_problem(target, "nixos-rebuild", GUARD, users({"local": GUARD})) is None


# -- executables, flake attributes ------------------------------------------------------------


def test_executable_problem_looks_on_the_given_path(tmp_path: Path) -> None:
    program = tmp_path / "colmena"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)

    assert executable_problem("colmena", str(tmp_path)) is None
    assert executable_problem("deploy", str(tmp_path)) == f"deploy is not on PATH ({tmp_path})"
    assert executable_problem(str(program), "") is None
    missing = executable_problem("./nowhere.sh", str(tmp_path))
    assert missing == "the deploy command ./nowhere.sh is not an executable file"


@pytest.mark.parametrize(
    ("tool", "attribute"),
    [
        ("nixos-rebuild", "/srv/fleet#nixosConfigurations"),
        ("colmena", "/srv/fleet#colmenaHive.deploymentConfig"),
        ("deploy-rs", "/srv/fleet#deploy.nodes"),
    ],
)
def test_nodes_argv_evaluates_the_attribute_names_only(tool: str, attribute: str) -> None:
    argv = nodes_argv(tool, "/srv/fleet", show_trace=True)

    assert argv is not None
    assert argv[:2] == ["nix", "eval"]
    assert argv[-3:] == [attribute, "--apply", "builtins.attrNames"]
    assert "--show-trace" in argv
    assert "--json" in argv
    assert "--no-write-lock-file" in argv
    assert "--show-trace" not in (nodes_argv(tool, "/srv/fleet") or [])
    assert nodes_argv("command", ".") is None


def test_show_trace_reaches_the_inventory_eval() -> None:
    assert "--show-trace" in nix_eval_argv("colmena", ".", show_trace=True)
    assert "--show-trace" not in nix_eval_argv("colmena", ".")


def test_missing_attributes_name_the_host_and_what_the_flake_has() -> None:
    hosts = deploy_hosts(targets({}, "forge", "web", "root@10.0.0.5:2222"))

    problems = attribute_problems("nixos-rebuild", ".", hosts, ["forge", "db"])

    assert problems == [
        "web: the flake . has no nixosConfigurations.web (it has: db, forge)",
        # A raw destination's attribute is its host part, as nixos-rebuild gets it.
        "root@10.0.0.5:2222: the flake . has no nixosConfigurations.10.0.0.5 (it has: db, forge)",
    ]
    assert attribute_problems("deploy-rs", ".", hosts[:1], ["forge"]) == []


# -- check_deploy: everything at once, before any backup --------------------------------------


def check(body: dict[str, Any], tool: str, *names: str, path: str,
          arguments: tuple[str, ...] = ()) -> DeployCheck:  # fmt: skip
    config = parse_config(body)
    selected = targets(body, *names)
    hosts = deploy_hosts(selected)
    plans = (plan_build(tool, hosts, config.deploy, arguments) if tool != "command"
             else DeployPlan(()), plan_deploy(tool, hosts, config.deploy, arguments))  # fmt: skip
    return DeployCheck(tool, config.deploy, plans, selected, path=path)


def tool_dir(tmp_path: Path, *names: str) -> str:
    for name in names:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return str(tmp_path)


def test_every_problem_is_reported_at_once_and_is_exit_3(tmp_path: Path) -> None:
    body = {"deploy": {"action": "swtich"}, "hosts": {"web": {"ssh": "deploy-guard@web"}}}
    evaluated: list[NixEval] = []

    def evaluate(request: NixEval) -> object:
        evaluated.append(request)
        return ["forge"]

    with pytest.raises(DeployCheckFailed) as caught:
        check_deploy(check(body, "nixos-rebuild", "forge", "web", path=tool_dir(tmp_path)),
                     user_of=users({}), evaluate=evaluate)  # fmt: skip

    assert caught.value.exit_code is ExitCode.CONFIG
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("[deploy] action 'swtich' is not a nixos-rebuild action")
    assert problems[1].startswith("nixos-rebuild is not on PATH")
    assert problems[2].startswith("web: the guard logs in as deploy-guard")
    assert problems[3].startswith("web: the flake . has no nixosConfigurations.web")
    assert "no backup was started" in str(caught.value)
    assert [request.argv[-3] for request in evaluated] == [".#nixosConfigurations"]


def test_a_deploy_that_can_run_passes(tmp_path: Path) -> None:
    body = {"hosts": {"forge": {"ssh": "deploy-guard@forge", "deploy_target": "root@forge"}}}

    check_deploy(check(body, "nixos-rebuild", "forge", path=tool_dir(tmp_path, "nixos-rebuild")),
                 user_of=users({}), evaluate=lambda _request: ["forge"])  # fmt: skip


def test_a_failed_evaluation_is_a_problem_with_nixs_message(tmp_path: Path) -> None:
    def evaluate(_request: NixEval) -> object:
        raise ConfigError(None, ["deploy check: `nix eval ...` failed with exit status 1"])

    with pytest.raises(DeployCheckFailed) as caught:
        check_deploy(check({}, "colmena", "forge", path=tool_dir(tmp_path, "colmena")),
                     user_of=users({}), evaluate=evaluate)  # fmt: skip

    assert caught.value.problems == ("deploy check: `nix eval ...` failed with exit status 1",)


def test_a_command_is_checked_for_its_executable_only(tmp_path: Path) -> None:
    def evaluate(_request: NixEval) -> object:
        raise AssertionError("a command has no flake attribute to check")

    request = check({}, "command", "forge", path=str(tmp_path), arguments=("no-such-tool", "x"))
    with pytest.raises(DeployCheckFailed) as caught:
        check_deploy(request, user_of=users({"forge": GUARD}), evaluate=evaluate)

    assert caught.value.problems == (f"no-such-tool is not on PATH ({tmp_path})",)


# -- what plan shows --------------------------------------------------------------------------


def test_routes_show_both_destinations_and_the_refusal() -> None:
    body = {"hosts": {
        "forge": {"ssh": "deploy-guard@forge.lan", "deploy_target": "root@forge.lan"},
        "web": {"ssh": "deploy-guard@web.lan"},
        "db": {"ssh": "alice@db.lan", "become": "sudo"},
    }}  # fmt: skip
    selected = targets(body, "forge", "web", "db")

    shown = routes(selected, "nixos-rebuild", GUARD, users({}))
    colmena = routes(selected, "colmena", GUARD, users({}))

    assert (shown["forge"].guard, shown["forge"].deploy) == (
        "deploy-guard@forge.lan",
        "root@forge.lan",
    )
    assert shown["forge"].problem is None
    assert shown["web"].problem is not None
    assert "deploy_target" in shown["web"].problem
    assert (shown["db"].guard, shown["db"].deploy) == ("alice@db.lan (sudo)", "alice@db.lan")
    assert colmena["forge"].deploy == "colmena's own deployment.targetHost/targetUser"
    assert colmena["web"].problem is None
