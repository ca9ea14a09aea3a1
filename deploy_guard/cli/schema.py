"""`schema`: the JSON schemas of the documents deploy-guard reads (`schema config`, `schema
manifest`); `schema manifest --check`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deploy_guard.cli.common import Common, common_options, examples
from deploy_guard.config import config_json_schema
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.manifest import MANIFEST_PATH, Manifest, load_manifest, manifest_json_schema
from deploy_guard.observe.report import SCHEMA_VERSION


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        "deploy-guard schema manifest > manifest.schema.json",
        "deploy-guard schema manifest --check ./manifest.json",
    ),
)
def schema() -> None:
    """Print the JSON schema of a document deploy-guard reads."""


@schema.command(
    short_help="JSON schema of the host manifest, or check one.",
    epilog=examples(
        "deploy-guard schema manifest > manifest.schema.json",
        f"deploy-guard schema manifest --check {MANIFEST_PATH}",
        "deploy-guard schema manifest --check ./manifest.json --json",
    ),
)
@click.option(
    "--check",
    "check_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Validate this manifest file instead (e.g. {MANIFEST_PATH}); exit 3 when invalid.",
)
@common_options
def manifest(common: Common, check_path: Path | None) -> int:
    """The host manifest written by the NixOS module (/etc/deploy-guard/manifest.json).

    Prints the schema (JSON already; --json changes nothing), or with --check validates a
    manifest: a line on stderr, and with --json a result document on stdout.
    """
    if check_path is None:
        click.echo(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))
        return int(ExitCode.OK)
    try:
        text = check_path.read_text(encoding="utf-8")
        document = load_manifest(text, source=str(check_path))
    except OSError as exc:
        error = ConfigError(check_path, [f"cannot read it: {exc.strerror or exc}"])
        _check_json(common, check_path, None, error)
        raise error from exc
    except ConfigError as exc:
        _check_json(common, check_path, None, exc)
        raise
    _check_json(common, check_path, document, None)
    stages = ", ".join(f"{stage.name} ({len(stage.units)})" for stage in document.stages)
    click.echo(f"{check_path}: valid manifest, stages: {stages or 'none'}", err=True)
    return int(ExitCode.OK)


def _check_json(
    common: Common, path: Path, document: Manifest | None, error: ConfigError | None
) -> None:
    """With --json: the result of `--check` on stdout, valid or not."""
    if not common.json:
        return
    stages = [
        {"name": stage.name, "units": list(stage.units)}
        for stage in (document.stages if document else ())
    ]
    result = {
        "schema": SCHEMA_VERSION,
        "command": "schema manifest",
        "path": str(path),
        "valid": document is not None,
        "errors": list(error.errors) if error else [],
        "stages": stages,
    }
    click.echo(json.dumps(result, indent=2), nl=True)


@schema.command(
    "config",
    short_help="JSON schema of deploy-guard.toml.",
    epilog=examples(
        "deploy-guard schema config > deploy-guard.schema.json",
        "deploy-guard schema config --json | jq '.properties | keys'",
    ),
)
@common_options
def config_schema(common: Common) -> int:
    """deploy-guard.toml (for editors: `#:schema` in the file, as `init` writes it).

    Prints the schema (JSON already; --json changes nothing).
    """
    click.echo(json.dumps(config_json_schema(), indent=2, sort_keys=True))
    return int(ExitCode.OK)
