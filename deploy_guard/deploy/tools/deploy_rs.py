"""deploy-rs: one `deploy --targets F#h1 F#h2`; it deploys to its own hostname/sshUser."""

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

EXECUTABLE: Final = "deploy"
# deploy-rs has no action argument, only these flags for the same activations.
FLAGS: Final[dict[str, tuple[str, ...]]] = {
    "switch": (),
    "boot": ("--boot",),
    "dry-activate": ("--dry-activate",),
}


def plan_deploy(
    hosts: Sequence[DeployHost], config: DeployConfig, arguments: Sequence[str]
) -> DeployPlan:
    names = tuple(host.name for host in hosts)
    targets = [f"{config.flake}#{name}" for name in names]
    flags = FLAGS.get(config.action, ())
    extra = extra_arguments(config, arguments)
    return DeployPlan((DeployCommand((EXECUTABLE, *flags, "--targets", *targets, *extra), names),))


ADAPTER: Final = DeployToolAdapter(
    name="deploy-rs",
    executable=EXECUTABLE,
    deploy=plan_deploy,
    actions=tuple(FLAGS),
    flake_nodes="deploy.nodes",
    own_destination="deploy-rs's own hostname/sshUser",
)
