"""Configuration: pydantic models, built-in defaults, and finding and loading the TOML file.

pydantic lives at this boundary only; the engine receives plain frozen values (model.StagePlan).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from deploy_guard.durations import parse_duration
from deploy_guard.errors import ConfigError
from deploy_guard.units import pattern_problem

CONFIG_ENV: Final = "DEPLOY_GUARD_CONFIG"
CONFIG_NAME: Final = "deploy-guard.toml"


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError("expected a duration such as 90s, 5m or 1h")


Duration = Annotated[float, BeforeValidator(_seconds)]


def _check_patterns(patterns: list[str]) -> list[str]:
    problems = [problem for pattern in patterns if (problem := pattern_problem(pattern))]
    if problems:
        raise ValueError("; ".join(problems))
    return patterns


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageConfig(_Strict):
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

    _patterns = field_validator("units", "exclude")(_check_patterns)


class StageOverride(_Strict):
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
        return None if value is None else _check_patterns(value)

    _extra = field_validator("extra_units")(_check_patterns)


class HostConfig(_Strict):
    """`[hosts.NAME]`."""

    ssh: str | None = Field(
        None, description="SSH destination [user@]host[:port] or ssh_config alias (default: NAME)"
    )
    tags: list[str] = Field(default_factory=list, description="Tags for @tag selection")
    become: Literal["sudo"] | None = Field(
        None, description="Run systemctl/journalctl through sudo -n (for non-root SSH users)"
    )
    stages: dict[str, StageOverride] = Field(
        default_factory=dict, description="Per-host stage overrides, by stage name"
    )


def default_stages() -> list[StageConfig]:
    """The built-in stages, matching the NixOS module unit names (FIELD-NOTES table)."""
    return [
        StageConfig(name="snapshots", critical=True, timeout=300, units=["sanoid.service"]),
        StageConfig(
            name="replication",
            timeout=1800,
            units=["syncoid-*.service"],
            exclude=["*-replication-info.service", "*-target-reachability.service"],
        ),
        StageConfig(
            name="applications",
            timeout=3600,
            units=[
                "restic-backups-*.service",
                "restic-backup-*.service",
                "pgbackrest-*.service",
                "borgbackup-job-*.service",
                "postgresqlBackup*.service",
                "mysql-backup.service",
                "btrbk-*.service",
            ],
            exclude=["*-metrics.service", "*-stanza-create.service"],
        ),
    ]


class Config(_Strict):
    """The whole file."""

    stages: list[StageConfig] = Field(
        default_factory=default_stages, description="Ordered stages; replaces the defaults"
    )
    hosts: dict[str, HostConfig] = Field(default_factory=dict, description="Known hosts")
    parallel: int = Field(4, ge=1, description="Hosts guarded at once")
    poll_interval: Duration = Field(1.0, description="Time between two polls of a host")
    connect_timeout: Duration = Field(15.0, description="Time allowed to open an SSH connection")
    ssh_config: Path | None = Field(
        None,
        description="ssh_config file given to `ssh -G -F` (default: ssh's own ~/.ssh/config and "
        "/etc/ssh/ssh_config); the DEPLOY_GUARD_SSH_CONFIG variable overrides it",
    )
    stop_grace: Duration = Field(
        15.0, description="After stopping a timed-out unit, wait this long before SIGKILL"
    )
    log_lines: int = Field(20, ge=0, le=1000, description="Journal lines kept per failed unit")

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[StageConfig]) -> list[StageConfig]:
        names = [stage.name for stage in stages]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(duplicates)}")
        return stages


def _format_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: {message}")
    return lines


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


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate already-parsed TOML.

    Raises:
        ConfigError: every problem at once, each with its key path.
    """
    problems = _undefined_stage_overrides(data)
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(path, _format_errors(exc) + problems) from exc
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
        return Config(), None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from exc
    return parse_config(data, path), path
