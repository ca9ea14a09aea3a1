"""`[inventory]`: the hosts of a flake."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deploy_guard.config.base import StrictModel


class InventoryConfig(StrictModel):
    """`[inventory]`: read the host list from the flake instead of (or besides) `[hosts]`."""

    source: Literal["colmena", "deploy-rs", "nixosConfigurations"] = Field(
        alias="from",
        description="colmena: .#colmenaHive.deploymentConfig; deploy-rs: .#deploy.nodes; "
        "nixosConfigurations: the attribute names of .#nixosConfigurations",
    )
    flake: str = Field(".", description="The flake to evaluate with `nix eval --json`")
