"""From host arguments to `HostTarget`s, and from a target to a connected transport."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from deploy_guard.config import Config
from deploy_guard.discovery import stage_specs
from deploy_guard.engine import HostTarget
from deploy_guard.errors import UsageError
from deploy_guard.transport.base import Transport
from deploy_guard.transport.local import LocalTransport

LOCAL: Final = "local"
SUDO: Final = ("sudo", "-n", "--")
SSH_CONFIG_ENV: Final = "DEPLOY_GUARD_SSH_CONFIG"


def resolve_targets(
    config: Config,
    names: Sequence[str],
    stages: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[HostTarget, ...]:
    """One target per HOST argument: a `[hosts.NAME]` entry, `local`, or an SSH destination.

    Raises:
        UsageError: no host given, or a --stage that no configured stage has.
    """
    if not names:
        raise UsageError("name at least one HOST (a [hosts.NAME] entry, an SSH destination, "
                         "or 'local')")  # fmt: skip
    known = [stage.name for stage in config.stages]
    unknown = [name for name in stages if name not in known]
    if unknown:
        raise UsageError(f"unknown stage {', '.join(unknown)}; stages are: {', '.join(known)}")
    env = os.environ if env is None else env
    ssh_config = Path(env[SSH_CONFIG_ENV]) if env.get(SSH_CONFIG_ENV) else config.ssh_config
    ssh_config = ssh_config.expanduser() if ssh_config else None
    targets = []
    for name in dict.fromkeys(names):
        entry = config.hosts.get(name)
        destination = (entry.ssh if entry and entry.ssh else None) or name
        become = SUDO if entry and entry.become == "sudo" else ()
        specs = stage_specs(config, name, stages)
        targets.append(HostTarget(name, destination, become, specs, ssh_config))
    return tuple(targets)


def connect(target: HostTarget, *, connect_timeout: float) -> Transport:
    """An open transport to ``target``.

    Raises:
        TransportError: unreachable, unknown or changed host key, authentication failure.
        ConfigError: the user's ssh configuration is invalid.
    """
    if target.destination == LOCAL:
        return LocalTransport(target.name, become=target.become)
    # paramiko costs ~150 ms to import (FIELD-NOTES): only when a host needs SSH.
    from deploy_guard.transport import ssh, sshconfig  # noqa: PLC0415

    ssh_target = sshconfig.resolve(target.destination, config_file=target.ssh_config)
    transport = ssh.SshTransport(
        target.name, ssh_target, become=target.become, connect_timeout=connect_timeout
    )
    transport.connect()
    return transport
