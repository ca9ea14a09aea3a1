"""Shared pieces of the configuration models: strict base, durations, patterns."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    WithJsonSchema,
)

from deploy_guard.durations import parse_duration
from deploy_guard.units import pattern_problem

CONFIG_ENV: Final = "DEPLOY_GUARD_CONFIG"
CONFIG_NAME: Final = "deploy-guard.toml"


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError("expected a duration such as 90s, 5m or 1h")


def _age(value: object) -> float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value, allow_zero=True)
    raise ValueError("expected a duration such as 0s, 10m or 1h")


# What parse_duration accepts, for editors (JSON Schema regexes have no case-insensitive flag).
DURATION_PATTERN: Final = r"^\s*(\d+(\.\d+)?\s*([mM][sS]|[sSmMhHdD])\s*)+$|^\s*\d+(\.\d+)?\s*$"


def _duration_schema(minimum: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": DURATION_PATTERN,
                    "description": "A duration: 90s, 5m, 1h30m, 2d, 250ms (or a number of seconds)",
                },
                {"type": "number", minimum: 0, "description": "Seconds"},
            ]
        }
    )


Duration = Annotated[float, BeforeValidator(_seconds), _duration_schema("exclusiveMinimum")]
Age = Annotated[float, BeforeValidator(_age), _duration_schema("minimum")]


def check_patterns(patterns: list[str]) -> list[str]:
    problems = [problem for pattern in patterns if (problem := pattern_problem(pattern))]
    if problems:
        raise ValueError("; ".join(problems))
    return patterns


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
