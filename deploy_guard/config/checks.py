"""`[[preflight]]`, `[[health]]` and `[verify]`: checks around the backups and the deploy."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from deploy_guard.config.base import Duration, StrictModel
from deploy_guard.units import is_valid_unit_name

_ANY_UNIT_NAME: Final = re.compile(
    r"[A-Za-z0-9:_.\\@-]{1,240}\.(service|socket|target|mount|automount|swap|timer|path|slice"
    r"|scope|device)"
)
# Host names, IPv4 and IPv6 addresses (bash's /dev/tcp takes IPv6 without brackets).
_NETWORK_HOST: Final = re.compile(r"[A-Za-z0-9._:-]{1,253}")
# coreutils' convention (df -h): K, M, G, T, P are powers of 1024, and so are KiB, MiB...;
# KB, MB, ... are powers of 1000.
_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_UNITS: Final = {"": 1, "b": 1} | {
    f"{prefix}{suffix}": base**power
    for power, prefix in enumerate("kmgtp", 1)
    for suffix, base in (("", 1024), ("ib", 1024), ("b", 1000))
}
NIXOS_ROLLBACK: Final = (
    ("nix-env", "-p", "/nix/var/nix/profiles/system", "--rollback"),
    ("/nix/var/nix/profiles/system/bin/switch-to-configuration", "switch"),
)


def parse_size(value: object) -> int:
    """Bytes in "10GiB", "10G" (= GiB, as df says), "500MB" (decimal), 4096 (bytes).

    Raises:
        ValueError: not a size.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 10GiB, 10G, 500MB or 4096")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


ByteCount = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*\d+(\.\d+)?\s*[A-Za-z]*$",
                    "description": "A size: 10GiB, 10G (= GiB, as df says), 500MB (decimal)",
                },
                {"type": "integer", "minimum": 0, "description": "Bytes"},
            ]
        }
    ),
]


def _check_unit_names(units: list[str]) -> list[str]:
    bad = [unit for unit in units if not _ANY_UNIT_NAME.fullmatch(unit) or unit.startswith("-")]
    if bad:
        raise ValueError(f"not unit names (e.g. foo.service, data.mount): {', '.join(bad)}")
    return units


def _check_argv(argv: list[str]) -> list[str]:
    if not argv or not argv[0].strip():
        raise ValueError('an argv list with the program first, e.g. ["test", "-d", "/srv"]')
    return argv


class NamedCheck(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name shown in the report")


class FreeSpaceCheck(NamedCheck):
    """`kind = "free_space"`: the filesystem holding `path` has room (df on the host)."""

    kind: Literal["free_space"] = Field(description="Check type")
    path: str = Field(description="Absolute path on the host; its filesystem is checked")
    min_free: ByteCount | None = Field(None, description='At least this much free ("10GiB")')
    min_free_percent: float | None = Field(
        None, gt=0, lt=100, description="At least this share of the filesystem free"
    )

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError(f"{value!r} is not an absolute path")
        return value

    @model_validator(mode="after")
    def _needs_a_minimum(self) -> FreeSpaceCheck:
        if self.min_free is None and self.min_free_percent is None:
            raise ValueError("set min_free, min_free_percent or both")
        return self


class UnitsExistCheck(NamedCheck):
    """`kind = "units_exist"`: every unit is known to systemd on the host."""

    kind: Literal["units_exist"] = Field(description="Check type")
    units: list[str] = Field(min_length=1, description="Unit names that must exist")

    _names = field_validator("units")(_check_unit_names)


class UnitCheck(NamedCheck):
    """`kind = "unit"`: start a check unit and require a proven success."""

    kind: Literal["unit"] = Field(description="Check type")
    unit: str = Field(description="The service to run, e.g. x-target-reachability.service")
    timeout: Duration = Field(300.0, description="Deadline for the unit's run")

    @field_validator("unit")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not is_valid_unit_name(value):
            raise ValueError(f"{value!r} is not a service unit name (name.service)")
        return value


class TcpCheck(NamedCheck):
    """`kind = "tcp"`: the host can open a TCP connection to host:port."""

    kind: Literal["tcp"] = Field(description="Check type")
    host: str = Field(description="Host name or address, as seen from the host")
    port: int = Field(ge=1, le=65535, description="TCP port")
    timeout: Duration = Field(5.0, description="Time allowed to connect")

    @field_validator("host")
    @classmethod
    def _network_host(cls, value: str) -> str:
        if not _NETWORK_HOST.fullmatch(value) or value.startswith("-"):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value


class SystemStateCheck(NamedCheck):
    """`kind = "system_state"`: `systemctl is-system-running` is not stopping/maintenance."""

    kind: Literal["system_state"] = Field(description="Check type")
    allow_degraded: bool = Field(True, description="false: a host with failed units fails")


class CommandCheck(NamedCheck):
    """`kind = "command"`: an argv run on the host must exit 0."""

    kind: Literal["command"] = Field(description="Check type")
    argv: list[str] = Field(description="Program and arguments (never a shell string)")
    timeout: Duration = Field(60.0, description="Time allowed to finish")

    _argv = field_validator("argv")(_check_argv)


PreflightCheck = Annotated[
    FreeSpaceCheck | UnitsExistCheck | UnitCheck | TcpCheck | SystemStateCheck | CommandCheck,
    Field(discriminator="kind"),
]


class _Health(NamedCheck):
    attempts: int = Field(10, ge=1, le=1000, description="At most this many tries")
    interval: Duration = Field(3.0, description="Pause between two tries")
    timeout: Duration = Field(10.0, description="Time allowed for one try")
    deadline: Duration = Field(120.0, description="No new try after this, from the first")


class CommandHealthCheck(_Health):
    """`[[health]] kind = "command"`: an argv run on the host must exit 0."""

    kind: Literal["command"] = Field(description="Check type")
    argv: list[str] = Field(description="Program and arguments (never a shell string)")

    _argv = field_validator("argv")(_check_argv)


class HttpHealthCheck(_Health):
    """`[[health]] kind = "http"`: a URL answers with a status below 400."""

    kind: Literal["http"] = Field(description="Check type")
    url: str = Field(pattern=r"^https?://[^\s/?#]+[^\s]*$", description="http:// or https:// URL")
    source: Literal["workstation", "host"] = Field(
        "workstation",
        alias="from",
        description="Where the request comes from: here (urllib) or the host (curl)",
    )


HealthCheck = Annotated[CommandHealthCheck | HttpHealthCheck, Field(discriminator="kind")]


class VerifyConfig(StrictModel):
    """`[verify]`: how `apply` verifies a deployed host, and rolls it back."""

    settle_timeout: Duration = Field(
        300.0, description="Wait at most this long for is-system-running to leave `starting`"
    )
    expect_reboot: bool = Field(
        False, description="The deploy reboots the host (boot + reboot): wait for a new boot id"
    )
    reboot_timeout: Duration = Field(600.0, description="Wait at most this long for the reboot")
    rollback: bool = Field(
        False, description="Roll back a host that fails verification (--rollback-on-failure)"
    )
    rollback_commands: list[list[str]] = Field(
        default_factory=lambda: [list(argv) for argv in NIXOS_ROLLBACK],
        description="argv lists run in order on the host to roll back (default: NixOS's "
        "previous system generation)",
    )
    rollback_timeout: Duration = Field(600.0, description="Time allowed for each command")

    @field_validator("rollback_commands")
    @classmethod
    def _argvs(cls, commands: list[list[str]]) -> list[list[str]]:
        if not commands:
            raise ValueError("at least one command")
        return [_check_argv(argv) for argv in commands]
