"""Which hosts a command line means: names, SSH destinations, ``@tag``s, globs and ``--all``.

Pure: the known hosts come from the configuration and the flake inventory (`inventory`),
merged by `known_hosts`; `select_hosts` expands the HOST arguments against them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from deploy_guard.config import Config
from deploy_guard.errors import UsageError
from deploy_guard.hosts.inventory import InventoryHost

GLOB_CHARACTERS: Final = frozenset("*?[")
LISTED_AT_MOST: Final = 20  # names or tags quoted in an error message
# `[user@][v6addr]:port` (sshconfig.parse_destination) has brackets but is no glob.
_BRACKETED_ADDRESS: Final = re.compile(r"(?:[^@\[]*@)?\[[^\]]*:[^\]]*\](?::\d+)?")


@dataclass(frozen=True, slots=True)
class KnownHost:
    """A host that `--all`, ``@tag`` and globs can select."""

    name: str
    destination: str
    tags: tuple[str, ...]


def known_hosts(config: Config, flake_hosts: Mapping[str, InventoryHost]) -> dict[str, KnownHost]:
    """Every host of the flake inventory and of `[hosts.NAME]`, by name.

    A `[hosts.NAME]` entry for a flake host refines it field by field: its ``ssh``, when set,
    replaces the flake's destination, and its ``tags``, when not empty, replace the flake's
    tags (they are not added to them; an empty list cannot remove the flake's tags). The
    destination is otherwise the flake's, or the name itself. Flake hosts come first, in the
    flake's order, then the hosts only the configuration knows.
    """
    known = {}
    for name in dict.fromkeys([*flake_hosts, *config.hosts]):
        flake_host, entry = flake_hosts.get(name), config.hosts.get(name)
        destination = (entry.ssh if entry else None) or (
            flake_host.destination if flake_host else None
        )
        tags = (tuple(entry.tags) if entry else ()) or (flake_host.tags if flake_host else ())
        known[name] = KnownHost(name, destination or name, tags)
    return known


def _is_glob(item: str) -> bool:
    return not GLOB_CHARACTERS.isdisjoint(item) and not _BRACKETED_ADDRESS.fullmatch(item)


def _listing(values: Iterable[str]) -> str:
    items = sorted(set(values))
    if not items:
        return "none"
    shown = ", ".join(items[:LISTED_AT_MOST])
    more = len(items) - LISTED_AT_MOST
    return f"{shown} and {more} more" if more > 0 else shown


def _expand(item: str, known: Mapping[str, KnownHost]) -> list[str] | str:
    """The names ``item`` stands for, or the reason it stands for none."""
    if item.startswith("@"):
        tag = item[1:]
        names = sorted(host.name for host in known.values() if tag in host.tags)
        tags = _listing(f"@{tag}" for host in known.values() for tag in host.tags)
        return names or f"no host has the tag {item!r} (known tags: {tags})"
    if _is_glob(item):
        names = sorted(name for name in known if fnmatch.fnmatchcase(name, item))
        return names or f"no known host matches {item!r} (known hosts: {_listing(known)})"
    # A plain name, a `[hosts.NAME]` entry or not, an SSH destination, or `local`: kept as
    # given, so that `deploy-guard run root@10.0.0.5:2222` needs no configuration (issue 2).
    return [item]


def select_hosts(
    expressions: Sequence[str], known: Mapping[str, KnownHost], *, all_hosts: bool = False
) -> list[str]:
    """The hosts the HOST arguments (or ``--all``) name, each once, in first-mention order.

    Each expression is a comma-separated list, like colmena's ``--on``; empty items are
    ignored. An item is ``@TAG`` (every known host with that tag, by name), a glob with
    ``*``, ``?`` or ``[...]`` (every known host name it matches, by name), or anything else:
    a name or SSH destination, kept as given even when unknown. ``--all`` is every known host,
    sorted by name, and cannot be combined with HOST arguments.

    Raises:
        UsageError: nothing selected at all, ``--all`` with HOST arguments or with no known
            host, or a tag or glob that matches no known host (all of them, in one message).
    """
    items = [item.strip() for expression in expressions for item in expression.split(",")]
    items = [item for item in items if item]
    if all_hosts:
        if items:
            raise UsageError(f"--all selects every known host; drop {', '.join(items)}")
        if not known:
            raise UsageError("--all: no host is known; add [hosts.NAME] or [inventory]")
        return sorted(known)
    if not items:
        raise UsageError(
            "name at least one HOST (a [hosts.NAME] entry, @TAG, a glob, an SSH destination, "
            "or 'local'), or use --all"
        )
    selected: dict[str, None] = {}
    problems = []
    for item in items:
        match _expand(item, known):
            case str(problem):
                problems.append(problem)
            case names:
                selected.update(dict.fromkeys(names))
    if problems:
        raise UsageError("; ".join(dict.fromkeys(problems)))
    return list(selected)
