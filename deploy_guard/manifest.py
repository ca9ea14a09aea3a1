"""The host manifest: the exact backup units a NixOS host's own configuration defines.

The NixOS module (nix/module.nix) writes it to `MANIFEST_PATH` on every host that enables
`services.deploy-guard`; its units are derived from the host's options (`services.restic.backups`,
`services.syncoid.commands`, ...), so they name what the host is *supposed* to run, not what a
pattern happens to match. This module is its schema: the pydantic model, the loader and the
JSON schema printed by `deploy-guard schema manifest`. It does no I/O.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from deploy_guard import units as unit_names
from deploy_guard.durations import parse_duration
from deploy_guard.errors import ConfigError

MANIFEST_PATH: Final = "/etc/deploy-guard/manifest.json"
MANIFEST_SCHEMA_VERSION: Final = 1


def _unit_name(unit: str) -> str:
    if not unit_names.is_valid_unit_name(unit):
        raise ValueError(f"{unit!r} is not a service unit name")
    if unit_names.is_template(unit):
        raise ValueError(f"{unit!r} is a template: it cannot be started")
    return unit


UnitName = Annotated[
    str,
    AfterValidator(_unit_name),
    WithJsonSchema(
        {
            "type": "string",
            # The same alphabet as deploy_guard.units.is_valid_unit_name; templates are refused too.
            "pattern": f"^(?!-)(?!.*@\\.service$){unit_names._UNIT_NAME.pattern}$",
            "description": "A service unit name such as restic-backups-home.service",
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestStage(_Strict):
    """One stage of the manifest: a name, its exact units, and optionally their deadline."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Stage name (snapshots, replication, applications); matches a configured "
        "stage of the same name",
    )
    units: tuple[UnitName, ...] = Field(
        description="Exact service unit names, in the order the host's configuration lists "
        "them; empty when the host has no backup of this kind"
    )
    timeout: str | None = Field(
        None,
        description="Deadline of each unit of this stage, counted from its start (e.g. 90s, "
        "5m, 1h30m); null leaves it to the workstation's configuration",
    )
    allow_empty: bool = Field(
        False,
        description="The host declares it has no backup of this kind: an empty `units` list "
        "is then not a failure even when the stage is critical",
    )

    @field_validator("units")
    @classmethod
    def _listed_once(cls, units: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({unit for unit in units if units.count(unit) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return units

    @field_validator("timeout")
    @classmethod
    def _duration(cls, timeout: str | None) -> str | None:
        if timeout is not None:
            parse_duration(timeout)  # raises ValueError with the reason
        return timeout

    @property
    def timeout_seconds(self) -> float | None:
        """The deadline in seconds, or None when the manifest leaves it to the configuration."""
        return None if self.timeout is None else parse_duration(self.timeout)


class ManifestProof(_Strict):
    """How the host proves one backup's artifact (issue 16): a proof unit the module defines,
    which runs the kind's check as the backup's own user and logs one JSON record."""

    unit: UnitName = Field(description="The backup unit this proves")
    kind: Literal["restic", "borg", "pgbackrest", "dump", "sanoid", "syncoid"] = Field(
        description="Which backup tool's records prove it (deploy_guard/artifact/KIND.py)"
    )
    proof_unit: UnitName = Field(
        description="The oneshot unit that runs the check (deploy-guard-proof@UNIT.service)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="What the check and its judge need: restic paths, borg glob, pgBackRest "
        "stanza and type, dump files, sanoid datasets and periods, syncoid source",
    )


class Manifest(_Strict):
    """`/etc/deploy-guard/manifest.json`: the host's backup inventory, stage by stage."""

    schema_version: Literal[1] = Field(
        description="Version of this format; a reader refuses a version it does not know"
    )
    stages: tuple[ManifestStage, ...] = Field(
        description="Stages in the order they run; every unit appears in exactly one stage"
    )
    proofs: tuple[ManifestProof, ...] = Field(
        (), description="Proof units of the backups (stage 4, verification); optional"
    )

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: tuple[ManifestStage, ...]) -> tuple[ManifestStage, ...]:
        names = [stage.name for stage in stages]
        problems = []
        repeated_names = sorted({name for name in names if names.count(name) > 1})
        if repeated_names:
            problems.append(f"stage names must be unique; repeated: {', '.join(repeated_names)}")
        units = [unit for stage in stages for unit in set(stage.units)]
        repeated_units = sorted({unit for unit in units if units.count(unit) > 1})
        if repeated_units:
            problems.append(f"units listed in more than one stage: {', '.join(repeated_units)}")
        if problems:
            raise ValueError("; ".join(problems))
        return stages

    def units(self) -> tuple[str, ...]:
        """Every unit of every stage, in stage order."""
        return tuple(unit for stage in self.stages for unit in stage.units)

    def stage(self, name: str) -> ManifestStage | None:
        """The stage called ``name``, or None when the manifest has none."""
        return next((stage for stage in self.stages if stage.name == name), None)


def _format_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "literal_error" and path == "schema_version":
            message = (
                f"unsupported manifest version {item['input']!r}; this deploy-guard reads "
                f"version {MANIFEST_SCHEMA_VERSION} (update deploy-guard or the NixOS module)"
            )
        lines.append(f"{path or '(top level)'}: {message}")
    return lines


def load_manifest(text: str, *, source: str = MANIFEST_PATH) -> Manifest:
    """Parse and validate a manifest's JSON text.

    ``source`` names where the text came from in error messages (e.g. ``forge:/etc/...``).

    Raises:
        ConfigError: the text is not JSON, or every problem of the document at once, each
            with its key path (``stages[1].units: ...``).
    """
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(Path(source), [f"not valid JSON: {exc}"]) from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(Path(source), _format_errors(exc)) from exc


def manifest_json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), as `deploy-guard schema manifest` prints it."""
    schema = Manifest.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:deploy-guard:manifest:1",
        **schema,
    }
