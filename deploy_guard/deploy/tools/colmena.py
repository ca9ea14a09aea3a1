"""colmena: one `colmena apply GOAL --on h1,h2`; it deploys to its own targetHost."""

from __future__ import annotations

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

EXECUTABLE: Final = "colmena"
# `colmena apply GOAL` (src/command/apply.rs, possible_values).
ACTIONS: Final = ("switch", "boot", "test", "dry-activate", "build", "push", "keys")


def plan_build(
    hosts: Sequence[DeployHost], _config: DeployConfig, extra: Sequence[str]
) -> DeployPlan:
    """One `colmena build --on h1,h2`."""
    names = tuple(host.name for host in hosts)
    return DeployPlan(
        (DeployCommand((EXECUTABLE, "build", "--on", ",".join(names), *extra), names),)
    )


def plan_deploy(
    hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str]
) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    extra = extra_arguments(config, arguments)
    argv = (EXECUTABLE, "apply", config.action, "--on", ",".join(names), *extra)
    return DeployPlan((DeployCommand(argv, names),))


ADAPTER: Final = DeployToolAdapter(
    name="colmena",
    executable=EXECUTABLE,
    deploy=plan_deploy,
    actions=ACTIONS,
    build=plan_build,
    # The same output `[inventory] from = "colmena"` reads.
    flake_nodes="colmenaHive.deploymentConfig",
    # deploy_target is not colmena's: never show it as if it were.
    own_destination="colmena's own deployment.targetHost/targetUser",
)
