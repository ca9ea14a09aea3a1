"""The deploy commands `apply` runs after the gate opened: built here (pure), run by `apply`.

One adapter per tool. Every command is an argv list; nothing is ever passed through a shell.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploy_guard.config import DeployConfig
from deploy_guard.errors import UsageError
from deploy_guard.sshdest import split_port

HOST_PLACEHOLDER = "{host}"
HOSTS_PLACEHOLDER = "{hosts}"


@dataclass(frozen=True, slots=True)
class DeployHost:
    """A host to deploy: its name (the flake attribute) and its SSH destination."""

    name: str
    destination: str


@dataclass(frozen=True, slots=True)
class DeployCommand:
    """One command to run, the hosts it deploys, and extra environment for it."""

    argv: tuple[str, ...]
    hosts: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeployPlan:
    """Commands in order; `parallel` when they may run at the same time."""

    commands: tuple[DeployCommand, ...]
    parallel: bool = False


def _nixos_rebuild(hosts: Sequence[DeployHost], config: DeployConfig) -> DeployPlan:
    commands = []
    for host in hosts:
        if host.destination == "local":  # this machine: no --target-host, its own hostname
            argv = ["nixos-rebuild", config.action, "--flake", f"{config.flake}#{local_name()}"]
            argv += [config.sudo_flag] if config.sudo_flag else []
            commands.append(DeployCommand((*argv, *config.extra_args), (host.name,)))
            continue
        destination, port = split_port(host.destination)
        attribute = flake_attribute(host)
        argv = ["nixos-rebuild", config.action, "--flake", f"{config.flake}#{attribute}"]
        argv += ["--target-host", destination]
        argv += [config.sudo_flag] if config.sudo_flag else []
        # nixos-rebuild takes no port in --target-host; it reads ssh options from NIX_SSHOPTS,
        # which keeps whatever the user already put there.
        user_options = os.environ.get("NIX_SSHOPTS", "")
        env = {"NIX_SSHOPTS": f"{user_options} -p {port}".strip()} if port else {}
        commands.append(DeployCommand((*argv, *config.extra_args), (host.name,), env))
    return DeployPlan(tuple(commands), parallel=config.deploy_parallel)


def local_name() -> str:
    """This machine's name, as `nixos-rebuild` without --flake#NAME would use it."""
    return socket.gethostname().split(".")[0]


def flake_attribute(host: DeployHost) -> str:
    """The flake attribute of a host: its name, or for a host given as a raw destination
    (`root@10.0.0.5:2222`), the host part of it."""
    if "@" not in host.name and ":" not in host.name:
        return host.name
    base, _port = split_port(host.name)
    return base.rsplit("@", 1)[-1].strip("[]")


def _colmena(hosts: Sequence[DeployHost], config: DeployConfig) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    argv = ("colmena", "apply", "--on", ",".join(names), *config.extra_args)
    return DeployPlan((DeployCommand(argv, names),))


def _deploy_rs(hosts: Sequence[DeployHost], config: DeployConfig) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    targets = [f"{config.flake}#{name}" for name in names]
    return DeployPlan(
        (DeployCommand(("deploy", "--targets", *targets, *config.extra_args), names),)
    )


def expand_command(template: Sequence[str], hosts: Sequence[DeployHost],
                   parallel: bool = False) -> DeployPlan:  # fmt: skip
    """`-- CMD...`: run once, or once per host when an argument contains ``{host}``.

    An argument that is exactly ``{hosts}`` becomes one argument per host; inside a longer
    argument ``{hosts}`` becomes the names joined with commas (like colmena's --on).
    """
    names = tuple(host.name for host in hosts)

    def expand(argument: str, host: str | None) -> list[str]:
        if argument == HOSTS_PLACEHOLDER:
            return list(names)
        argument = argument.replace(HOSTS_PLACEHOLDER, ",".join(names))
        return [argument.replace(HOST_PLACEHOLDER, host) if host is not None else argument]

    if any(HOST_PLACEHOLDER in argument for argument in template):
        commands = tuple(
            DeployCommand(tuple(a for arg in template for a in expand(arg, name)), (name,))
            for name in names
        )
        return DeployPlan(commands, parallel=parallel)
    argv = tuple(a for arg in template for a in expand(arg, None))
    return DeployPlan((DeployCommand(argv, names),))


def plan_deploy(
    tool: str, hosts: Sequence[DeployHost], config: DeployConfig, command: Sequence[str] = ()
) -> DeployPlan:
    """The commands that deploy ``hosts`` with ``tool``.

    Raises:
        UsageError: tool `command` without a command, or a command given with another tool.
    """
    if not hosts:
        return DeployPlan(())
    if command and tool != "command":
        raise UsageError(f"-- CMD is only for --tool command (the tool is {tool})")
    match tool:
        case "nixos-rebuild":
            return _nixos_rebuild(hosts, config)
        case "colmena":
            return _colmena(hosts, config)
        case "deploy-rs":
            return _deploy_rs(hosts, config)
        case "command":
            template = list(command) or config.command
            if not template:
                raise UsageError("--tool command needs a command: deploy-guard apply HOST -- CMD")
            return expand_command(template, hosts, config.deploy_parallel)
    raise UsageError(f"unknown deploy tool {tool!r}")
