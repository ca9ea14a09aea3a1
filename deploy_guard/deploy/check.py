"""What `apply` checks about the deploy before any backup runs, and where each host's deploy
goes.

A host has two destinations: the **guard destination** (`[hosts.NAME] ssh`: who runs the
backups, the module's guard user or root/`become`) and the **deploy destination** (who
switches the system: `[hosts.NAME] deploy_target`, else the flake inventory's target, else the
guard destination). Nothing that can be known before the guard may be discovered after it:
the action, the tool's executable, each host's flake attribute, and a deploy that would log in
as the guard user are all checked first (exit 3, nothing started anywhere).

The decisions are pure; `login_user` (`ssh -G`) and the attribute listing (`nix eval`) are the
I/O, injected so that tests can replace them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from deploy_guard.config import DeployConfig
from deploy_guard.deploy.tools import ADAPTERS, DeployHost, DeployPlan, action_problem
from deploy_guard.errors import ConfigError, DeployGuardError, ExitCode
from deploy_guard.guard.engine import HostTarget
from deploy_guard.hosts.inventory import NixEval, nix_eval_flags, run_nix_eval

LOCAL: Final = "local"
LISTED_AT_MOST: Final = 10  # attribute names quoted in a message


class DeployCheckFailed(DeployGuardError):
    """The deploy could not run as configured; found before any backup was started."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"the deploy cannot run, so no backup was started:\n{lines}"


def deploy_host(target: HostTarget) -> DeployHost:
    """The host as the deploy tools see it: its name and its deploy destination."""
    return DeployHost(target.name, target.deploy_destination or target.destination)


def deploy_hosts(targets: Sequence[HostTarget]) -> list[DeployHost]:
    return [deploy_host(target) for target in targets]


def login_user(destination: str, ssh_config: Path | None) -> str:
    """The user ``ssh destination`` logs in as: the ``user@`` part, else `ssh -G`'s User.

    Raises:
        ConfigError: a bad destination, or ssh rejected the configuration.
    """
    from deploy_guard.transport import sshconfig  # noqa: PLC0415 (runs ssh -G only when asked)

    parsed = sshconfig.parse_destination(destination)
    if parsed.user:
        return parsed.user
    return sshconfig.resolve(destination, config_file=ssh_config).user


UserOf = Callable[[str, Path | None], str]


def guard_user_problem(
    target: HostTarget, tool: str, guard_user: str, user_of: UserOf = login_user
) -> str | None:
    """Why nixos-rebuild would deploy ``target`` as the guard user (who cannot switch the
    system), or None. colmena, deploy-rs and commands deploy with their own settings
    (their adapter's `own_destination`).

    Raises:
        ConfigError: ssh rejected the destination or its configuration.
    """
    destination = target.deploy_destination or target.destination
    adapter = ADAPTERS.get(tool)
    if adapter is None or adapter.own_destination is not None or destination == LOCAL:
        return None
    if user_of(destination, target.ssh_config) != guard_user:
        return None
    name = target.name
    if target.deploy_destination is None:
        return (
            f"{name}: the guard logs in as {guard_user} ({target.destination}), the "
            "guard user, which cannot switch the system, and no deploy destination is "
            f'known: set [hosts.{name}] deploy_target = "root@{name}" (or a wheel user '
            "with sudo_flag)"
        )
    return (
        f"{name}: the deploy destination {destination!r} logs in as the guard user "
        f"{guard_user}, which cannot switch the system: set [hosts.{name}] deploy_target "
        "to root or a wheel user"
    )


def executable_problem(program: str, path: str | None) -> str | None:
    """Why ``program`` cannot be run from ``path`` (a PATH value), or None."""
    if "/" in program:
        found = os.path.isfile(program) and os.access(program, os.X_OK)
        return None if found else f"the deploy command {program} is not an executable file"
    if shutil.which(program, path=path) is None:
        return f"{program} is not on PATH ({path or os.defpath})"
    return None


def nodes_argv(tool: str, flake: str, *, show_trace: bool = False) -> list[str] | None:
    """The `nix eval` that lists the flake's host attribute names for ``tool`` (None: the
    tool has no flake attribute to check). The attribute names are all that is evaluated."""
    adapter = ADAPTERS.get(tool)
    nodes = adapter.flake_nodes if adapter is not None else None
    if nodes is None:
        return None
    flags = nix_eval_flags(show_trace=show_trace)
    return ["nix", "eval", *flags, f"{flake}#{nodes}", "--apply", "builtins.attrNames"]


