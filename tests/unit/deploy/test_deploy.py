"""`plan_deploy`: the argv each deploy tool gets, built without running anything.

The expected command lines are those the tools document: `nixos-rebuild switch --flake F#H
--target-host DEST` (port through NIX_SSHOPTS, since --target-host takes none), `colmena apply
--on h1,h2`, `deploy --targets F#h1 F#h2`.
"""

from __future__ import annotations

from typing import Any

import click
import pytest

from deploy_guard.cli.apply import apply
from deploy_guard.config import DEPLOY_TOOLS, DeployConfig
from deploy_guard.deploy.tools import (
    ADAPTERS,
    DeployCommand,
    DeployHost,
    DeployPlan,
    action_problem,
    build_first,
    plan_build,
    plan_deploy,
)
from deploy_guard.errors import ExitCode, UsageError

FORGE = DeployHost("forge", "forge")
WEB = DeployHost("web", "root@10.0.0.7:2222")
DB = DeployHost("db", "deploy@db.lan")


def deploy_config(**fields: Any) -> DeployConfig:
    return DeployConfig.model_validate(fields)


# -- nixos-rebuild -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "host", "argv", "env"),
    [
        ({}, FORGE,
         ("nixos-rebuild", "switch", "--flake", ".#forge", "--target-host", "forge", "--sudo"),
         {}),
        ({"flake": "/srv/fleet", "sudo_flag": "--use-remote-sudo"}, FORGE,
         ("nixos-rebuild", "switch", "--flake", "/srv/fleet#forge", "--target-host", "forge",
          "--use-remote-sudo"),
         {}),
        ({"sudo_flag": ""}, DB,
         ("nixos-rebuild", "switch", "--flake", ".#db", "--target-host", "deploy@db.lan"), {}),
        ({"action": "boot", "extra_args": ["--show-trace", "--fast"]}, FORGE,
         ("nixos-rebuild", "boot", "--flake", ".#forge", "--target-host", "forge", "--sudo",
          "--show-trace", "--fast"),
         {}),
        # --target-host takes no port: it goes to ssh through NIX_SSHOPTS.
        ({}, WEB,
         ("nixos-rebuild", "switch", "--flake", ".#web", "--target-host", "root@10.0.0.7",
          "--sudo"),
         {"NIX_SSHOPTS": "-p 2222"}),
        ({}, DeployHost("v6", "root@[fd00::5]:2200"),
         ("nixos-rebuild", "switch", "--flake", ".#v6", "--target-host", "root@[fd00::5]",
          "--sudo"),
         {"NIX_SSHOPTS": "-p 2200"}),
        # A bare IPv6 address has colons of its own and no port.
        ({}, DeployHost("v6", "fd00::5"),
         ("nixos-rebuild", "switch", "--flake", ".#v6", "--target-host", "fd00::5", "--sudo"),
         {}),
    ],
)  # fmt: skip
def test_nixos_rebuild_runs_one_command_per_host_with_flake_target_and_sudo_flag(
    fields: dict[str, Any], host: DeployHost, argv: tuple[str, ...], env: dict[str, str]
) -> None:
    plan = plan_deploy("nixos-rebuild", [host], deploy_config(**fields))

    assert plan == DeployPlan((DeployCommand(argv, (host.name,), env),), parallel=False)


def test_nixos_rebuild_deploys_hosts_in_order_and_together_only_with_deploy_parallel() -> None:
    hosts = [FORGE, WEB, DB]

    sequential = plan_deploy("nixos-rebuild", hosts, deploy_config())
    together = plan_deploy("nixos-rebuild", hosts, deploy_config(deploy_parallel=True))

    assert [command.hosts for command in sequential.commands] == [("forge",), ("web",), ("db",)]
    assert [command.argv[3] for command in sequential.commands] == [".#forge", ".#web", ".#db"]
    assert [command.env for command in sequential.commands] == [{}, {"NIX_SSHOPTS": "-p 2222"}, {}]
    assert sequential.parallel is False
    assert together.commands == sequential.commands
    assert together.parallel is True


# -- colmena and deploy-rs: one command for every host --------------------------------------


