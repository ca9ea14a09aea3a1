"""The deploy commands `apply` runs after the gate opened: built here (pure), run by `apply`.

One adapter per tool. Every command is an argv list; nothing is ever passed through a shell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from deploy_guard.config import DeployConfig
from deploy_guard.errors import UsageError
from deploy_guard.transport import process
from deploy_guard.transport.sshconfig import split_port

HOST_PLACEHOLDER = "{host}"
HOSTS_PLACEHOLDER = "{hosts}"
SHOW_TRACE: Final = "--show-trace"

# What `[deploy] action` may be, per tool. nixos-rebuild: the actions that build or activate
# a system (edit, repl, build-vm and list-generations deploy nothing). colmena: `colmena apply
# GOAL` (src/command/apply.rs, possible_values). deploy-rs has no action argument, only the
# flags below for the same activations.
ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "nixos-rebuild": ("switch", "boot", "test", "dry-activate", "build", "dry-build"),
    "colmena": ("switch", "boot", "test", "dry-activate", "build", "push", "keys"),
    "deploy-rs": ("switch", "boot", "dry-activate"),
}
_DEPLOY_RS_FLAGS: Final = {"switch": (), "boot": ("--boot",), "dry-activate": ("--dry-activate",)}


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


def action_problem(tool: str, action: str) -> str | None:
    """Why ``action`` is not one ``tool`` can deploy with, or None (no I/O)."""
    known = ACTIONS.get(tool)
    if known is None or action in known:
        return None
    return f"[deploy] action {action!r} is not a {tool} action; expected one of {', '.join(known)}"


def build_first(tool: str, config: DeployConfig) -> bool:
    """Whether apply builds the systems before the guard (default: nixos-rebuild, colmena).

    Raises:
        UsageError: build_first = true for a tool that has no build step here.
    """
    if config.build_first is None:
        return tool in ("nixos-rebuild", "colmena")
    if config.build_first and tool not in ("nixos-rebuild", "colmena"):
        raise UsageError(
            f"[deploy] build_first works with nixos-rebuild and colmena, not {tool}; remove it"
        )
    return config.build_first


def _extra(config: DeployConfig, arguments: Sequence[str]) -> tuple[str, ...]:
    return (*config.extra_args, *arguments)


def plan_build(
    tool: str,
    hosts: Sequence[DeployHost],
    config: DeployConfig,
    arguments: Sequence[str] = (),
    *,
    show_trace: bool = False,
) -> DeployPlan:
    """The commands that build every host's system locally, activating nothing: `nixos-rebuild
    build --flake F#HOST` per host, or one `colmena build --on h1,h2`, with the extra and
    pass-through arguments (a --build-host there applies to the build too)."""
    extra = _extra(config, arguments)
    extra += (SHOW_TRACE,) if show_trace and SHOW_TRACE not in extra else ()
    if not hosts:
        return DeployPlan(())
    if tool == "colmena":
        names = tuple(host.name for host in hosts)
        return DeployPlan(
            (DeployCommand(("colmena", "build", "--on", ",".join(names), *extra), names),)
        )
    commands = []
    for host in hosts:
        flake = f"{config.flake}#{deploy_attribute(host)}"
        argv = ("nixos-rebuild", "build", "--flake", flake, *extra)
        commands.append(DeployCommand(argv, (host.name,)))
    return DeployPlan(tuple(commands))


def deploy_attribute(host: DeployHost) -> str:
    """The flake attribute the deploy tools use for ``host``."""
    return local_name() if host.destination == "local" else flake_attribute(host)


def _nixos_rebuild(
    hosts: Sequence[DeployHost], config: DeployConfig, extra: Sequence[str]
) -> DeployPlan:
    commands = []
    for host in hosts:
        if host.destination == "local":  # this machine: no --target-host, its own hostname
            argv = ["nixos-rebuild", config.action, "--flake", f"{config.flake}#{local_name()}"]
            argv += [config.sudo_flag] if config.sudo_flag else []
            commands.append(DeployCommand((*argv, *extra), (host.name,)))
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
        commands.append(DeployCommand((*argv, *extra), (host.name,), env))
    return DeployPlan(tuple(commands), parallel=config.deploy_parallel)


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


def _colmena(hosts: Sequence[DeployHost], config: DeployConfig, extra: Sequence[str]) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    argv = ("colmena", "apply", config.action, "--on", ",".join(names), *extra)
    return DeployPlan((DeployCommand(argv, names),))


def _deploy_rs(
    hosts: Sequence[DeployHost], config: DeployConfig, extra: Sequence[str]
) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    targets = [f"{config.flake}#{name}" for name in names]
    flags = _DEPLOY_RS_FLAGS.get(config.action, ())
    return DeployPlan((DeployCommand(("deploy", *flags, "--targets", *targets, *extra), names),))


def expand_command(
    template: Sequence[str], hosts: Sequence[DeployHost], parallel: bool = False
) -> DeployPlan:
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
    tool: str, hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str] = ()
) -> DeployPlan:
    """The commands that deploy ``hosts`` with ``tool``. ``arguments`` (what follows `--`)
    is the command itself for tool `command`, and is appended to the command line of the
    other tools, after `[deploy] extra_args`.

    Raises:
        UsageError: tool `command` without a command.
    """
    if not hosts:
        return DeployPlan(())
    match tool:
        case "nixos-rebuild":
            return _nixos_rebuild(hosts, config, _extra(config, arguments))
        case "colmena":
            return _colmena(hosts, config, _extra(config, arguments))
        case "deploy-rs":
            return _deploy_rs(hosts, config, _extra(config, arguments))
        case "command":
            template = list(arguments) or config.command
            if not template:
                raise UsageError("--tool command needs a command: deploy-guard apply HOST -- CMD")
            return expand_command(template, hosts, config.deploy_parallel)
    raise UsageError(f"unknown deploy tool {tool!r}")