def attribute_problems(
    tool: str, flake: str, hosts: Sequence[DeployHost], available: object
) -> list[str]:
    """The hosts whose attribute ``available`` (what `nodes_argv` printed) lacks."""
    adapter = ADAPTERS[tool]
    nodes = adapter.flake_nodes
    if not isinstance(available, list) or not all(isinstance(n, str) for n in available):
        return [f"`nix eval {flake}#{nodes}` did not list attribute names"]
    names = sorted(available)
    listing = ", ".join(names[:LISTED_AT_MOST]) + (" ..." if len(names) > LISTED_AT_MOST else "")
    problems = []
    for host in hosts:
        attribute = adapter.attribute(host)
        if attribute not in available:
            problems.append(
                f"{host.name}: the flake {flake} has no {nodes}.{attribute} "
                f"(it has: {listing or 'none'})"
            )
    return problems


@dataclass(frozen=True, slots=True)
class DeployCheck:
    """What `check_deploy` looks at: the tool, its settings, the commands it would run."""

    tool: str
    config: DeployConfig
    plans: tuple[DeployPlan, ...]  # the build (if any) and the deploy
    targets: tuple[HostTarget, ...]
    show_trace: bool = False
    path: str | None = None  # PATH to look the executables up in (default: ours)


Evaluate = Callable[[NixEval], object]


def check_deploy(
    check: DeployCheck, *, user_of: UserOf = login_user, evaluate: Evaluate = run_nix_eval
) -> None:
    """Every reason the deploy would fail that can be known now, all at once.

    Raises:
        DeployCheckFailed: the action, an executable, a flake attribute or a destination.
    """
    problems: list[str] = []
    if (action := action_problem(check.tool, check.config.action)) is not None:
        problems.append(action)
    path = check.path if check.path is not None else os.environ.get("PATH")
    programs = dict.fromkeys(
        command.argv[0] for plan in check.plans for command in plan.commands if command.argv
    )
    problems += [p for program in programs if (p := executable_problem(program, path))]
    for target in check.targets:
        try:
            problem = guard_user_problem(target, check.tool, check.config.guard_user, user_of)
        except ConfigError as exc:
            problem = f"{target.name}: {exc}"
        problems += [problem] if problem else []
    problems += _attribute_check(check, evaluate)
    if problems:
        raise DeployCheckFailed(problems)


def _attribute_check(check: DeployCheck, evaluate: Evaluate) -> list[str]:
    flake = check.config.flake
    argv = nodes_argv(check.tool, flake, show_trace=check.show_trace)
    if argv is None or not check.targets:
        return []
    missing = f"it lists the flake's hosts for {check.tool}; install nix"
    try:
        # The deploy tool resolves a relative flake against our working directory: so do we.
        available = evaluate(NixEval(argv, "deploy check", missing))
    except ConfigError as exc:
        return [str(exc).removeprefix("configuration: ")]
    return attribute_problems(check.tool, flake, deploy_hosts(check.targets), available)


def describe_deploy(target: HostTarget, tool: str) -> str:
    """The deploy destination as `plan` and `apply --dry-run` show it."""
    adapter = ADAPTERS.get(tool)
    if adapter is None:
        return "the deploy command"
    return adapter.own_destination or target.deploy_destination or target.destination


@dataclass(frozen=True, slots=True)
class Route:
    """One host's two destinations, for `plan` and `apply --dry-run`."""

    host: str
    guard: str
    deploy: str
    problem: str | None = None


def routes(
    targets: Sequence[HostTarget], tool: str, guard_user: str, user_of: UserOf = login_user
) -> dict[str, Route]:
    """Each host's guard and deploy destinations, and why the deploy could not go there."""
    result = {}
    for target in targets:
        guard = target.destination + (" (sudo)" if target.become else "")
        try:
            problem = guard_user_problem(target, tool, guard_user, user_of)
        except ConfigError as exc:
            problem = str(exc)
        deploy = describe_deploy(target, tool)
        result[target.name] = Route(target.name, guard, deploy, problem)
    return result
