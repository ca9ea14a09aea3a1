"""The command line: parse, build a frozen request, call the core, render, exit.

The only package that imports click; `main` is the only place that turns errors into exit
codes.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Final

import click

from deploy_guard import __version__
from deploy_guard.cli.options import GLOBAL_OPTIONS, F, common_option_decorators
from deploy_guard.errors import DeployGuardError, ExitCode

# name -> (module, function, one-line help). Commands are imported only when used, so that
# `deploy-guard --help` does not pay for pydantic, rich and paramiko (FIELD-NOTES).
COMMANDS: Final = {
    "init": ("deploy_guard.cli.init", "init", "Write a first deploy-guard.toml for HOSTs."),
    "plan": ("deploy_guard.cli.guard", "plan", "Show which units each stage would run."),
    "run": ("deploy_guard.cli.guard", "run", "Run every backup stage now and report."),
    "apply": ("deploy_guard.cli.apply", "apply", "Guard, then deploy only if every guard passed."),
    "status": ("deploy_guard.cli.status", "status", "Show each backup unit's last run."),
    "hook": ("deploy_guard.cli.hook", "hook", "Git pre-push hook: install it, or run it."),
    "history": ("deploy_guard.cli.history", "history", "Past runs and overrides, newest first."),
    "schema": (
        "deploy_guard.cli.schema",
        "schema",
        "JSON schemas of the config and the manifest.",
    ),
}


def _help_width(max_width: int = 80) -> int:
    """click's help width (`HelpFormatter`), without its `import shutil` (bz2, lzma...):
    $COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns or 80, max_width) - 2, 50)


class LightContext(click.Context):
    """click's context with the help width worked out here (subcommands inherit it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.terminal_width is None:
            self.terminal_width = _help_width(self.max_content_width or 80)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    context_class = LightContext

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute, short_help = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        command.short_help = command.short_help or short_help  # not cut off with "..."
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_module, _attribute, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


EPILOG: Final = """\b
Exit codes:
  0    every unit on every host succeeded
  1    partial failure: a unit of a non-critical stage did not succeed
  2    critical failure: a critical stage failed, or a host was not reached
  3    configuration or usage error (nothing was contacted)
  4    apply: the deploy command failed
  5    apply: deployed, but a host failed verification after the deploy
  130  interrupted (Ctrl-C); backups already started keep running

\b
Examples:
  deploy-guard plan forge
  deploy-guard -v run --on @db
  deploy-guard apply --on @web --keep-going
"""


def _add_common_options(function: F) -> F:
    for option in reversed(common_option_decorators()):
        function = option(function)
    return function


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="deploy-guard")
@_add_common_options
@click.pass_context
def cli(context: click.Context, /, **options: Any) -> None:
    """Run every backup on NixOS hosts now, prove each one succeeded, then deploy.

    The options below work before the command too: deploy-guard -v plan forge.
    """
    context.ensure_object(dict)[GLOBAL_OPTIONS] = options


def _split_deploy_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """`apply HOST -- CMD...`: click would merge CMD into HOST, so it is cut off first."""
    if "apply" in argv and "--" in argv[argv.index("apply") :]:
        cut = argv.index("--", argv.index("apply"))
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes ``error: ...`` and a documented exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    args, deploy_command = _split_deploy_command(args)
    # deploy-guard uses no pydantic plugin; without this, the first model pydantic builds
    # reads the entry points of every installed distribution looking for one (issue 15:
    # 0.1-0.3 s in a development venv). A value the user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        code = cli.main(
            args=args,
            prog_name="deploy-guard",
            standalone_mode=False,
            obj={"deploy_command": deploy_command},
        )
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.CONFIG
    except KeyboardInterrupt:
        click.echo(
            "\ninterrupted: backups already started keep running on the hosts; "
            "nothing was deployed",
            err=True,
        )
        code = ExitCode.INTERRUPTED
    except DeployGuardError as exc:
        if "--debug" in args:  # before or after the command
            import logging  # noqa: PLC0415  (only here: `--help` need not load it)

            logging.getLogger(__name__).exception("details")
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    sys.exit(int(code or 0))
