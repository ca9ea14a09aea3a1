"""Every `deploy-guard ...` command the quick start and the README show parses with the real
command line: its subcommand exists and it takes those options and arguments. (The quick
start's sequence itself runs on the testbed in `make demo` and tests/integration/test_init.py.)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import click
import pytest

from deploy_guard.cli import _split_deploy_command, cli

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[2]
CONSOLE_BLOCK: Final = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES: Final = ("docs/quickstart.md", "README.md")
EAGER_EXIT: Final = "(--help or -V: printed, exit 0)"


def shown_commands(page: str) -> Iterator[list[str]]:
    """The argv of each `$ deploy-guard ...` line of ``page``'s console blocks."""
    text = (REPOSITORY_ROOT / page).read_text()
    for block in CONSOLE_BLOCK.finditer(text):
        for line in block.group(1).splitlines():
            if line.startswith("$ deploy-guard "):
                yield shlex.split(line.removeprefix("$ "), comments=True)


def parse(argv: list[str]) -> list[str]:
    """Parse ``argv`` as `main` would, down to the last subcommand, running nothing; returns
    the names of the commands it went through.

    Raises:
        click.UsageError: an unknown command, option or a missing argument.
    """
    arguments, _deploy_command = _split_deploy_command(argv[1:])
    names: list[str] = []
    try:
        context = cli.make_context("deploy-guard", list(arguments))
        command: click.Command = cli
        while isinstance(command, click.Group):
            rest = [*context._protected_args, *context.args]
            name, subcommand, rest = command.resolve_command(context, rest)
            assert subcommand is not None
            assert name is not None
            names.append(name)
            context = subcommand.make_context(name, rest, parent=context)
            command = subcommand
    except click.exceptions.Exit as exited:
        # An eager option (--help, -V) parsed, printed and ended the parse successfully.
        if exited.exit_code != 0:
            raise
        names.append(EAGER_EXIT)
    return names


def every_command() -> Iterator[object]:
    for page in PAGES:
        for argv in shown_commands(page):
            yield pytest.param(argv, id=f"{page}: {shlex.join(argv)}")


@pytest.mark.parametrize("argv", list(every_command()))
def test_command_shown_in_the_docs_parses(argv: list[str]) -> None:
    assert parse(argv)


def test_quick_start_shows_the_whole_first_hour() -> None:
    commands = {tuple(parse(argv)) for argv in shown_commands("docs/quickstart.md")}
    assert {("init",), ("plan",), ("run",), ("apply",), ("hook", "install"), ("history",)} <= (
        commands
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy-guard", "plna", "forge"],
        ["deploy-guard", "run", "forge", "--stgae", "x"],
        ["deploy-guard", "hook", "instal"],
        ["deploy-guard", "apply", "forge", "--override"],
    ],
)
def test_a_wrong_command_does_not_parse(argv: list[str]) -> None:
    with pytest.raises(click.UsageError):
        parse(argv)


def test_the_readme_links_the_quick_start_before_anything_else() -> None:
    readme = (REPOSITORY_ROOT / "README.md").read_text()
    first_section = readme.index("\n## ")
    assert "(docs/quickstart.md)" in readme[:first_section]
    assert readme[first_section:].startswith("\n## Install\n")
