"""Shell completion of host names, ``@tags`` and stage names from the configuration.

click completes commands and options itself; these are the custom completers for values it
cannot know. Enabled through click's entry point (``_DEPLOY_GUARD_COMPLETE=bash_source``,
see README, "Commands"). A completer never raises and never contacts a host or runs nix: a
broken or missing configuration completes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:  # imported on a Tab only: `--help` must not pay for pydantic
    from deploy_guard.config import Config

log = logging.getLogger(__name__)


def _config_path(context: click.Context) -> Path | None:
    """The --config given after the command, or before it, or None (the default search)."""
    current: click.Context | None = context
    while current is not None:
        value = current.params.get("config")
        if value:
            return Path(value)
        current = current.parent
    return None


def _load(context: click.Context) -> Config | None:
    from deploy_guard.config import load_config  # noqa: PLC0415

    try:
        config, _path = load_config(_config_path(context))
    except Exception:  # completion must never fail the shell
        log.debug("completion: no configuration", exc_info=True)
        return None
    return config


def host_candidates(hosts: Mapping[str, Iterable[str]], incomplete: str) -> list[CompletionItem]:
    """Names and ``@tags`` matching the last item of a comma list (`forge,we` -> `forge,web`).

    ``hosts`` maps each host name to its tags. Pure.
    """
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    tags = sorted({f"@{tag}" for tags in hosts.values() for tag in tags})
    items = [CompletionItem(prefix + name, help="host") for name in hosts if name.startswith(last)]
    items += [CompletionItem(prefix + tag, help="tag") for tag in tags if tag.startswith(last)]
    return items


def complete_hosts(
    context: click.Context, _parameter: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Host names of `[hosts]` and their ``@tags`` (the flake inventory is not evaluated:
    `nix eval` takes seconds, too slow for a Tab)."""
    config = _load(context)
    if config is None:
        return []
    hosts = {name: tuple(entry.tags) for name, entry in config.hosts.items()}
    return host_candidates(hosts, incomplete)


def complete_stages(
    context: click.Context, _parameter: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Stage names of the configuration (built-in stages when none is configured)."""
    config = _load(context)
    if config is None:
        return []
    names = [stage.name for stage in config.stages]
    return [CompletionItem(name, help="stage") for name in names if name.startswith(incomplete)]
