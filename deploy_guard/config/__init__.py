"""Configuration: pydantic models, built-in defaults, and finding and loading the TOML file.

pydantic lives at this boundary only; the engine receives plain frozen values (model.StagePlan).
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from deploy_guard.config.base import (
    CONFIG_ENV,
    CONFIG_NAME,
    Age,
    Duration,
    StrictModel,
)
from deploy_guard.config.checks import (
    NIXOS_ROLLBACK,
    CommandCheck,
    CommandHealthCheck,
    FreeSpaceCheck,
    HealthCheck,
    HttpHealthCheck,
    NamedCheck,
    PreflightCheck,
    SystemStateCheck,
    TcpCheck,
    UnitCheck,
    UnitsExistCheck,
    VerifyConfig,
    parse_size,
)
from deploy_guard.config.deploy import DEPLOY_TOOLS, DeployConfig
from deploy_guard.config.hook import HookConfig
from deploy_guard.config.inventory import InventoryConfig
from deploy_guard.config.messages import format_errors
from deploy_guard.config.observe import MetricsConfig, NotifyConfig, ReceiptsConfig
from deploy_guard.config.proof import ProofConfig
from deploy_guard.config.stages import HostConfig, StageConfig, StageOverride, default_stages
from deploy_guard.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "DEPLOY_TOOLS",
    "NIXOS_ROLLBACK",
    "Age",
    "CommandCheck",
    "CommandHealthCheck",
    "Config",
    "DeployConfig",
    "Duration",
    "FreeSpaceCheck",
    "HealthCheck",
    "HookConfig",
    "HostConfig",
    "HttpHealthCheck",
    "InventoryConfig",
    "MetricsConfig",
    "NotifyConfig",
    "PreflightCheck",
    "ProofConfig",
    "ReceiptsConfig",
    "StageConfig",
    "StageOverride",
    "SystemStateCheck",
    "TcpCheck",
    "UnitCheck",
    "UnitsExistCheck",
    "VerifyConfig",
    "config_json_schema",
    "default_stages",
    "find_config_file",
    "load_config",
    "parse_config",
    "parse_size",
]


class Config(StrictModel):
    """The whole file."""

    stages: list[StageConfig] = Field(
        default_factory=default_stages, description="Ordered stages; replaces the defaults"
    )
    hosts: dict[str, HostConfig] = Field(default_factory=dict, description="Known hosts")
    deploy: DeployConfig = Field(
        default_factory=DeployConfig, description="How `apply` deploys (see README, apply)"
    )
    inventory: InventoryConfig | None = Field(
        None, description="Also take hosts from the flake; [hosts.NAME] entries override them"
    )
    # Every selected host at once, up to 32: the backups run on the hosts and the workstation
    # only watches (a thread and one SSH connection per host); see docs/benchmarks.md.
    parallel: int = Field(32, ge=1, description="Hosts guarded at once")
    poll_interval: Duration = Field(0.5, description="Time between two polls of a host")
    connect_timeout: Duration = Field(15.0, description="Time allowed to open an SSH connection")
    ssh_config: Path | None = Field(
        None,
        strict=False,  # TOML has no path type: a string becomes a Path
        description="ssh_config file given to `ssh -G -F` (default: ssh's own ~/.ssh/config and "
        "/etc/ssh/ssh_config); the DEPLOY_GUARD_SSH_CONFIG variable overrides it",
    )
    reconnect_limit: Duration = Field(
        300.0,
        description="How long a host may stay unreachable mid-run before its units "
        "in flight are reported unknown (exit 2)",
    )
    stop_grace: Duration = Field(
        15.0, description="After stopping a timed-out unit, wait this long before SIGKILL"
    )
    log_lines: int = Field(20, ge=0, le=1000, description="Journal lines kept per failed unit")
    max_age: Age | None = Field(
        None, description="Units whose last run succeeded within this are `fresh` (--max-age)"
    )
    hook: HookConfig = Field(
        default_factory=HookConfig, description="What the git pre-push hook guards"
    )
    preflight: list[PreflightCheck] = Field(
        default_factory=list,
        description="[[preflight]] checks run on every host before its first stage (and by plan)",
    )
    health: list[HealthCheck] = Field(
        default_factory=list, description="[[health]] checks run on each host after apply's deploy"
    )
    verify: VerifyConfig = Field(
        default_factory=VerifyConfig, description="How apply verifies and rolls back a host"
    )
    notify: NotifyConfig = Field(
        default_factory=NotifyConfig, description="Notifications of run results (Apprise URLs)"
    )
    metrics: MetricsConfig | None = Field(
        None, description="Write a Prometheus textfile on each host after each run"
    )
    receipts: ReceiptsConfig = Field(
        default_factory=ReceiptsConfig, description="Receipts and journal entries on each host"
    )
    proof: ProofConfig = Field(
        default_factory=ProofConfig,
        description="Stage 4: prove each backup's artifact from the backup tool's own records",
    )
    # The file this came from (None: the built-in defaults), named by -v and the report.
    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        return self._source

    @field_validator("preflight", "health")
    @classmethod
    def _unique_check_names(cls, checks: list[NamedCheck]) -> list[NamedCheck]:
        names = [check.name for check in checks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique; repeated: {', '.join(duplicates)}")
        return checks

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[StageConfig]) -> list[StageConfig]:
        if not stages:  # issue 11, case 5: a guard with no stage would prove nothing
            raise ValueError(
                "stages = [] guards nothing; remove the key to use the built-in "
                "stages, or list at least one stage"
            )
        names = [stage.name for stage in stages]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(duplicates)}")
        return stages


def _undefined_stage_overrides(data: Mapping[str, Any]) -> list[str]:
    """`[hosts.X.stages.Y]` tables naming no stage, read from the raw TOML so that they are
    reported together with pydantic's errors."""
    stages = data.get("stages")
    if isinstance(stages, list):
        names = {stage.get("name") for stage in stages if isinstance(stage, dict)}
    else:
        names = {stage.name for stage in default_stages()}
    hosts = data.get("hosts")
    problems = []
    for host, host_config in hosts.items() if isinstance(hosts, dict) else ():
        overrides = host_config.get("stages") if isinstance(host_config, dict) else None
        for stage in overrides if isinstance(overrides, dict) else ():
            if stage not in names:
                problems.append(f"hosts.{host}.stages.{stage}: no stage named {stage!r}")
    return problems


