"""`schema`: the JSON schemas of the documents deploy-guard reads (`schema config`, `schema
manifest`); `schema manifest --check`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deploy_guard.config import config_json_schema
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.manifest import MANIFEST_PATH, load_manifest, manifest_json_schema


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def schema() -> None:
    """Print the JSON schema of a document deploy-guard reads."""


@schema.command()
@click.option(
    "--check",
    "check_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Validate this manifest file instead (e.g. {MANIFEST_PATH}); exit 3 when invalid.",
)
def manifest(check_path: Path | None) -> int:
    """The host manifest written by the NixOS module (/etc/deploy-guard/manifest.json)."""
    if check_path is None:
        click.echo(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))
        return int(ExitCode.OK)
    try:
        text = check_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(check_path, [f"cannot read it: {exc.strerror or exc}"]) from exc
    document = load_manifest(text, source=str(check_path))
    stages = ", ".join(f"{stage.name} ({len(stage.units)})" for stage in document.stages)
    click.echo(f"{check_path}: valid manifest, stages: {stages or 'none'}", err=True)
    return int(ExitCode.OK)


@schema.command("config")
def config_schema() -> int:
    """deploy-guard.toml (for editors: `#:schema` in the file, as `init` writes it)."""
    click.echo(json.dumps(config_json_schema(), indent=2, sort_keys=True))
    return int(ExitCode.OK)
