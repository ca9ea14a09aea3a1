"""`[proof]`: stage 4, verification: how each backup's artifact is proven (issue 16)."""

from __future__ import annotations

from pydantic import Field, field_validator

from deploy_guard.config.base import Duration, StrictModel
from deploy_guard.units import is_valid_unit_name


class ProofConfig(StrictModel):
    """`[proof]`: after a unit succeeds, prove its backup from the tool's own records."""

    enabled: bool = Field(True, description="false: no artifact proof at all (exit codes only)")
    require: bool = Field(
        False,
        description="An artifact that cannot be proven (`unverified`) fails the unit (exit 1)",
    )
    timeout: Duration = Field(120.0, description="Deadline of each proof")
    commands: dict[str, str] = Field(
        default_factory=dict,
        description='Unit name -> shell command run on the host that prints {"time": ..., '
        '"id": ...} about the unit\'s newest artifact (wins over every other proof)',
    )

    @field_validator("commands")
    @classmethod
    def _unit_names(cls, commands: dict[str, str]) -> dict[str, str]:
        problems = [unit for unit in commands if not is_valid_unit_name(unit)]
        if problems:
            raise ValueError(f"not service unit names: {', '.join(problems)}")
        empty = [unit for unit, command in commands.items() if not command.strip()]
        if empty:
            raise ValueError(f"empty command for {', '.join(empty)}")
        return commands