def parse_config(
    data: Mapping[str, Any], path: Path | None = None, text: str | None = None
) -> Config:
    """Validate already-parsed TOML (``text``, the file itself, gives the lines of errors).

    Raises:
        ConfigError: every problem at once, each with its key path (list items by name).
    """
    problems = _undefined_stage_overrides(data)
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(path, format_errors(exc, Config, data, text) + problems) from exc
    if problems:
        raise ConfigError(path, problems)
    return config


def find_config_file(explicit: Path | None, cwd: Path, env: Mapping[str, str]) -> Path | None:
    """The file to load: --config, $DEPLOY_GUARD_CONFIG, deploy-guard.toml in cwd or a parent
    up to the repository root, $XDG_CONFIG_HOME/deploy-guard/config.toml; None means defaults.

    Raises:
        ConfigError: an explicitly named file (--config or the variable) does not exist.
    """
    for named in (explicit, Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None):
        if named is not None:
            if not named.is_file():
                raise ConfigError(named, ["no such file"])
            return named
    for directory in (cwd, *cwd.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            break
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME", "~")).expanduser() / ".config")
    candidate = xdg / "deploy-guard" / "config.toml"
    return candidate if candidate.is_file() else None


def load_config(explicit: Path | None = None) -> tuple[Config, Path | None]:
    """Find, read and validate the configuration.

    Raises:
        ConfigError: unreadable file, TOML syntax error or invalid content.
    """
    path = find_config_file(explicit, Path.cwd(), os.environ)
    if path is None:
        log.info("configuration: none found, using the built-in defaults")
        return Config(), None
    log.info("configuration: %s", path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1]
        message = f"not UTF-8 text (TOML files are UTF-8): byte {exc.start} is {byte!r}"
        raise ConfigError(path, [message]) from exc
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from exc
    config = parse_config(data, path, text)
    config._source = path.absolute()
    return config, path


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of deploy-guard.toml, for editors (taplo, tombi) and `schema config`."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "deploy-guard.toml"
    schema["description"] = (
        "Configuration of deploy-guard: stages of backup units, hosts, the deploy, checks "
        "and notifications (README, Configuration)"
    )
    return schema
