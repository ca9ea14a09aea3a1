"""The command line: parse, build a frozen request, call the core, render, exit.

The only package that imports click; `main` is the only place that turns errors into exit
codes.
"""

from __future__ import annotations

import logging
import sys

import click

from deploy_guard import __version__
from deploy_guard.cli.apply import apply
from deploy_guard.cli.guard import plan, run
from deploy_guard.errors import DeployGuardError, ExitCode

log = logging.getLogger(__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deploy-guard")
def cli() -> None:
    """Run every backup on NixOS hosts now, prove each one succeeded, then deploy.

    Exit codes: 0 all good, 1 partial failure, 2 critical failure, 3 configuration or
    usage error, 4 the deploy command failed (apply), 130 interrupted.
    """


cli.add_command(plan)
cli.add_command(run)
cli.add_command(apply)


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
    try:
        code = cli.main(args=args, prog_name="deploy-guard", standalone_mode=False,
                        obj={"deploy_command": deploy_command})  # fmt: skip
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.CONFIG
    except KeyboardInterrupt:
        click.echo("\ninterrupted: backups already started keep running on the hosts; "
                   "nothing was deployed", err=True)  # fmt: skip
        code = ExitCode.INTERRUPTED
    except DeployGuardError as exc:
        if "--debug" in args:
            log.exception("details")
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    sys.exit(int(code or 0))
