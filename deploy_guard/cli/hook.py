"""`hook install` and `hook pre-push`: guard the hosts a push to a protected branch concerns.

A push that touches no protected branch, or no mapped path, ends here with exit 0 before the
flake inventory is read or any host is contacted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console

from deploy_guard import workflow
from deploy_guard.cli.common import Common, common_options, console, examples, session
from deploy_guard.config import load_config
from deploy_guard.deploy.gate import GateDecision
from deploy_guard.deploy.hook import (
    OVERRIDE_ENV,
    PushedRef,
    hooks_directory,
    install_hook,
    override_reason,
    parse_push_lines,
    protected_pushes,
    push_selections,
    push_targets,
    pushes_from_pre_commit,
)
from deploy_guard.errors import ConfigError, ExitCode, UsageError
from deploy_guard.model import RunReport
from deploy_guard.observe import report
from deploy_guard.render import EXIT_MEANING, print_summary, say

PREFIX = "deploy-guard hook:"


@click.group(
    epilog=examples(
        "deploy-guard hook install",
        "git push   # runs: deploy-guard hook pre-push REMOTE URL",
        "DEPLOY_GUARD_OVERRIDE='restic repo moved, fixed in the next push' git push",
    )
)
def hook() -> None:
    """The git pre-push hook: install it; git runs `hook pre-push` on every push."""


@hook.command(
    "install",
    short_help="Install the pre-push hook in this repository.",
    epilog=examples("deploy-guard hook install", "deploy-guard hook install --force"),
)
@click.option("--force", is_flag=True, help="Replace a pre-push hook deploy-guard did not write.")
@common_options
def install(common: Common, force: bool) -> int:
    """Install the pre-push hook where git looks for it (core.hooksPath honoured)."""
    output = console(common)
    path = install_hook(hooks_directory(Path.cwd()), force=force)
    if common.json:
        document = {
            "schema": report.SCHEMA_VERSION,
            "command": "hook install",
            "installed": str(path),
        }
        click.echo(report.dumps(document), nl=False)
    say(output, f"installed {path}: pushes to protected branches are guarded first", soft_wrap=True)
    try:
        config, _path = load_config(common.config)
    except ConfigError as exc:
        say(output, f"warning: {exc}", "yellow", soft_wrap=True)
        return int(ExitCode.OK)
    if not config.hook.hosts:
        say(
            output,
            "note: [hook] hosts is empty, so the hook guards nothing yet",
            "yellow",
            soft_wrap=True,
        )
    return int(ExitCode.OK)


def _read_pushes() -> tuple[PushedRef, ...]:
    """git's lines on stdin; else the pre-commit framework's variables; else nothing pushed.

    Raises:
        UsageError: malformed lines, or run by hand at a terminal.
    """
    stream = sys.stdin
    at_terminal = stream.isatty()
    pushes = parse_push_lines("" if at_terminal else stream.read())
    pushes = pushes or pushes_from_pre_commit(os.environ)
    if not pushes and at_terminal:
        raise UsageError(
            "`hook pre-push` is run by git, which sends the refs being pushed on "
            "stdin ('<local ref> <local sha> <remote ref> <remote sha>')"
        )
    return pushes


def _verdict(
    output: Console, result: RunReport, gate: GateDecision, warnings: Sequence[str]
) -> None:
    """What failed, the override if one let the push through, and one final line."""
    print_summary(output, result, log_lines=5, final=False)
    for warning in warnings:
        say(output, f"warning: {warning}", "yellow", soft_wrap=True)
    code = int(gate.exit_code)
    if result.override is not None:
        say(
            output,
            f"OVERRIDE by {result.override.by}: {result.override.reason} "
            "(recorded in the audit log and each host's journal)",
            "bold yellow",
            soft_wrap=True,
        )
        say(
            output,
            f"{PREFIX} push allowed on override; run {result.run_id}",
            "bold yellow",
            soft_wrap=True,
        )
    elif gate.refused:
        meaning = EXIT_MEANING.get(code, "error")
        say(
            output,
            f"{PREFIX} push BLOCKED: the guard failed (exit {code}, {meaning}); "
            f"run {result.run_id}. Fix the backups and push again, or push on the "
            f"record: {OVERRIDE_ENV}='why it cannot wait' git push",
            "bold red",
            soft_wrap=True,
        )
    else:
        say(
            output,
            f"{PREFIX} every backup succeeded, push allowed; run {result.run_id}",
            "bold green",
            soft_wrap=True,
        )


@hook.command(
    "pre-push",
    short_help="Run by git before a push: guard, block on failure.",
    epilog=examples(
        "git push   # runs: deploy-guard hook pre-push origin URL",
        "echo 'refs/heads/main SHA refs/heads/main SHA' | deploy-guard hook pre-push",
    ),
)
@click.argument("remote", required=False)
@click.argument("url", required=False)
@common_options
def pre_push(common: Common, remote: str | None, url: str | None) -> int:
    """Run by git before a push (REMOTE URL, refs on stdin): guard, and block on failure."""
    output = console(common)

    def note(text: str) -> None:
        if not common.quiet:
            say(output, f"{PREFIX} {text}", soft_wrap=True)

    pushes = _read_pushes()
    config, path = load_config(common.config)
    remote = remote or os.environ.get("PRE_COMMIT_REMOTE_NAME") or None
    if not config.hook.hosts:
        note("no [hook] hosts configured; this push is not guarded")
        return int(ExitCode.OK)
    protected = protected_pushes(pushes, config.hook.branches)
    if not protected:
        note(f"no protected branch ({', '.join(config.hook.branches)}) updated; not guarded")
        return int(ExitCode.OK)
    selections = push_selections(config.hook, protected, remote, note)
    if not selections:
        note("no file mapped in [hook.paths] changed; not guarded")
        return int(ExitCode.OK)
    targets = push_targets(config, path, selections)
    branches = ", ".join(dict.fromkeys(str(push.branch) for push in protected))
    note(
        f"guarding {', '.join(t.name for t in targets)} before pushing {branches} "
        f"to {remote or url or 'the remote'}"
    )
    gated = workflow.guard_push(session(common, config), targets, override_reason(os.environ))
    if common.json:
        click.echo(report.dumps(report.run_json(gated.result)), nl=False)
    _verdict(output, gated.result, gated.gate, gated.warnings)
    return int(gated.gate.exit_code)
