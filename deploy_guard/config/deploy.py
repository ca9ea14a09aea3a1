"""`[deploy]`: how `apply` deploys."""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import Field, field_validator

from deploy_guard.config.base import StrictModel

# The deploy tools `apply` knows (`[deploy] tool`, --tool), listed here only: each has its
# adapter in deploy_guard/deploy/tools/ (a module, and its row in `ADAPTERS`; a unit test
# keeps the two lists equal).
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
