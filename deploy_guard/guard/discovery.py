"""Which units each stage runs on a host: per-host stage settings, then pattern matching
against the units the host has. Pure, apart from `discover` which asks the host.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from deploy_guard.config import Config, StageConfig, StageOverride
from deploy_guard.manifest import Manifest
from deploy_guard.model import Exclusion, HostPlan, StagePlan
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import ListedUnit
from deploy_guard.units import first_match, is_template, is_valid_unit_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A stage's settings after per-host overrides: patterns, not yet units."""

    name: str
    critical: bool
    timeout_s: float
    patterns: tuple[str, ...]
    exclude: tuple[str, ...]
    max_parallel: int | None
    allow_empty: bool
    manifest: bool = False  # patterns are the exact unit names of the host's manifest


@dataclass(frozen=True, slots=True)
class Inventory:
    """The service units a host has, on disk or in memory, with what we know of each."""

    states: dict[str, str]  # unit -> file state (enabled, static, masked...) or load state
    ignored: tuple[str, ...] = ()  # names the host reported that are not valid unit names


def stage_specs(
    config: Config, host_name: str, selected: Sequence[str] = ()
) -> tuple[StageSpec, ...]:
    """The stages for one host, in order, with its `[hosts.NAME.stages.X]` overrides applied;
    only ``selected`` stages when given (names already checked by the caller)."""
    host = config.hosts.get(host_name)
    overrides = host.stages if host else {}
    specs = []
    for stage in config.stages:
        if selected and stage.name not in selected:
            continue
        override = overrides.get(stage.name)
        if override is not None and not override.enabled:
            continue
        specs.append(_apply_override(stage, override))
    return tuple(specs)


def _apply_override(stage: StageConfig, override: StageOverride | None) -> StageSpec:
    patterns, exclude = list(stage.units), list(stage.exclude)
    critical, timeout, max_parallel = stage.critical, stage.timeout, stage.max_parallel
    allow_empty = stage.allow_empty
    if override is not None:
        patterns = list(override.units if override.units is not None else patterns)
        patterns += override.extra_units
        exclude = list(override.exclude if override.exclude is not None else exclude)
        critical = critical if override.critical is None else override.critical
        timeout = timeout if override.timeout is None else override.timeout
        max_parallel = max_parallel if override.max_parallel is None else override.max_parallel
        allow_empty = allow_empty if override.allow_empty is None else override.allow_empty
    return StageSpec(
        name=stage.name,
        critical=critical,
        timeout_s=timeout,
        patterns=tuple(patterns),
        exclude=tuple(exclude),
        max_parallel=max_parallel,
        allow_empty=allow_empty,
    )


def build_inventory(unit_files: Sequence[ListedUnit], loaded: Sequence[ListedUnit]) -> Inventory:
    """Merge `list-unit-files` (on disk, includes never-started and garbage-collected units)
    with `list-units --all` (in memory, includes transient and generated units)."""
    states: dict[str, str] = {}
    ignored: list[str] = []
    for listed in (*unit_files, *loaded):
        if not is_valid_unit_name(listed.unit):
            ignored.append(listed.unit)
            continue
        # The file state (masked, static, ...) wins over the load state.
        states.setdefault(listed.unit, listed.state)
    return Inventory(states=states, ignored=tuple(dict.fromkeys(ignored)))


def _exclusion_reason(
    unit: str, state: str, spec: StageSpec, claimed: dict[str, str]
) -> str | None:
    if is_template(unit):
        return "template unit (needs an instance name)"
    if state in ("masked", "masked-runtime") and not spec.manifest:
        # A unit the host's manifest requires stays planned, and fails for being masked
        # (issue 11, case 6): silently leaving it out would make its stage green.
        return "masked"
    if (pattern := first_match(unit, spec.exclude)) is not None:
        return f"matches exclude pattern {pattern}"
    if unit in claimed:
        return f"already runs in stage {claimed[unit]}"
    return None


def plan_host(host: str, specs: Sequence[StageSpec], inventory: Inventory) -> HostPlan:
    """Match each stage's patterns against the host's units. A unit runs in the first stage
    that claims it; excluded units and patterns that matched nothing are kept for the plan."""
    claimed: dict[str, str] = {}
    stages = []
    for spec in specs:
        units: list[str] = []
        excluded: list[Exclusion] = []
        matched_patterns: set[str] = set()
        candidates = sorted(inventory.states)
        if spec.manifest:  # expected units: planned even when systemd does not know them
            candidates = list(dict.fromkeys([*spec.patterns, *candidates]))
        for unit in candidates:
            matching = {p for p in spec.patterns if fnmatch.fnmatchcase(unit, p)}
            if not matching:
                continue
            matched_patterns |= matching
            reason = _exclusion_reason(unit, inventory.states.get(unit, ""), spec, claimed)
            if reason is None:
                units.append(unit)
            else:
                excluded.append(Exclusion(unit, reason))
        for unit in units:
            claimed[unit] = spec.name
        stages.append(
            StagePlan(
                name=spec.name,
                critical=spec.critical,
                timeout_s=spec.timeout_s,
                max_parallel=spec.max_parallel,
                allow_empty=spec.allow_empty,
                units=tuple(units),
                excluded=tuple(excluded),
                unmatched=tuple(p for p in spec.patterns if p not in matched_patterns),
                source="manifest" if spec.manifest else "patterns",
            )
        )
    return HostPlan(host=host, stages=tuple(stages))


def with_manifest(specs: Sequence[StageSpec], manifest: Manifest) -> tuple[StageSpec, ...]:
    """The host's manifest replaces the patterns of the stages it names with exact unit
    names (and its timeouts); a manifest stage with no configured stage of its name is
    added after the others, so that no expected unit is silently left out."""
    by_name = {stage.name: stage for stage in manifest.stages}
    result = []
    for spec in specs:
        stage = by_name.pop(spec.name, None)
        if stage is None:
            result.append(spec)
            continue
        timeout = stage.timeout_seconds or spec.timeout_s
        # An empty manifest stage is the host saying "no backup of this kind here": allowed
        # (with the usual warning) when the stage is not critical, or when the manifest says
        # so (`allow_empty`); a critical stage emptied by a broken build must not go green
        # (issue 11, case 6).
        allow_empty = spec.allow_empty or (
            not stage.units and (not spec.critical or stage.allow_empty)
        )
        exact = replace(spec, patterns=stage.units, exclude=(), manifest=True)  # the manifest's
        result.append(replace(exact, timeout_s=timeout, allow_empty=allow_empty))
    for stage in by_name.values():
        timeout = stage.timeout_seconds or 3600.0
        spec = StageSpec(stage.name, False, timeout, stage.units, (), None, True, manifest=True)
        result.append(spec)
    return tuple(result)


def discover(client: SystemdClient, specs: Sequence[StageSpec]) -> Inventory:
    """Ask the host which service units the stages' patterns match (two read-only commands,
    one round trip)."""
    patterns = list(dict.fromkeys(p for spec in specs for p in spec.patterns))
    if not patterns:
        return Inventory(states={})
    inventory = build_inventory(*client.list_service_units(patterns))
    for name in inventory.ignored:
        log.warning("%s: ignoring unit %r: not a valid unit name", client.host, name)
    return inventory