@pytest.mark.parametrize(
    ("tool", "fields", "argv"),
    [
        ("colmena", {}, ("colmena", "apply", "switch", "--on", "forge,web,db")),
        ("colmena", {"extra_args": ["--keep-result", "--verbose"]},
         ("colmena", "apply", "switch", "--on", "forge,web,db", "--keep-result", "--verbose")),
        # [deploy] action is colmena apply's goal.
        ("colmena", {"action": "boot"}, ("colmena", "apply", "boot", "--on", "forge,web,db")),
        ("deploy-rs", {}, ("deploy", "--targets", ".#forge", ".#web", ".#db")),
        # deploy-rs has no action argument: boot and dry-activate are its flags.
        ("deploy-rs", {"action": "boot"},
         ("deploy", "--boot", "--targets", ".#forge", ".#web", ".#db")),
        ("deploy-rs", {"action": "dry-activate"},
         ("deploy", "--dry-activate", "--targets", ".#forge", ".#web", ".#db")),
        ("deploy-rs", {"flake": "github:me/fleet", "extra_args": ["--skip-checks"]},
         ("deploy", "--targets", "github:me/fleet#forge", "github:me/fleet#web",
          "github:me/fleet#db", "--skip-checks")),
        # deploy_parallel is for per-host commands; these tools deploy in parallel themselves.
        ("colmena", {"deploy_parallel": True},
         ("colmena", "apply", "switch", "--on", "forge,web,db")),
    ],
)  # fmt: skip
def test_colmena_and_deploy_rs_run_one_command_naming_every_host(
    tool: str, fields: dict[str, Any], argv: tuple[str, ...]
) -> None:
    plan = plan_deploy(tool, [FORGE, WEB, DB], deploy_config(**fields))

    assert plan == DeployPlan((DeployCommand(argv, ("forge", "web", "db")),), parallel=False)


def test_colmena_and_deploy_rs_ignore_the_ssh_destination_and_sudo_flag() -> None:
    """Both tools read the target from the flake; a port must not leak into NIX_SSHOPTS."""
    config = deploy_config(sudo_flag="--use-remote-sudo")

    for tool in ("colmena", "deploy-rs"):
        (command,) = plan_deploy(tool, [WEB], config).commands
        assert command.env == {}
        assert not any("10.0.0.7" in argument for argument in command.argv)
        assert "--use-remote-sudo" not in command.argv


# -- command: -- CMD... or [deploy] command --------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # No placeholder: once, for every host.
        (["task", "nix:apply"], [(("task", "nix:apply"), ("forge", "web", "db"))]),
        # {host}: once per host, in host order.
        (["./deploy.sh", "{host}"],
         [(("./deploy.sh", "forge"), ("forge",)), (("./deploy.sh", "web"), ("web",)),
          (("./deploy.sh", "db"), ("db",))]),
        (["task", "apply", "host={host}"],
         [(("task", "apply", "host=forge"), ("forge",)), (("task", "apply", "host=web"), ("web",)),
          (("task", "apply", "host=db"), ("db",))]),
        # {hosts} alone: one argument per host.
        (["deploy", "{hosts}", "--fast"],
         [(("deploy", "forge", "web", "db", "--fast"), ("forge", "web", "db"))]),
        # {hosts} inside a longer argument: the names joined with commas.
        (["colmena", "apply", "--on={hosts}"],
         [(("colmena", "apply", "--on=forge,web,db"), ("forge", "web", "db"))]),
        # Both: per host, with the whole list in each command.
        (["sh", "-c", "deploy {host} of {hosts}"],
         [(("sh", "-c", "deploy forge of forge,web,db"), ("forge",)),
          (("sh", "-c", "deploy web of forge,web,db"), ("web",)),
          (("sh", "-c", "deploy db of forge,web,db"), ("db",))]),
        # Arguments are never split or joined: spaces and quotes stay inside one argument.
        (["sh", "-c", "echo 'a b' > /tmp/x"],
         [(("sh", "-c", "echo 'a b' > /tmp/x"), ("forge", "web", "db"))]),
    ],
)  # fmt: skip
def test_command_template_expands_host_placeholders(
    template: list[str], expected: list[tuple[tuple[str, ...], tuple[str, ...]]]
) -> None:
    plan = plan_deploy("command", [FORGE, WEB, DB], deploy_config(), template)

    assert [(command.argv, command.hosts) for command in plan.commands] == expected
    assert all(command.env == {} for command in plan.commands)


