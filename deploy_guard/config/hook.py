"""`[hook]`: what the pre-push hook guards."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from deploy_guard.config.base import Age, StrictModel


def _selections(value: object) -> object:
    """A host selection may be written as one string or a list of them."""
    return [value] if isinstance(value, str) else value


Selections = Annotated[
    list[str],
    BeforeValidator(_selections),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    ),
]


class HookConfig(StrictModel):
    """`[hook]`: what `deploy-guard hook pre-push` guards before git pushes (README, "Pre-push
    hook")."""

    branches: list[str] = Field(
        default_factory=lambda: ["main", "master"],
        description="Protected branches, by the short name of the remote ref (globs allowed); "
        "a push updating one of them is guarded",
    )
    hosts: Selections = Field(
        default_factory=list,
        description="Host selections (as in apply) guarded before a push to a protected "
        "branch; empty: the hook guards nothing",
    )
    paths: dict[str, Selections] = Field(
        default_factory=dict,
        description="Path glob (from the repository root, ** for any depth) -> host "
        "selections: only the hosts whose files changed are guarded; each must be in `hosts`",
    )
    max_age: Age | None = Field(
        None, description="Passed to the guard like --max-age (default: the top-level max_age)"
    )

    @field_validator("branches", "hosts")
    @classmethod
    def _no_empty_items(cls, values: list[str]) -> list[str]:
        if any(not value.strip() for value in values):
            raise ValueError("empty names are not allowed")
        return values

    @field_validator("paths")
    @classmethod
    def _valid_paths(cls, paths: dict[str, list[str]]) -> dict[str, list[str]]:
        problems = [f"{glob!r}: empty" for glob in paths if not glob.strip("/")]
        problems += [f"{glob!r}: selects no host" for glob, hosts in paths.items() if not hosts]
        if problems:
            raise ValueError("; ".join(problems))
        return paths

    @model_validator(mode="after")
    def _paths_need_hosts(self) -> HookConfig:
        if self.paths and not self.hosts:
            raise ValueError(
                "`paths` narrows `hosts`, which is empty: list the hosts the "
                "hook protects in `hosts`"
            )
        return self
