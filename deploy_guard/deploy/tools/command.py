"""command: the user's own command (`[deploy] command` or `-- CMD`), with host placeholders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from deploy_guard.config import DeployConfig
from deploy_guard.deploy.tools.base import (
    HOST_PLACEHOLDER,
    HOSTS_PLACEHOLDER,
    DeployCommand,
    DeployHost,
    DeployPlan,
    DeployToolAdapter,
)
from deploy_guard.errors import UsageError


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
    hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str]
) -> DeployPlan:
    """The arguments after `--` are the command itself, else `[deploy] command`.

    Raises:
        UsageError: no command.
    """
    template = list(arguments) or config.command
    if not template:
        raise UsageError("--tool command needs a command: deploy-guard apply HOST -- CMD")
    return expand_command(template, hosts, config.deploy_parallel)


ADAPTER: Final = DeployToolAdapter(
    name="command",
    executable=None,  # the command's own argv[0], checked like the others' before the guard
    deploy=plan_deploy,
    own_destination="the deploy command",
)
