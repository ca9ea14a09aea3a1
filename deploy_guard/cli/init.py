"""`init`: write a first deploy-guard.toml (and its schema), then show the plan it gives."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import click

from deploy_guard.cli.common import (
    Common,
    common_options,
    connector,
    console,
    examples,
    load_targets,
)
from deploy_guard.cli.guard import show_plan
from deploy_guard.config import CONFIG_NAME, Config, config_json_schema
from deploy_guard.errors import DeployGuardError, ExitCode, UsageError
from deploy_guard.guard.discovery import stage_specs
from deploy_guard.guard.engine import HostTarget
from deploy_guard.hosts.targets import SSH_CONFIG_ENV, SUDO
from deploy_guard.init import SCHEMA_FILE, HostSurvey, host_argument, render_config, survey_host


@click.command(
    epilog=examples(
        "deploy-guard init",
        "deploy-guard init forge nas=root@nas.lan",
        "deploy-guard init forge --force",
    )
)
@click.argument("hosts", nargs=-1, metavar="[HOST|NAME=DESTINATION]...")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(CONFIG_NAME),
    show_default=True,
    help="The file to write.",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option(
    "--become",
    is_flag=True,
    help="The SSH user is not root nor the guard user: use sudo -n on the hosts.",
)
@common_options
def init(common: Common, hosts: tuple[str, ...], output: Path, force: bool, become: bool) -> int:
    """Write a commented deploy-guard.toml with the built-in stages.

    With HOSTs, connect to each (read-only), find the backup units it has, write its
    [hosts.NAME] entry and the patterns that match, then show the plan it would run.
    """
    if output.exists() and not force:
        raise UsageError(f"{output} exists; nothing was written (--force replaces it)")
    surveys = [_survey(common, argument, become) for argument in hosts]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_config(surveys, become=become), encoding="utf-8")
    schema = output.parent / SCHEMA_FILE
    schema.write_text(json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n")
    output_console = console(common)
    output_console.print(
        f"wrote {output} (and {schema.name}, its schema for editors)", markup=False
    )
    if not surveys:
        output_console.print(
            "next: add [hosts.NAME] entries, then `deploy-guard plan NAME`", markup=False
        )
        return int(ExitCode.OK)
    planned = replace(common, config=output)
    config, targets = load_targets(planned, tuple(survey.name for survey in surveys), (), False)
    return show_plan(planned, config, targets, None)


def _survey(common: Common, argument: str, become: bool) -> HostSurvey:
    """Raises: DeployGuardError: the host cannot be reached (nothing is written)."""
    name, destination = host_argument(argument)
    config = Config()
    target = HostTarget(
        name, destination, SUDO if become else (), stage_specs(config, name), _ssh_config()
    )
    console(common).print(f"{name}: connecting to {destination}", markup=False)
    try:
        return survey_host(target, connector(config))
    except DeployGuardError:
        console(common).print(f"{name}: cannot survey it; nothing was written")
        raise


def _ssh_config() -> Path | None:
    value = os.environ.get(SSH_CONFIG_ENV)
    return Path(value).expanduser() if value else None
