"""`deploy-guard init`: a first, commented deploy-guard.toml, from the built-in stages and
what each named host really has. Rendering is pure; `survey_host` asks a host (read-only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from deploy_guard.config import StageConfig, default_stages
from deploy_guard.durations import format_duration
from deploy_guard.errors import UsageError
from deploy_guard.guard.engine import Connector, HostTarget, connect_and_plan
from deploy_guard.model import HostPlan
from deploy_guard.units import first_match

SCHEMA_FILE: Final = "deploy-guard.schema.json"
# Units that look like backups but that no built-in pattern names: offered, never enabled,
# since starting an unknown unit is the operator's decision.
BACKUP_LIKE: Final = ("*backup*.service", "*snapshot*.service", "*dump*.service")
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # a bare TOML key, and no IP address


@dataclass(frozen=True, slots=True)
class HostSurvey:
    """What `init` learnt about one host: its plan under the built-in stages, and backup-like
    units no stage would run."""

    name: str
    destination: str
    plan: HostPlan
    unclaimed: tuple[str, ...] = ()


def host_argument(argument: str) -> tuple[str, str]:
    """``NAME=DESTINATION`` or a destination (``[user@]host[:port]`` or an ssh_config alias)
    whose host part becomes the name.

    Raises:
        UsageError: no usable host name.
    """
    name, separator, destination = argument.partition("=")
    if not separator:
        destination = argument
        name = argument.rpartition("@")[2].split(":")[0].split(".")[0]
    if not _NAME.fullmatch(name) or not destination:
        raise UsageError(f"{argument!r}: write NAME=DESTINATION (e.g. forge=root@10.0.0.5)")
    return name, destination


def survey_host(target: HostTarget, connect: Connector) -> HostSurvey:
    """Connect, plan with ``target``'s stages and list backup-like units nothing claims.

    Raises:
        DeployGuardError: the host cannot be reached or read.
    """
    client, plan = connect_and_plan(target, connect)
    try:
        seen = {unit for stage in plan.stages for unit in stage.units}
        seen |= {excluded.unit for stage in plan.stages for excluded in stage.excluded}
        listed = client.list_unit_files(BACKUP_LIKE)
        unclaimed = sorted(
            {
                item.unit
                for item in listed
                if item.unit not in seen and not item.unit.endswith("@.service")
            }
        )
    finally:
        client.transport.close()
    return HostSurvey(target.name, target.destination, plan, tuple(unclaimed))


def _toml_list(values: Sequence[str], indent: str = "") -> str:
    """A TOML array of strings, one item a line when it would not fit on one."""
    one_line = "[" + ", ".join(json.dumps(value) for value in values) + "]"
    if len(one_line) <= 80:
        return one_line
    items = "".join(f"{indent}  {json.dumps(value)},\n" for value in values)
    return f"[\n{items}{indent}]"


def _stage_lines(stage: StageConfig) -> list[str]:
    lines = ["[[stages]]", f"name = {json.dumps(stage.name)}"]
    if stage.critical:
        lines.append("critical = true  # a failure here stops the host's run (exit 2)")
    lines.append(f'timeout = "{format_duration(stage.timeout)}"  # deadline of each unit')
    lines.append(f"units = {_toml_list(stage.units)}")
    if stage.exclude:
        lines.append(f"exclude = {_toml_list(stage.exclude)}")
    return [*lines, ""]


def _host_lines(survey: HostSurvey, become: bool) -> list[str]:
    name = survey.name
    lines = [f"# {name}: what `deploy-guard init` found there"]
    for found_stage in survey.plan.stages:
        found = ", ".join(found_stage.units) or "no unit"
        source = " (from the host's manifest)" if found_stage.source == "manifest" else ""
        lines.append(f"#   {found_stage.name}{source}: {found}")
    lines += [f"[hosts.{name}]", f"ssh = {json.dumps(survey.destination)}"]
    lines.append(
        'become = "sudo"'
        if become
        else (
            '# become = "sudo"  # when ssh logs in as a user that is neither root nor the '
            "module's guard user"
        )
    )
    lines.append(
        '# deploy_target = "root@HOST"  # who the deploy logs in as, when not the guard (README)'
    )
    overrides: list[str] = []
    planned = {stage.name: stage for stage in survey.plan.stages}
    for stage_config in default_stages():
        stage = planned.get(stage_config.name)
        if stage is None or stage.source == "manifest":
            continue
        matching = [p for p in stage_config.units if any(first_match(u, (p,)) for u in stage.units)]
        lines.append(f"# {stage.name}: patterns that match here: {', '.join(matching) or 'none'}")
        table: list[str] = []
        if not stage.units and stage_config.critical:
            table += [
                "# No unit here matches this critical stage: it may be empty on this host",
                "# (it still runs any matching unit that appears later).",
                "allow_empty = true",
            ]
        if survey.unclaimed and stage_config.name == "applications":
            table.append(
                "# Units that look like backups but match no pattern; uncomment to guard them too:"
            )
            extra = f"extra_units = {_toml_list(survey.unclaimed)}"
            table += [f"# {line}" for line in extra.splitlines()]
        if table:
            overrides += ["", f"[hosts.{name}.stages.{stage.name}]", *table]
    return [*lines, *overrides, ""]


def render_config(surveys: Sequence[HostSurvey] = (), *, become: bool = False) -> str:
    """The commented deploy-guard.toml: the `#:schema` line (taplo, tombi), the built-in
    stages written out, and one `[hosts.NAME]` entry per surveyed host."""
    lines = [
        f"#:schema ./{SCHEMA_FILE}",
        "# deploy-guard configuration (written by `deploy-guard init`). Every key is described",
        "# in the schema above (`deploy-guard schema config`) and in the README, Configuration.",
        "# Check it with `deploy-guard plan HOST`: it connects and starts nothing.",
        "",
        "# Hosts guarded at once (the workstation only watches; --parallel or --limit lowers it).",
        "parallel = 32",
        "",
        "# Stages run in this order on each host. A unit runs in the first stage whose `units`",
        "# patterns match it and no `exclude` pattern does; a host with the NixOS module lists",
        "# its exact units in /etc/deploy-guard/manifest.json, which replaces the patterns.",
    ]
    for stage in default_stages():
        lines += _stage_lines(stage)
    lines += [
        "# How `deploy-guard apply` deploys the hosts whose backups all succeeded.",
        "[deploy]",
        'tool = "nixos-rebuild"  # or colmena, deploy-rs, command',
        'flake = "."',
        'action = "switch"',
        "",
    ]
    if not surveys:
        lines += [
            "# One table per host (default: the SSH destination is the name):",
            "# [hosts.forge]",
            '# ssh = "deploy-guard@forge.example.org"',
            "",
        ]
    for survey in surveys:
        lines += _host_lines(survey, become)
    return "\n".join(lines).rstrip("\n") + "\n"
