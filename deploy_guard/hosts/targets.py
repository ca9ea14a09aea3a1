"""From host arguments to `HostTarget`s, and from a target to a connected transport."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from deploy_guard.config import Config
from deploy_guard.errors import ConfigError, UsageError
from deploy_guard.guard.discovery import stage_specs
from deploy_guard.guard.engine import HostTarget
from deploy_guard.guard.proof import ProofSettings
from deploy_guard.hosts.inventory import InventoryHost, load_flake_inventory
from deploy_guard.hosts.selection import known_hosts, select_hosts
from deploy_guard.transport.base import Transport
from deploy_guard.transport.local import LocalTransport
from deploy_guard.transport.sshconfig import host_name_problem, parse_destination

LOCAL: Final = "local"
SUDO: Final = ("sudo", "-n", "--")
SSH_CONFIG_ENV: Final = "DEPLOY_GUARD_SSH_CONFIG"


def flake_inventory(
    config: Config, config_path: Path | None, *, show_trace: bool = False
) -> dict[str, InventoryHost]:
    """Hosts from the flake when `[inventory]` asks for them; a relative flake path is taken
    from the configuration file's directory (the repository), not from where we run.

    Raises:
        ConfigError: nix is missing or the evaluation failed.
    """
    if config.inventory is None:
        return {}
    directory = config_path.parent if config_path is not None else None
    return load_flake_inventory(
        config.inventory.source, config.inventory.flake, cwd=directory, show_trace=show_trace
    )


def resolve_targets(
    config: Config,
    expressions: Sequence[str],
    stages: Sequence[str] = (),
    *,
    all_hosts: bool = False,
    flake_hosts: Mapping[str, InventoryHost] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[HostTarget, ...]:
    """One target per selected host: names, `@tag`, globs, comma lists, or `--all` over the
    `[hosts]` table and the flake inventory; anything else is an SSH destination or `local`.

    Raises:
        UsageError: nothing selected, a tag or glob matching no host, or an unknown --stage.
    """
    known_stages = [stage.name for stage in config.stages]
    unknown = [name for name in stages if name not in known_stages]
    if unknown:
        raise UsageError(
            f"unknown stage {', '.join(unknown)}; stages are: {', '.join(known_stages)}"
        )
    known = known_hosts(config, flake_hosts or {})
    names = select_hosts(expressions, known, all_hosts=all_hosts)
    env = os.environ if env is None else env
    ssh_config = Path(env[SSH_CONFIG_ENV]) if env.get(SSH_CONFIG_ENV) else config.ssh_config
    ssh_config = ssh_config.expanduser() if ssh_config else None
    targets = []
    for name in names:
        entry = config.hosts.get(name)
        destination = known[name].destination if name in known else name
        _check_destination(name, destination)
        become = SUDO if entry and entry.become == "sudo" else ()
        specs = stage_specs(config, name, stages)
        flake_host = (flake_hosts or {}).get(name)
        deploy_destination = (entry.deploy_target if entry else None) or (
            flake_host.destination if flake_host else None
        )
        preflight = tuple(config.preflight)
        targets.append(
            HostTarget(
                name,
                destination,
                become,
                specs,
                ssh_config,
                preflight,
                deploy_destination,
                stage_subset=bool(set(known_stages) - set(stages or known_stages)),
                proof=proof_settings(config, privileged=bool(become)),
            )
        )
    return tuple(targets)


def _check_destination(name: str, destination: str) -> None:
    """Raises UsageError when ``destination`` is no host name DNS could look up (before
    any connection, instead of an internal error from the resolver)."""
    if destination == LOCAL:
        return
    try:
        host = parse_destination(destination).host
    except ConfigError as exc:
        raise UsageError(str(exc).removeprefix("configuration: ")) from exc
    problem = host_name_problem(host)
    if problem is not None:
        what = host if name == host else f"{host} (host {name})"
        raise UsageError(f"{what} is not a valid host name: {problem}")


def proof_settings(config: Config, *, privileged: bool) -> ProofSettings:
    """`[proof]` and each stage's `verify`, as the engine takes them."""
    return ProofSettings(
        enabled=config.proof.enabled,
        require=config.proof.require,
        timeout=config.proof.timeout,
        commands=dict(config.proof.commands),
        stage_commands={stage.name: stage.verify for stage in config.stages if stage.verify},
        privileged=privileged,
    )


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
