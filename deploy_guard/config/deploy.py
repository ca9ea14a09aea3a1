"""`[inventory]`, `[deploy]` (apply) and `[hook]` (the pre-push hook)."""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from deploy_guard.config.base import Age, StrictModel


class InventoryConfig(StrictModel):
    """`[inventory]`: read the host list from the flake instead of (or besides) `[hosts]`."""

    source: Literal["colmena", "deploy-rs", "nixosConfigurations"] = Field(
        alias="from",
        description="colmena: .#colmenaHive.deploymentConfig; deploy-rs: .#deploy.nodes; "
        "nixosConfigurations: the attribute names of .#nixosConfigurations",
    )
    flake: str = Field(".", description="The flake to evaluate with `nix eval --json`")


# The deploy tools `apply` knows (`[deploy] tool`, --tool), listed here only: each has its
# adapter in deploy_guard/deploy.py.
DeployTool = Literal["nixos-rebuild", "colmena", "deploy-rs", "command"]
DEPLOY_TOOLS: Final[tuple[str, ...]] = get_args(DeployTool)


def _not_root(value: str) -> str:
    if value == "root":
        raise ValueError("the guard user is never root (services.deploy-guard.user refuses it)")
    return value


class DeployConfig(StrictModel):
    """`[deploy]`: how `deploy-guard apply` deploys the hosts whose guard passed."""

    tool: DeployTool = Field(
        "nixos-rebuild", description="Deploy tool (--tool); `command` needs `command` or -- CMD"
    )
    flake: str = Field(".", description="The flake holding the hosts' configurations")
    action: str = Field(
        "switch",
        pattern=r"^[a-z-]+$",
        description="nixos-rebuild action (switch, boot, test, dry-activate, build, dry-build); "
        "colmena apply's goal (switch, boot, test, dry-activate, build, push, keys); deploy-rs: "
        "switch, boot (--boot) or dry-activate (--dry-activate); checked before any backup runs",
    )
    build_first: bool | None = Field(
        None,
        description="Build every selected host's system before the guard runs (nixos-rebuild "
        "build, colmena build); default: true for nixos-rebuild and colmena",
    )
    guard_user: str = Field(
        "deploy-guard",
        pattern=r"^[a-z_][a-z0-9_-]*$",
        description="The NixOS module's guard user (services.deploy-guard.user): it runs the "
        "backups but cannot switch the system, so apply never deploys as it",
    )

    _guard_user = field_validator("guard_user")(_not_root)
    sudo_flag: Literal["--sudo", "--use-remote-sudo", ""] = Field(
        "--sudo",
        description="nixos-rebuild's flag for sudo on the target (--use-remote-sudo before "
        "nixos-rebuild-ng); empty for none",
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Arguments appended to the tool's command line"
    )
    command: list[str] = Field(
        default_factory=list,
        description="argv for tool = command ({host}: once per host; {hosts}: all hosts)",
    )
    deploy_parallel: bool = Field(
        False, description="nixos-rebuild and {host} commands: deploy all hosts at once"
    )


def _selections(value: object) -> object:
    """A host selection may be written as one string or a list of them."""
    return [value] if isinstance(value, str) else value


Selections = Annotated[list[str], BeforeValidator(_selections), WithJsonSchema({"anyOf": [
    {"type": "string"}, {"type": "array", "items": {"type": "string"}},
]})]  # fmt: skip


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
            raise ValueError("`paths` narrows `hosts`, which is empty: list the hosts the "
                             "hook protects in `hosts`")  # fmt: skip
        return self
