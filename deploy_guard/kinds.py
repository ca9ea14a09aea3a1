"""The backup kinds, described once in ``kinds.toml`` (shipped in the package).

The built-in stages (``config.stages.default_stages``), the proof kind of a unit by its name
(``artifact.kind_for_unit``) and the NixOS module's manifest (``nix/module.nix`` reads the same
file with ``builtins.fromTOML``) all come from that table: adding a restic-like tool is one row.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class BuiltinStage:
    """One `[[stages]]` row: a built-in stage, without its units (those come from the kinds)."""

    name: str
    critical: bool
    timeout: float
    exclude: tuple[str, ...]  # patterns that belong to no kind


@dataclass(frozen=True, slots=True)
class BackupKind:
    """One `[[kinds]]` row: a backup tool's units, its stage and what proves them."""

    name: str
    stage: str
    units: tuple[str, ...]  # glob patterns
    exclude: tuple[str, ...]  # glob patterns of its helper units
    proof: str | None  # the deploy_guard.artifact module, None: no built-in proof
    proof_units: tuple[re.Pattern[str], ...]  # full match: the units `proof` applies to


def _stage(row: dict[str, Any]) -> BuiltinStage:
    return BuiltinStage(
        name=row["name"],
        critical=row["critical"],
        timeout=float(row["timeout"]),
        exclude=tuple(row.get("exclude", ())),
    )


def _kind(row: dict[str, Any]) -> BackupKind:
    return BackupKind(
        name=row["name"],
        stage=row["stage"],
        units=tuple(row["units"]),
        exclude=tuple(row.get("exclude", ())),
        proof=row.get("proof"),
        proof_units=tuple(re.compile(pattern) for pattern in row.get("proof_units", ())),
    )


_TABLE: Final = tomllib.loads(
    resources.files("deploy_guard").joinpath("kinds.toml").read_text(encoding="utf-8")
)
STAGES: Final = tuple(map(_stage, _TABLE["stages"]))
KINDS: Final = tuple(map(_kind, _TABLE["kinds"]))


def stage_units(stage: str) -> list[str]:
    """The unit patterns of the built-in ``stage``: its kinds' patterns, in row order."""
    return [pattern for kind in KINDS if kind.stage == stage for pattern in kind.units]


def stage_exclude(stage: BuiltinStage) -> list[str]:
    """The exclude patterns of a built-in stage: its own, then its kinds' helpers."""
    helpers = [pattern for kind in KINDS if kind.stage == stage.name for pattern in kind.exclude]
    return [*stage.exclude, *helpers]
