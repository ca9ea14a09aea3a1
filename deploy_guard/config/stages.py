"""`[[stages]]` and `[hosts.NAME]`, and the built-in stages."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from deploy_guard import kinds
from deploy_guard.config.base import Duration, StrictModel, check_patterns


class StageConfig(StrictModel):
    """One `[[stages]]` table."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Stage name, used by --stage")
    critical: bool = Field(False, description="A failure stops the host's run (exit 2)")
    timeout: Duration = Field(description="Deadline of each unit, counted from its start")
    units: list[str] = Field(description="Glob patterns of the units this stage runs")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns never run")
    max_parallel: int | None = Field(
        None, ge=1, description="At most this many units of the stage at once (default: all)"
    )
    allow_empty: bool = Field(
        False, description="A critical stage that matches nothing is not a failure"
    )
    verify: str | None = Field(
        None,
        description="Shell command run on the host after each unit of this stage succeeds; "
        'prints {"time": ..., "id": ...} about the unit\'s newest artifact (DEPLOY_GUARD_UNIT '
        "names the unit). Proves units no built-in proof knows (README, What counts as success)",
    )

    _patterns = field_validator("units", "exclude")(check_patterns)


class StageOverride(StrictModel):
    """`[hosts.NAME.stages.STAGE]`: per-host changes to a stage; unset keys keep the default."""

    enabled: bool = Field(True, description="false removes the stage for this host")
    critical: bool | None = Field(None, description="Override `critical`")
    timeout: Duration | None = Field(None, description="Override `timeout`")
    units: list[str] | None = Field(None, description="Replace the unit patterns")
    extra_units: list[str] = Field(default_factory=list, description="Patterns added to `units`")
    exclude: list[str] | None = Field(None, description="Replace the exclude patterns")
    max_parallel: int | None = Field(None, ge=1, description="Override `max_parallel`")
    allow_empty: bool | None = Field(None, description="Override `allow_empty`")

    @field_validator("units", "exclude")
    @classmethod
    def _optional_patterns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_patterns(value)

    _extra = field_validator("extra_units")(check_patterns)


class HostConfig(StrictModel):
    """`[hosts.NAME]`."""

    ssh: str | None = Field(
        None, description="SSH destination [user@]host[:port] or ssh_config alias (default: NAME)"
    )
    deploy_target: str | None = Field(
        None,
        min_length=1,
        description="Deploy destination [user@]host[:port] that nixos-rebuild --target-host gets "
        "(default: the flake inventory's target, else the guard destination `ssh`); the guard "
        "user cannot switch the system, so set this when `ssh` logs in as it",
    )
    tags: list[str] = Field(default_factory=list, description="Tags for @tag selection")
    become: Literal["sudo"] | None = Field(
        None, description="Run systemctl/journalctl through sudo -n (for non-root SSH users)"
    )
    stages: dict[str, StageOverride] = Field(
        default_factory=dict, description="Per-host stage overrides, by stage name"
    )


def default_stages() -> list[StageConfig]:
    """The built-in stages, matching the NixOS module unit names (FIELD-NOTES table): one per
    `[[stages]]` row of deploy_guard/kinds.toml, with the units of its kinds."""
    return [
        StageConfig(
            name=stage.name,
            critical=stage.critical,
            timeout=stage.timeout,
            units=kinds.stage_units(stage.name),
            exclude=kinds.stage_exclude(stage),
        )
        for stage in kinds.STAGES
    ]
