"""What every deploy tool's adapter shares: the hosts, commands and plans it builds, and the
adapter itself (`DeployToolAdapter`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from deploy_guard.config import DeployConfig

HOST_PLACEHOLDER = "{host}"
HOSTS_PLACEHOLDER = "{hosts}"
SHOW_TRACE: Final = "--show-trace"


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


# hosts (never empty), `[deploy]`, and for `deploy` the arguments after `--`, for `build`
# the extra arguments (extra_args, those after `--`, --show-trace).
Planner = Callable[[Sequence[DeployHost], DeployConfig, Sequence[str]], DeployPlan]


def host_name(host: DeployHost) -> str:
    """The flake attribute of a host for the tools that take its name as it is."""
    return host.name


@dataclass(frozen=True, slots=True)
class DeployToolAdapter:
    """Everything deploy-guard knows about one deploy tool."""

    name: str  # `[deploy] tool`, --tool (and an entry of config.deploy.DeployTool)
    executable: str | None  # the program its commands run; None: the user's command
    deploy: Planner  # the deploy commands
    actions: tuple[str, ...] | None = None  # the `[deploy] action`s it takes; None: unchecked
    build: Planner | None = None  # the build before the guard (build_first); None: none
    flake_nodes: str | None = None  # the flake attribute its hosts live under; None: unchecked
    attribute: Callable[[DeployHost], str] = host_name  # a host's attribute under flake_nodes
    # Where it deploys when not to the host's deploy destination, as `plan` shows it; None: the
    # deploy destination, which must then not log in as the guard user.
    own_destination: str | None = None


def extra_arguments(config: DeployConfig, arguments: Sequence[str]) -> tuple[str, ...]:
    """`[deploy] extra_args`, then the arguments after `--`."""
    return (*config.extra_args, *arguments)
