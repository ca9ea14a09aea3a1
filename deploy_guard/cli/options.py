"""The options every command takes, kept light: the group needs them for `deploy-guard -v
plan forge`, and `deploy-guard --help` must not import pydantic, rich or paramiko."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
# The key in the root context's obj under which the group keeps the options before the command.
GLOBAL_OPTIONS: Final = "global_options"


def common_option_decorators() -> list[Callable[[F], F]]:
    """--config, -v, -q, --no-color, --json and --debug: on every command, and on the group
    (`deploy-guard -v plan forge`, as colmena and nixos-rebuild take them)."""
    return [
        click.option(
            "--config",
            "config",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Configuration file (default: see README, 'Configuration').",
        ),
        click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug)."),
        click.option("-q", "--quiet", is_flag=True, help="Only warnings and the summary."),
        click.option("--no-color", is_flag=True, help="No colours (also: NO_COLOR=1)."),
        click.option(
            "--json",
            "json_output",
            is_flag=True,
            help="Print the result as JSON on stdout; human output stays on stderr.",
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks and SSH library logs."),
    ]
