"""What every command shares: the common options, logging, consoles, loading hosts."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from deploy_guard.cli.complete import complete_hosts, complete_stages
from deploy_guard.cli.options import GLOBAL_OPTIONS, common_option_decorators
from deploy_guard.durations import parse_duration

if TYPE_CHECKING:  # imported where used: `--help` must not pay for pydantic, rich, paramiko
    from rich.console import Console

    from deploy_guard.config import Config
    from deploy_guard.guard.engine import HostTarget
    from deploy_guard.render import LineRenderer, LiveRenderer
    from deploy_guard.transport.base import Transport
    from deploy_guard.workflow import Session

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


def _global_options() -> dict[str, Any]:
    """The common options given before the command (stored by the group), or none."""
    context = click.get_current_context(silent=True)
    root = context.find_root() if context else None
    given = root.obj.get(GLOBAL_OPTIONS) if root and isinstance(root.obj, dict) else None
    return dict(given or {})


def pop_common(kwargs: dict[str, Any]) -> Common:
    """The `Common` from a command's keyword arguments, merged with the options given before
    the command: a flag is set if set in either place, -v counts add up, and a --config after
    the command wins."""
    before = _global_options()
    return Common(
        config=kwargs.pop("config") or before.get("config"),
        verbose=kwargs.pop("verbose") + before.get("verbose", 0),
        quiet=kwargs.pop("quiet") or before.get("quiet", False),
        no_color=(
            kwargs.pop("no_color")
            or before.get("no_color", False)
            or bool(os.environ.get("NO_COLOR"))
        ),
        json=kwargs.pop("json_output") or before.get("json_output", False),
        debug=kwargs.pop("debug") or before.get("debug", False),
    )


def common_options(function: F) -> F:
    """Add --config, -v, -q, --no-color, --json and --debug; pass them as a `Common`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        common = pop_common(kwargs)
        setup_logging(common)
        return function(common, *args, **kwargs)

    for option in reversed(common_option_decorators()):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def setup_logging(common: Common) -> None:
    level = logging.WARNING
    if common.debug or common.verbose >= 2:
        level = logging.DEBUG
    elif common.verbose == 1:
        level = logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    # paramiko's records (its own logger, and the channel `ssh.py` gives it) only with
    # --debug: a failed handshake logs a 21-line traceback at ERROR (issue 14).
    paramiko_level = logging.DEBUG if common.debug else logging.CRITICAL + 1
    # Here, not at the top: `run --help` need not load the transport (issue 15).
    from deploy_guard.transport.base import PARAMIKO_LOGGER  # noqa: PLC0415

    for name in ("paramiko", PARAMIKO_LOGGER):
        logging.getLogger(name).setLevel(paramiko_level)


# Width for output that is not a terminal (CI logs, pipes, files): rich would wrap at 80
# columns; a log line must stay one line for grep (issue 14).
PIPE_WIDTH: Final = 10_000


def console(common: Common) -> Console:
    """stderr; where it is not a terminal, nothing is hard-wrapped (unless COLUMNS says)."""
    from rich.console import Console  # noqa: PLC0415 (start-up time)

    output = Console(stderr=True, no_color=common.no_color, highlight=False)
    if not output.is_terminal and not os.environ.get("COLUMNS"):
        output.soft_wrap = True
        output.width = PIPE_WIDTH
    return output


def renderer(common: Common, output: Console) -> LiveRenderer | LineRenderer:
    """The live table on a terminal, timestamped lines everywhere else."""
    from deploy_guard.render import LineRenderer, LiveRenderer  # noqa: PLC0415

    if output.is_terminal and not common.quiet:
        return LiveRenderer(output)
    return LineRenderer(output, quiet=common.quiet)


def connector(config: Config) -> Callable[[HostTarget], Transport]:
    """Opens the connection to a host with the configured connect timeout."""
    from deploy_guard.hosts.targets import connect  # noqa: PLC0415

    return functools.partial(connect, connect_timeout=config.connect_timeout)


def session(common: Common, config: Config) -> Session:
    """What the workflow needs from a command: the hosts' connector, stderr, the live view
    (on a terminal) or log lines."""
    from deploy_guard.workflow import Session  # noqa: PLC0415

    output = console(common)
    progress = functools.partial(renderer, common, output)
    return Session(config, connector(config), output, progress, json=common.json)


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
    "--max-age",
    callback=_max_age,
    metavar="DURATION",
    help="Skip units whose last run succeeded within DURATION (reported 'fresh').",
)
status_max_age_option = click.option(
    "--max-age",
    callback=_max_age,
    metavar="DURATION",
    help="Exit 1 unless every unit's last run succeeded within DURATION (runs nothing).",
)


def examples(*lines: str) -> str:
    """A command's epilog: real command lines, kept as written (click rewraps otherwise)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def load_targets(
    common: Common,
    hosts: tuple[str, ...],
    stages: tuple[str, ...],
    all_hosts: bool,
    *,
    show_trace: bool = False,
) -> tuple[Config, tuple[HostTarget, ...]]:
    """Configuration, then the selected hosts (config errors come before any connection).

    Raises:
        ConfigError: bad configuration or flake inventory.
        UsageError: bad selection or stage name.
    """
    from deploy_guard.config import load_config  # noqa: PLC0415
    from deploy_guard.hosts.targets import flake_inventory, resolve_targets  # noqa: PLC0415
    from deploy_guard.observe.notify import check_notify_available  # noqa: PLC0415

    config, path = load_config(common.config)
    check_notify_available(config, path)
    flake_hosts = flake_inventory(config, path, show_trace=show_trace)
    return config, resolve_targets(
        config, hosts, stages, all_hosts=all_hosts, flake_hosts=flake_hosts
    )


def host_arguments(function: F) -> F:
    """HOST... and --on SELECTION (colmena's spelling, repeatable): both select hosts, and
    the command sees them together as ``hosts``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["hosts"] = (*kwargs["hosts"], *kwargs.pop("on"))
        return function(*args, **kwargs)

    on = click.option(
        "--on",
        "on",
        multiple=True,
        metavar="SELECTION",
        shell_complete=complete_hosts,
        help="Hosts to act on, like HOST: names, @TAG, globs, comma lists (repeatable).",
    )
    hosts = click.argument("hosts", nargs=-1, metavar="HOST...", shell_complete=complete_hosts)
    return hosts(on(wrapper))  # type: ignore[return-value]


all_option = click.option(
    "--all", "all_hosts", is_flag=True, help="Every host of [hosts] and the flake inventory."
)
stage_option = click.option(
    "--stage",
    "stages",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_stages,
    help="Run only this stage (repeatable).",
)
parallel_option = click.option(
    "--parallel",
    "--limit",
    "parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Hosts at once (default: config 'parallel', 32).",
)
show_trace_option = click.option(
    "--show-trace",
    is_flag=True,
    help="Pass --show-trace to every nix call (inventory, flake checks, builds).",
)
