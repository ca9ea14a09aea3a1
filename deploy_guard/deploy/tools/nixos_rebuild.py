"""nixos-rebuild: `nixos-rebuild ACTION --flake F#HOST --target-host DEST`, one per host."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from deploy_guard.config import DeployConfig
from deploy_guard.deploy.tools.base import (
    DeployCommand,
    DeployHost,
    DeployPlan,
    DeployToolAdapter,
    extra_arguments,
)
from deploy_guard.transport import process
from deploy_guard.transport.sshconfig import split_port

EXECUTABLE: Final = "nixos-rebuild"
# The actions that build or activate a system (edit, repl, build-vm and list-generations
# deploy nothing).
ACTIONS: Final = ("switch", "boot", "test", "dry-activate", "build", "dry-build")


def local_name() -> str:
    """This machine's name, as `nixos-rebuild` without --flake#NAME would use it."""
    return process.local_hostname().split(".")[0]


def flake_attribute(host: DeployHost) -> str:
    """The flake attribute of a host: its name, or for a host given as a raw destination
    (`root@10.0.0.5:2222`), the host part of it."""
    if "@" not in host.name and ":" not in host.name:
        return host.name
    base, _port = split_port(host.name)
    return base.rsplit("@", 1)[-1].strip("[]")


def deploy_attribute(host: DeployHost) -> str:
    """The flake attribute the deploy tools use for ``host``."""
    return local_name() if host.destination == "local" else flake_attribute(host)


def plan_build(
    hosts: Sequence[DeployHost], config: DeployConfig, extra: Sequence[str]
) -> DeployPlan:
    """`nixos-rebuild build --flake F#HOST` per host (a --build-host in extra applies too)."""
    commands = []
    for host in hosts:
        flake = f"{config.flake}#{deploy_attribute(host)}"
        argv = (EXECUTABLE, "build", "--flake", flake, *extra)
        commands.append(DeployCommand(argv, (host.name,)))
    return DeployPlan(tuple(commands))


def plan_deploy(
    hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str]
) -> DeployPlan:
    extra = extra_arguments(config, arguments)
    commands = []
    for host in hosts:
        if host.destination == "local":  # this machine: no --target-host, its own hostname
            argv = [EXECUTABLE, config.action, "--flake", f"{config.flake}#{local_name()}"]
            argv += [config.sudo_flag] if config.sudo_flag else []
            commands.append(DeployCommand((*argv, *extra), (host.name,)))
            continue
        destination, port = split_port(host.destination)
        attribute = flake_attribute(host)
        argv = [EXECUTABLE, config.action, "--flake", f"{config.flake}#{attribute}"]
        argv += ["--target-host", destination]
        argv += [config.sudo_flag] if config.sudo_flag else []
        # nixos-rebuild takes no port in --target-host; it reads ssh options from NIX_SSHOPTS,
        # which keeps whatever the user already put there.
        user_options = os.environ.get("NIX_SSHOPTS", "")
        env = {"NIX_SSHOPTS": f"{user_options} -p {port}".strip()} if port else {}
        commands.append(DeployCommand((*argv, *extra), (host.name,), env))
    return DeployPlan(tuple(commands), parallel=config.deploy_parallel)


ADAPTER: Final = DeployToolAdapter(
    name="nixos-rebuild",
    executable=EXECUTABLE,
    deploy=plan_deploy,
    actions=ACTIONS,
    build=plan_build,
    flake_nodes="nixosConfigurations",
    attribute=deploy_attribute,
)