def test_command_from_config_is_used_without_dash_dash_and_overridden_by_it() -> None:
    config = deploy_config(tool="command", command=["task", "apply", "host={host}"])

    configured = plan_deploy("command", [FORGE], config)
    given = plan_deploy("command", [FORGE], config, ["./other.sh"])

    assert [c.argv for c in configured.commands] == [("task", "apply", "host=forge")]
    assert [c.argv for c in given.commands] == [("./other.sh",)]


def test_per_host_command_runs_in_parallel_only_with_deploy_parallel() -> None:
    per_host = ["./deploy.sh", "{host}"]

    assert plan_deploy("command", [FORGE, WEB], deploy_config(), per_host).parallel is False
    together = plan_deploy("command", [FORGE, WEB], deploy_config(deploy_parallel=True), per_host)
    assert together.parallel is True
    assert len(together.commands) == 2
    # A single command has nothing to run beside it.
    once = plan_deploy("command", [FORGE, WEB], deploy_config(deploy_parallel=True), ["true"])
    assert len(once.commands) == 1


# -- errors and edge cases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "command", "message"),
    [
        ("command", [], "--tool command needs a command"),
        ("ansible", [], "unknown deploy tool 'ansible'"),
    ],
)
def test_impossible_tool_and_command_combinations_are_usage_errors(
    tool: str, command: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        plan_deploy(tool, [FORGE], deploy_config(), command)

    assert caught.value.exit_code is ExitCode.CONFIG


@pytest.mark.parametrize("tool", ["nixos-rebuild", "colmena", "deploy-rs", "command"])
def test_no_hosts_means_no_commands(tool: str) -> None:
    command = ["./deploy.sh", "{host}"] if tool == "command" else []

    assert plan_deploy(tool, [], deploy_config(), command) == DeployPlan(())


def test_plans_are_values_that_do_not_share_state() -> None:
    """The CLI plans twice (before the guard, for usage errors; after the gate, for real)."""
    config = deploy_config(extra_args=["--show-trace"])

    first = plan_deploy("nixos-rebuild", [WEB], config)
    second = plan_deploy("nixos-rebuild", [WEB], config)

    assert first == second
    assert first.commands[0].env is not second.commands[0].env
    assert config.extra_args == ["--show-trace"]


# -- arguments after `--` for a deploy tool (issue 14) ---------------------------------------


@pytest.mark.parametrize(
    ("tool", "argv"),
    [
        ("nixos-rebuild",
         ("nixos-rebuild", "switch", "--flake", ".#forge", "--target-host", "forge", "--sudo",
          "--fast", "--show-trace", "--build-host", "nixbuild")),
        ("colmena",
         ("colmena", "apply", "switch", "--on", "forge", "--fast", "--show-trace", "--build-host",
          "nixbuild")),
        ("deploy-rs",
         ("deploy", "--targets", ".#forge", "--fast", "--show-trace", "--build-host",
          "nixbuild")),
    ],
)  # fmt: skip
def test_arguments_after_dash_dash_are_appended_to_the_tools_command_after_extra_args(
    tool: str, argv: tuple[str, ...]
) -> None:
    config = deploy_config(extra_args=["--fast"])

    plan = plan_deploy(tool, [FORGE], config, ["--show-trace", "--build-host", "nixbuild"])

    assert [command.argv for command in plan.commands] == [argv]


# -- [deploy] action, per tool ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "action"),
    [
        ("nixos-rebuild", "switch"), ("nixos-rebuild", "boot"), ("nixos-rebuild", "test"),
        ("nixos-rebuild", "dry-activate"), ("nixos-rebuild", "build"),
        ("colmena", "switch"), ("colmena", "push"), ("colmena", "keys"),
        ("colmena", "dry-activate"),
        ("deploy-rs", "switch"), ("deploy-rs", "boot"), ("deploy-rs", "dry-activate"),
        # A command has no action: whatever it does is its own business.
        ("command", "anything"),
    ],
)  # fmt: skip
def test_actions_the_tool_knows_are_accepted(tool: str, action: str) -> None:
    assert action_problem(tool, action) is None


