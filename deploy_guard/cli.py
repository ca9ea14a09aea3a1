"""The command line: parse, build a frozen request, call the engine, render, exit.

The only module that imports click; the only place that turns errors into exit codes.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from deploy_guard import __version__, report
from deploy_guard.clock import SystemClock
from deploy_guard.config import Config, load_config
from deploy_guard.engine import RunRequest, plan_hosts, run_hosts
from deploy_guard.errors import DeployGuardError, ExitCode
from deploy_guard.hosts import connect, resolve_targets
from deploy_guard.render import LineRenderer, LiveRenderer, print_plan, print_summary
from deploy_guard.stage import EngineSettings

log = logging.getLogger(__name__)
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
        _setup_logging(common)
        click.get_current_context().meta["debug"] = common.debug
        return function(common, *args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _setup_logging(common: Common) -> None:
    level = logging.WARNING
    if common.debug or common.verbose >= 2:
        level = logging.DEBUG
    elif common.verbose == 1:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)  # fmt: skip
    logging.getLogger("paramiko").setLevel(max(level, logging.WARNING))


def _console(common: Common) -> Console:
    return Console(stderr=True, no_color=common.no_color, highlight=False)


def _settings(config: Config) -> EngineSettings:
    return EngineSettings(
        poll_interval=config.poll_interval,
        stop_grace=config.stop_grace,
        log_lines=config.log_lines,
    )


host_arguments = click.argument("hosts", nargs=-1, metavar="HOST...")
stage_option = click.option("--stage", "stages", multiple=True, metavar="NAME",
                            help="Run only this stage (repeatable).")  # fmt: skip
parallel_option = click.option("--parallel", type=click.IntRange(min=1), default=None,
                               help="Hosts at once (default: config 'parallel', 4).")  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deploy-guard")
def cli() -> None:
    """Run every backup on NixOS hosts now, prove each one succeeded, then deploy.

    Exit codes: 0 all good, 1 partial failure, 2 critical failure, 3 configuration or
    usage error, 130 interrupted.
    """


@cli.command()
@host_arguments
@stage_option
@parallel_option
@common_options
def plan(common: Common, hosts: tuple[str, ...], stages: tuple[str, ...],
         parallel: int | None) -> int:  # fmt: skip
    """Show which units each stage would run on each HOST. Starts nothing."""
    return _plan(common, hosts, stages, parallel)


def _plan(common: Common, hosts: tuple[str, ...], stages: tuple[str, ...],
          parallel: int | None) -> int:  # fmt: skip
    config, _path = load_config(common.config)
    targets = resolve_targets(config, hosts, stages)
    results = plan_hosts(
        targets,
        functools.partial(connect, connect_timeout=config.connect_timeout),
        parallel or config.parallel,
    )
    if common.json:
        click.echo(report.dumps(report.plan_json(results)), nl=False)
    if not common.quiet or not common.json:
        print_plan(_console(common), results)
    return int(ExitCode.CRITICAL if any(r.error for r in results) else ExitCode.OK)


@cli.command()
@host_arguments
@stage_option
@parallel_option
@click.option("--dry-run", is_flag=True, help="Same as 'plan': show what would run.")
@common_options
def run(common: Common, hosts: tuple[str, ...], stages: tuple[str, ...],
        parallel: int | None, dry_run: bool) -> int:  # fmt: skip
    """Run every backup stage on each HOST now and report what really happened."""
    if dry_run:
        return _plan(common, hosts, stages, parallel)
    config, _path = load_config(common.config)
    request = RunRequest(
        command="run",
        hosts=resolve_targets(config, hosts, stages),
        parallel=parallel or config.parallel,
        settings=_settings(config),
    )
    console = _console(common)
    live = console.is_terminal and not common.quiet
    renderer = LiveRenderer(console) if live else LineRenderer(console, quiet=common.quiet)
    try:
        result = run_hosts(
            request,
            functools.partial(connect, connect_timeout=config.connect_timeout),
            SystemClock(),
            renderer,
        )
    finally:
        renderer.close()
    try:
        saved = report.save_run(result, os.environ)
        log.info("report saved to %s", saved)
    except OSError as exc:
        console.print(f"warning: could not save the report: {exc}", style="yellow")
    if common.json:
        click.echo(report.dumps(report.run_json(result)), nl=False)
    print_summary(console, result, log_lines=5)
    return int(result.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes ``error: ...`` and a documented exit code."""
    try:
        code = cli.main(args=argv, prog_name="deploy-guard", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.CONFIG
    except KeyboardInterrupt:
        click.echo("\ninterrupted: backups already started keep running on the hosts", err=True)
        code = ExitCode.INTERRUPTED
    except DeployGuardError as exc:
        if "--debug" in (argv if argv is not None else sys.argv):
            logging.getLogger(__name__).exception("details")
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    sys.exit(int(code or 0))
