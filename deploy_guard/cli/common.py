"""What every command shares: the common options, logging, consoles, loading hosts."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from deploy_guard.durations import parse_duration

if TYPE_CHECKING:  # imported where used: `--help` must not pay for pydantic, rich, paramiko
    from rich.console import Console

    from deploy_guard.config import Config
    from deploy_guard.engine import HostTarget
    from deploy_guard.render import LineRenderer, LiveRenderer
    from deploy_guard.stage import EngineSettings
    from deploy_guard.transport.base import Transport

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Common:
    """Options every command accepts, after the subcommand as users type them."""

    config: Path | None
    verbose: int
    quiet: bool
    no_color: bool
    json: bool
    debug: bool


def common_options(function: F) -> F:
    """Add --config, -v, -q, --no-color, --json and --debug; pass them as a `Common`."""
    options = [
        click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
                     help="Configuration file (default: see README, 'Configuration')."),
        click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug)."),
        click.option("-q", "--quiet", is_flag=True, help="Only warnings and the summary."),
        click.option("--no-color", is_flag=True, help="No colours (also: NO_COLOR=1)."),
        click.option("--json", "json_output", is_flag=True,
                     help="Print the JSON report on stdout; human output stays on stderr."),
        click.option("--debug", is_flag=True, help="Show tracebacks for errors."),
    ]  # fmt: skip

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        common = Common(
            config=kwargs.pop("config"),
            verbose=kwargs.pop("verbose"),
            quiet=kwargs.pop("quiet"),
            no_color=kwargs.pop("no_color") or bool(os.environ.get("NO_COLOR")),
            json=kwargs.pop("json_output"),
            debug=kwargs.pop("debug"),
        )
        setup_logging(common)
        return function(common, *args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def setup_logging(common: Common) -> None:
    level = logging.WARNING
    if common.debug or common.verbose >= 2:
        level = logging.DEBUG
    elif common.verbose == 1:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)  # fmt: skip
    logging.getLogger("paramiko").setLevel(max(level, logging.WARNING))


def console(common: Common) -> Console:
    from rich.console import Console  # noqa: PLC0415 (start-up time)

    return Console(stderr=True, no_color=common.no_color, highlight=False)


def renderer(common: Common, output: Console) -> LiveRenderer | LineRenderer:
    """The live table on a terminal, timestamped lines everywhere else."""
    from deploy_guard.render import LineRenderer, LiveRenderer  # noqa: PLC0415

    if output.is_terminal and not common.quiet:
        return LiveRenderer(output)
    return LineRenderer(output, quiet=common.quiet)


def connector(config: Config) -> Callable[[HostTarget], Transport]:
    """Opens the connection to a host with the configured connect timeout."""
    from deploy_guard.hosts import connect  # noqa: PLC0415

    return functools.partial(connect, connect_timeout=config.connect_timeout)


def settings(config: Config, max_age: float | None = None) -> EngineSettings:
    """Engine timing from the configuration; ``max_age`` (--max-age) wins over `max_age`."""
    from deploy_guard.stage import EngineSettings  # noqa: PLC0415

    return EngineSettings(
        poll_interval=config.poll_interval,
        stop_grace=config.stop_grace,
        log_lines=config.log_lines,
        max_age=max_age if max_age is not None else config.max_age,
        reconnect_limit=config.reconnect_limit,
    )


def _max_age(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


max_age_option = click.option(
    "--max-age", callback=_max_age, metavar="DURATION",
    help="Skip units whose last run succeeded within DURATION (reported 'fresh').",
)  # fmt: skip


def load_targets(
    common: Common, hosts: tuple[str, ...], stages: tuple[str, ...], all_hosts: bool
) -> tuple[Config, tuple[HostTarget, ...]]:
    """Configuration, then the selected hosts (config errors come before any connection).

    Raises:
        ConfigError: bad configuration or flake inventory.
        UsageError: bad selection or stage name.
    """
    from deploy_guard.config import load_config  # noqa: PLC0415
    from deploy_guard.hosts import flake_inventory, resolve_targets  # noqa: PLC0415
    from deploy_guard.notify import check_notify_available  # noqa: PLC0415

    config, path = load_config(common.config)
    check_notify_available(config, path)
    flake_hosts = flake_inventory(config, path)
    return config, resolve_targets(config, hosts, stages, all_hosts=all_hosts,
                                   flake_hosts=flake_hosts)  # fmt: skip


host_arguments = click.argument("hosts", nargs=-1, metavar="HOST...")
all_option = click.option("--all", "all_hosts", is_flag=True,
                          help="Every host of [hosts] and the flake inventory.")  # fmt: skip
stage_option = click.option("--stage", "stages", multiple=True, metavar="NAME",
                            help="Run only this stage (repeatable).")  # fmt: skip
parallel_option = click.option("--parallel", type=click.IntRange(min=1), default=None,
                               help="Hosts at once (default: config 'parallel', 32).")  # fmt: skip