@pytest.mark.parametrize(
    ("tool", "action"),
    [
        ("nixos-rebuild", "swtich"),  # the typo that used to surface after the backups
        ("nixos-rebuild", "edit"),  # a real action, but it deploys nothing
        ("nixos-rebuild", "build-vm"),
        ("colmena", "upload"),
        ("colmena", "dry-build"),
        ("deploy-rs", "test"),  # deploy-rs has no flag for it
    ],
)
def test_actions_the_tool_does_not_know_are_named_with_the_ones_it_does(
    tool: str, action: str
) -> None:
    problem = action_problem(tool, action)

    assert problem is not None
    assert f"{action!r} is not a {tool} action" in problem
    assert ", ".join(ADAPTERS[tool].actions or ()) in problem


# -- [deploy] build_first --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "fields", "expected"),
    [
        ("nixos-rebuild", {}, True),
        ("colmena", {}, True),
        ("deploy-rs", {}, False),
        ("command", {}, False),
        ("nixos-rebuild", {"build_first": False}, False),
        ("colmena", {"build_first": False}, False),
        ("deploy-rs", {"build_first": False}, False),
    ],
)
def test_build_first_defaults_to_the_tools_that_have_a_build(
    tool: str, fields: dict[str, Any], expected: bool
) -> None:
    assert build_first(tool, deploy_config(**fields)) is expected


@pytest.mark.parametrize("tool", ["deploy-rs", "command"])
def test_build_first_for_a_tool_without_a_build_is_a_usage_error(tool: str) -> None:
    with pytest.raises(UsageError, match=f"not {tool}") as raised:
        build_first(tool, deploy_config(build_first=True))
    assert str(raised.value) == (
        f"[deploy] build_first works with nixos-rebuild and colmena, not {tool}; remove it"
    )


def test_nixos_rebuild_builds_each_host_locally_with_the_extra_arguments() -> None:
    config = deploy_config(flake="/srv/fleet", extra_args=["--fast"], sudo_flag="--sudo")

    plan = plan_build("nixos-rebuild", [FORGE, WEB], config, ["--build-host", "nixbuild"])

    assert [(command.argv, command.hosts, command.env) for command in plan.commands] == [
        (("nixos-rebuild", "build", "--flake", "/srv/fleet#forge", "--fast", "--build-host",
          "nixbuild"), ("forge",), {}),
        (("nixos-rebuild", "build", "--flake", "/srv/fleet#web", "--fast", "--build-host",
          "nixbuild"), ("web",), {}),
    ]  # fmt: skip
    assert plan.parallel is False


def test_colmena_builds_every_host_with_one_command() -> None:
    plan = plan_build("colmena", [FORGE, WEB], deploy_config(), show_trace=True)

    assert [command.argv for command in plan.commands] == [
        ("colmena", "build", "--on", "forge,web", "--show-trace")
    ]


def test_show_trace_is_passed_to_the_build_once() -> None:
    config = deploy_config(extra_args=["--show-trace"])

    (command,) = plan_build("nixos-rebuild", [FORGE], config, show_trace=True).commands

    assert command.argv.count("--show-trace") == 1
    (plain,) = plan_build("nixos-rebuild", [FORGE], deploy_config()).commands
    assert "--show-trace" not in plain.argv


# -- the tool list ---------------------------------------------------------------------------


def test_the_deploy_tools_are_listed_once_for_the_config_the_cli_and_the_adapters() -> None:
    assert DEPLOY_TOOLS == ("nixos-rebuild", "colmena", "deploy-rs", "command")
    (tool,) = [param for param in apply.params if param.name == "tool"]
    assert isinstance(tool.type, click.Choice)
    assert tuple(tool.type.choices) == DEPLOY_TOOLS
    assert DeployConfig.model_json_schema()["properties"]["tool"]["enum"] == list(DEPLOY_TOOLS)
    config = deploy_config(command=["true"])
    assert all(plan_deploy(name, [FORGE], config).commands for name in DEPLOY_TOOLS)
    with pytest.raises(UsageError, match="unknown deploy tool"):
        plan_deploy("morph", [FORGE], config)


def test_every_deploy_tool_of_the_config_has_one_adapter_and_no_adapter_is_unlisted() -> None:
    # A new tool: a module in deploy/tools/, its row in ADAPTERS, its entry in DeployTool.
    assert set(ADAPTERS) == set(DEPLOY_TOOLS)
    assert all(name == adapter.name for name, adapter in ADAPTERS.items())
