"""The manual page deploy-guard(1), generated from the click commands.

``python -m deploy_guard.cli.manpage > deploy-guard.1`` (the Nix package runs it at build
time): the page says what ``--help`` says, so it cannot drift from the code.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import click

from deploy_guard import __version__
from deploy_guard.cli import cli

PROGRAM = "deploy-guard"


def escape(text: str) -> str:
    """``text`` safe in a roff line: backslashes, hyphens, and a leading ``.`` or ``'``."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _paragraphs(text: str) -> list[str]:
    """Help text as roff: paragraphs, with click's ``\\b`` blocks kept as written."""
    lines: list[str] = []
    for block in inspect.cleandoc(text).split("\n\n"):
        if block.startswith("\b"):
            body = block.removeprefix("\b").strip("\n").splitlines()
            lines += [".PP", ".nf", *(escape(line) for line in body), ".fi"]
        else:
            lines += [".PP", escape(" ".join(block.split()))]
    return lines


def _options(command: click.Command, context: click.Context) -> list[str]:
    lines = []
    # click keeps one help option per command, named by the first context that asked for it
    # (an earlier invocation in the same process): its names are taken from this context.
    help_option = command.get_help_option(context)
    for parameter in command.get_params(context):
        record = parameter.get_help_record(context)
        if record is None or isinstance(parameter, click.Argument):
            continue
        names, help_text = record
        if parameter is help_option:
            names = ", ".join(context.help_option_names)
        lines += [".TP", f"\\fB{escape(names)}\\fR", escape(" ".join(help_text.split()))]
    return lines


def _commands(
    group: click.Group, context: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every command below ``group``, depth first, each with its own context."""
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        child = click.Context(command, info_name=name, parent=context, **command.context_settings)
        if isinstance(command, click.Group):
            yield from _commands(command, child)
        else:
            yield command, child


def render() -> str:
    """The whole page, in roff (man(7))."""
    # The group's context_settings (-h) as `deploy-guard` itself applies them (make_context):
    # without them the page would depend on what click cached from an earlier invocation.
    root = click.Context(cli, info_name=PROGRAM, **cli.context_settings)
    summary = (cli.help or "").strip().splitlines()[0].rstrip(".")
    lines = [
        f'.TH DEPLOY\\-GUARD 1 "" "{PROGRAM} {__version__}" "User Commands"',
        ".SH NAME",
        f"{PROGRAM} \\- {escape(summary[0].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        f".B {PROGRAM}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_paragraphs(cli.help or ""),
        ".SH OPTIONS",
        *_options(cli, root),
        ".SH COMMANDS",
    ]
    for command, context in _commands(cli, root):
        path = context.command_path
        pieces = " ".join(command.collect_usage_pieces(context))
        lines += [f'.SS "{escape(path)} {escape(pieces)}"', *_paragraphs(command.help or "")]
        lines += _options(command, context)
        if command.epilog:
            lines += _paragraphs(command.epilog)
    lines += ['.SH "EXIT STATUS"', *_paragraphs(cli.epilog or "")]
    lines += ['.SH "SEE ALSO"', "nixos\\-rebuild(8), colmena(1), systemctl(1), journalctl(1)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
