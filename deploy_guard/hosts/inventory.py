"""The host list of a flake: colmena, deploy-rs or nixosConfigurations, read with `nix eval`.

`load_flake_inventory` is the only I/O here (one `nix eval --json` process); turning its JSON
into `InventoryHost`s is the pure `parse_inventory`.

Flakes in git repositories: nix copies only the files git tracks, so a new, untracked
`flake.nix` (or a module it imports) is invisible to it ("No such file or directory" under
/nix/store); `git add` it, a commit is not needed. A flake reference is passed to nix as
given: "." and "./infra" are resolved by nix against ``cwd``, while a bare word such as
"infra" is a flake *registry* name, which nix looks up over the network.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from deploy_guard.errors import ConfigError
from deploy_guard.transport import process

logger = logging.getLogger(__name__)

HOST_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STDERR_LINES: Final = 10  # of nix's error output kept in the message

# Each --apply keeps only the fields we read, so that nix never has to serialise (or even
# evaluate) the rest of a node: a derivation would otherwise be printed as a store path.
_COLMENA_APPLY: Final = (
    "nodes: builtins.mapAttrs (name: node: if builtins.isAttrs node then {"
    " targetHost = node.targetHost or null; targetUser = node.targetUser or null;"
    " targetPort = node.targetPort or null; tags = node.tags or []; } else null) nodes"
)
_DEPLOY_RS_APPLY: Final = (
    "nodes: builtins.mapAttrs (name: node: if builtins.isAttrs node then {"
    " hostname = node.hostname or null; sshUser = node.sshUser or null; } else null) nodes"
)


@dataclass(frozen=True, slots=True)
class InventoryHost:
    """A host named by the flake. ``destination`` is ``[user@]host[:port]``; None: the name."""

    name: str
    destination: str | None
    tags: tuple[str, ...] = ()


def _format_destination(host: str, user: str | None, port: int | None) -> str:
    # An IPv6 address with a port needs brackets to stay parseable: [user@][v6addr]:port.
    hostport = host if port is None else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return hostport if user is None else f"{user}@{hostport}"


def _short(value: object) -> str:
    """``repr(value)``, cut to one line: a whole node would drown the message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(node: Mapping[str, object], key: str, where: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{where}.{key}: expected a non-empty string or null, got {_short(value)}")
    return value


def _port(node: Mapping[str, object], key: str, where: str) -> int | None:
    value = node.get(key)
    # bool is an int in Python; a port of `true` is still a mistake.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"{where}.{key}: expected a port number or null, got {_short(value)}")


def _colmena_host(name: str, node: Mapping[str, object]) -> InventoryHost:
    where = f"colmenaHive.deploymentConfig.{name}"
    target_host = _text(node, "targetHost", where)
    user, port = _text(node, "targetUser", where), _port(node, "targetPort", where)
    tags = node.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError(f"{where}.tags: expected a list of strings, got {_short(tags)}")
    # targetHost = null: colmena deploys this node only locally (allowLocalDeployment); we
    # keep the name and let the caller decide (destination None means "use the name").
    destination = None if target_host is None else _format_destination(target_host, user, port)
    return InventoryHost(name, destination, tuple(tags))


def _deploy_rs_host(name: str, node: Mapping[str, object]) -> InventoryHost:
    where = f"deploy.nodes.{name}"
    hostname, user = _text(node, "hostname", where), _text(node, "sshUser", where)
    destination = None if hostname is None else _format_destination(hostname, user, None)
    return InventoryHost(name, destination)


def _nodes(
    data: object, where: str, build: Callable[[str, Mapping[str, object]], InventoryHost]
) -> dict[str, InventoryHost]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an attribute set of nodes, got {_short(data)}")
    hosts = {}
    for name, node in data.items():
        if not isinstance(node, dict):
            raise ValueError(f"{where}.{name}: expected an attribute set")
        if _valid_name(name, where):
            hosts[name] = build(name, node)
    return hosts


def _valid_name(name: str, where: str) -> bool:
    if HOST_NAME.fullmatch(name):
        return True
    logger.warning("inventory: skipping %s.%r: not a valid host name", where, name)
    return False


def parse_inventory(source: str, data: object) -> dict[str, InventoryHost]:
    """The hosts in ``data``, the JSON that `load_flake_inventory`'s nix command printed.

    Names that are not host names (``[A-Za-z0-9][A-Za-z0-9._-]*``) are skipped with a warning.

    Raises:
        ConfigError: an unknown source, or ``data`` is not of the shape that source produces.
    """
    try:
        match source:
            case "colmena":
                return _nodes(data, "colmenaHive.deploymentConfig", _colmena_host)
            case "deploy-rs":
                return _nodes(data, "deploy.nodes", _deploy_rs_host)
            case "nixosConfigurations":
                if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
                    raise ValueError(f"expected a list of names, got {_short(data)}")
                where = "nixosConfigurations"
                return {n: InventoryHost(n, None) for n in data if _valid_name(n, where)}
            case _:
                raise ConfigError(None, [_unknown_source(source)])
    except ValueError as exc:
        raise ConfigError(None, [f"inventory from {source}: unexpected output: {exc}"]) from exc


def _unknown_source(source: str) -> str:
    return (
        f"inventory: unknown source {source!r}; expected colmena, deploy-rs or nixosConfigurations"
    )


def nix_eval_flags(*, show_trace: bool = False) -> list[str]:
    """The flags of every `nix eval` deploy-guard runs (no I/O)."""
    features = ["--extra-experimental-features", "nix-command flakes"]
    # --no-write-lock-file: reading the flake must not create or change flake.lock.
    flags = ["--json", "--no-write-lock-file", *features]
    return [*flags, "--show-trace"] if show_trace else flags


def nix_eval_argv(
    source: str, flake: str, *, nix: str = "nix", show_trace: bool = False
) -> list[str]:
    """The `nix eval` command that prints ``source``'s hosts as JSON (no I/O).

    Raises:
        ConfigError: an unknown source.
    """
    match source:
        case "colmena":
            attribute, apply = "colmenaHive.deploymentConfig", _COLMENA_APPLY
        case "deploy-rs":
            attribute, apply = "deploy.nodes", _DEPLOY_RS_APPLY
        case "nixosConfigurations":
            attribute, apply = "nixosConfigurations", "builtins.attrNames"
        case _:
            raise ConfigError(None, [_unknown_source(source)])
    flags = nix_eval_flags(show_trace=show_trace)
    return [nix, "eval", *flags, f"{flake}#{attribute}", "--apply", apply]


@dataclass(frozen=True, slots=True)
class NixEval:
    """One `nix eval --json` to run: its argv, where, for how long, and what to call it in
    messages (``label``) and what to say when nix is missing (``missing``)."""

    argv: list[str]
    label: str
    missing: str
    timeout: float = 120.0
    cwd: Path | None = None


def run_nix_eval(request: NixEval) -> object:
    """Run ``request`` and parse what it printed.

    Raises:
        ConfigError: nix is not installed, the evaluation failed or timed out, or its output
            is not JSON.
    """
    argv, label, timeout = request.argv, request.label, request.timeout
    command = shlex.join(argv)
    logger.debug("%s: running %s", label, command)
    started = time.monotonic()
    try:
        completed = process.run(argv, process.Run(timeout, request.cwd, errors="strict"))
    except process.CannotStart as exc:
        if exc.missing:
            message = f"{label}: {argv[0]!r} not found; {request.missing}"
        else:  # not executable, not a file, ...
            message = f"{label}: cannot run {argv[0]!r}: {exc.reason}"
        raise ConfigError(None, [message]) from exc
    except process.ProcessTimeout as exc:
        message = f"{label}: `{command}` did not finish within {timeout:g}s"
        raise ConfigError(None, [message]) from exc
    logger.debug("%s: nix eval took %.2fs", label, time.monotonic() - started)
    if completed.returncode != 0:
        failure = _eval_failure(label, command, completed.returncode, completed.stderr)
        raise ConfigError(None, [failure])
    for line in completed.stderr.splitlines():
        # "warning: Git tree '...' is dirty" on every run of a work in progress: not a warning.
        logger.debug("%s: nix: %s", label, line)
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        message = f"{label}: `{command}` printed no valid JSON ({exc})"
        raise ConfigError(None, [message]) from exc


def load_flake_inventory(
    source: str,
    flake: str,
    *,
    nix: str = "nix",
    timeout: float = 120.0,
    cwd: Path | None = None,
    show_trace: bool = False,
) -> dict[str, InventoryHost]:
    """The hosts that ``flake`` declares for ``source`` (colmena, deploy-rs or
    nixosConfigurations), evaluated by ``nix eval`` in ``cwd`` (default: the current one);
    ``show_trace`` passes --show-trace to nix.

    Only the attributes we read are evaluated, but a real colmena hive still runs the NixOS
    module system of every node to get at ``deployment`` (not measured here: tests use plain
    attribute sets), hence the generous default timeout.

    Raises:
        ConfigError: nix is not installed, the evaluation failed or timed out, or its output
            is not the expected JSON.
    """
    argv = nix_eval_argv(source, flake, nix=nix, show_trace=show_trace)
    missing = "install nix, or remove [inventory] from the configuration"
    data = run_nix_eval(NixEval(argv, "inventory", missing, timeout, cwd))
    return parse_inventory(source, data)


def _eval_failure(label: str, command: str, status: int, stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    detail = "\n".join(f"    {line}" for line in lines[-STDERR_LINES:]) or "    (no output)"
    message = f"{label}: `{command}` failed with exit status {status}:\n{detail}"
    if "/nix/store/" in stderr and "No such file or directory" in stderr:
        # The git fetcher copies tracked files only (see the module docstring).
        message += "\n  hint: in a git repository nix sees only tracked files; `git add` them"
    return message
