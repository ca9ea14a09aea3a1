"""The deploy commands `apply` runs after the gate opened: built here (pure), run by `apply`.

One module per deploy tool (`nixos_rebuild`, `colmena`, `deploy_rs`, `command`), each defining
one frozen `DeployToolAdapter`: its actions, its build step, the flake attribute its hosts
live under, its executable, how its commands are planned. `ADAPTERS` is the one table the
planners here and `deploy.check` look a tool up in. Adding a deploy tool is one module here,
one row in `ADAPTERS` and one entry in `config.deploy.DeployTool` (static, for pydantic and
mypy; a unit test keeps the two equal). Every command is an argv list; nothing is ever passed
through a shell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from deploy_guard.config import DeployConfig
from deploy_guard.deploy.tools import colmena, command, deploy_rs, nixos_rebuild
from deploy_guard.deploy.tools.base import (
    HOST_PLACEHOLDER,
    HOSTS_PLACEHOLDER,
    SHOW_TRACE,
    DeployCommand,
    DeployHost,
    DeployPlan,
    DeployToolAdapter,
    extra_arguments,
)
from deploy_guard.deploy.tools.command import expand_command
from deploy_guard.deploy.tools.nixos_rebuild import deploy_attribute, flake_attribute, local_name
from deploy_guard.errors import UsageError

__all__ = [
    "ADAPTERS",
    "HOSTS_PLACEHOLDER",
    "HOST_PLACEHOLDER",
    "SHOW_TRACE",
    "DeployCommand",
    "DeployHost",
    "DeployPlan",
    "DeployToolAdapter",
    "action_problem",
    "build_first",
    "deploy_attribute",
    "expand_command",
    "flake_attribute",
    "local_name",
    "plan_build",
    "plan_deploy",
]

ADAPTERS: Final[Mapping[str, DeployToolAdapter]] = MappingProxyType(
    {
        adapter.name: adapter
        for adapter in (nixos_rebuild.ADAPTER, colmena.ADAPTER, deploy_rs.ADAPTER, command.ADAPTER)
    }
)


def action_problem(tool: str, action: str) -> str | None:
    """Why ``action`` is not one ``tool`` can deploy with, or None (no I/O)."""
    adapter = ADAPTERS.get(tool)
    known = adapter.actions if adapter is not None else None
    if known is None or action in known:
        return None
    return f"[deploy] action {action!r} is not a {tool} action; expected one of {', '.join(known)}"


def build_first(tool: str, config: DeployConfig) -> bool:
    """Whether apply builds the systems before the guard (default: the tools with a build).

    Raises:
        UsageError: build_first = true for a tool that has no build step here.
    """
    adapter = ADAPTERS.get(tool)
    has_build = adapter is not None and adapter.build is not None
    if config.build_first is None:
        return has_build
    if config.build_first and not has_build:
        builders = " and ".join(name for name, a in ADAPTERS.items() if a.build is not None)
        raise UsageError(f"[deploy] build_first works with {builders}, not {tool}; remove it")
    return config.build_first


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
    pass-through arguments (a --build-host there applies to the build too); no commands for a
    tool without a build step (`build_first` refuses those)."""
    extra = extra_arguments(config, arguments)
    extra += (SHOW_TRACE,) if show_trace and SHOW_TRACE not in extra else ()
    adapter = ADAPTERS.get(tool)
    if not hosts or adapter is None or adapter.build is None:
        return DeployPlan(())
    return adapter.build(hosts, config, extra)


def plan_deploy(
    tool: str, hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str] = ()
) -> DeployPlan:
    """The commands that deploy ``hosts`` with ``tool``. ``arguments`` (what follows `--`)
    is the command itself for tool `command`, and is appended to the command line of the
    other tools, after `[deploy] extra_args`.

    Raises:
        UsageError: tool `command` without a command; a tool not in `ADAPTERS`.
    """
    if not hosts:
        return DeployPlan(())
    adapter = ADAPTERS.get(tool)
    if adapter is None:
        raise UsageError(f"unknown deploy tool {tool!r}")
    return adapter.deploy(hosts, config, arguments)
