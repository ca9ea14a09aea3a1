"""Discovery: the units a host has, and which stage runs each of them."""

from __future__ import annotations

from typing import Any

import pytest

from deploy_guard.config import Config, parse_config
from deploy_guard.guard.discovery import (
    Inventory,
    StageSpec,
    build_inventory,
    discover,
    plan_host,
    stage_specs,
)
from deploy_guard.model import Exclusion, HostPlan, StagePlan
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import ListedUnit
from tests.unit.fakesystemd import FakeClock, FakeHost, SimUnit

DEFAULT_SPECS = stage_specs(Config(), "web1")


def spec(name: str, *patterns: str, exclude: tuple[str, ...] = ()) -> StageSpec:
    return StageSpec(name, False, 600.0, patterns, exclude, None, False)


def units_of(plan: HostPlan) -> dict[str, tuple[str, ...]]:
    return {stage.name: stage.units for stage in plan.stages}


def stage_named(plan: HostPlan, name: str) -> StagePlan:
    return next(stage for stage in plan.stages if stage.name == name)


# A NixOS host: module unit names from FIELD-NOTES, as list-unit-files and list-units print them.
UNIT_FILES = [
    ListedUnit("sanoid.service", "static"),
    ListedUnit("syncoid-tank-data.service", "static"),
    ListedUnit("syncoid-tank-data-replication-info.service", "static"),
    ListedUnit("syncoid-nas-target-reachability.service", "static"),
    ListedUnit("syncoid-@.service", "static"),
    ListedUnit("restic-backups-home.service", "static"),  # no timer: never loaded
    ListedUnit("restic-backups-old.service", "masked"),
    ListedUnit("pgbackrest-main-full.service", "static"),
    ListedUnit("pgbackrest-main-stanza-create.service", "static"),
    ListedUnit("borgbackup-repo-home.service", "static"),
    ListedUnit("nginx.service", "enabled"),
]
LOADED = [
    ListedUnit("sanoid.service", "loaded"),
    ListedUnit("syncoid-tank-data.service", "loaded"),
    ListedUnit("restic-backups-old.service", "masked"),
    ListedUnit("run-u42.service", "loaded"),  # transient: only list-units knows it
    ListedUnit("nginx.service", "loaded"),
]


def test_nixos_host_with_the_default_stages() -> None:
    plan = plan_host("web1", DEFAULT_SPECS, build_inventory(UNIT_FILES, LOADED))

    assert plan.host == "web1"
    assert units_of(plan) == {
        "snapshots": ("sanoid.service",),
        "replication": ("syncoid-tank-data.service",),
        "applications": ("pgbackrest-main-full.service", "restic-backups-home.service"),
    }
    assert stage_named(plan, "replication").excluded == (
        Exclusion("syncoid-@.service", "template unit (needs an instance name)"),
        Exclusion(
            "syncoid-nas-target-reachability.service",
            "matches exclude pattern *-target-reachability.service",
        ),
        Exclusion(
            "syncoid-tank-data-replication-info.service",
            "matches exclude pattern *-replication-info.service",
        ),
    )
    assert stage_named(plan, "applications").excluded == (
        Exclusion(
            "pgbackrest-main-stanza-create.service",
            "matches exclude pattern *-stanza-create.service",
        ),
        Exclusion("restic-backups-old.service", "masked"),
    )
    assert stage_named(plan, "snapshots").critical is True
    assert stage_named(plan, "applications").timeout_s == 3600.0


def test_unit_never_loaded_is_found_through_its_unit_file() -> None:
    inventory_ = build_inventory([ListedUnit("restic-backups-home.service", "static")], [])

    plan = plan_host("web1", DEFAULT_SPECS, inventory_)

    assert units_of(plan)["applications"] == ("restic-backups-home.service",)


def test_transient_unit_known_only_in_memory_is_found() -> None:
    inventory_ = build_inventory([], [ListedUnit("restic-backups-adhoc.service", "loaded")])

    plan = plan_host("web1", DEFAULT_SPECS, inventory_)

    assert units_of(plan)["applications"] == ("restic-backups-adhoc.service",)


@pytest.mark.parametrize("state", ["masked", "masked-runtime"])
def test_masked_unit_is_excluded_with_its_reason(state: str) -> None:
    plan = plan_host("web1", DEFAULT_SPECS, Inventory({"sanoid.service": state}))

    snapshots = stage_named(plan, "snapshots")
    assert snapshots.units == ()
    assert snapshots.excluded == (Exclusion("sanoid.service", "masked"),)


def test_file_state_wins_over_load_state() -> None:
    built = build_inventory(
        [ListedUnit("sanoid.service", "masked")], [ListedUnit("sanoid.service", "loaded")]
    )

    assert built.states == {"sanoid.service": "masked"}


@pytest.mark.parametrize(
    "name",
    [
        "restic-backups-a b.service",
        "restic-backups-$(reboot).service",
        "restic-backups-;reboot.service",
        "-restic-backups-x.service",
        "restic-backups-x.service\nreboot",
        "restic-backups-*.service",
        "restic-backups-x.timer",
    ],
)
def test_invalid_names_from_the_host_are_ignored_and_reported(name: str) -> None:
    built = build_inventory(
        [ListedUnit(name, "static"), ListedUnit("restic-backups-ok.service", "static")],
        [ListedUnit(name, "loaded")],
    )

    assert built.states == {"restic-backups-ok.service": "static"}
    assert built.ignored == (name,)
    plan = plan_host("web1", DEFAULT_SPECS, built)
    assert units_of(plan)["applications"] == ("restic-backups-ok.service",)


def test_unit_matched_by_two_stages_runs_only_in_the_first() -> None:
    specs = (spec("first", "restic-*.service"), spec("second", "restic-backups-*.service"))

    plan = plan_host("web1", specs, Inventory({"restic-backups-home.service": "static"}))

    assert units_of(plan) == {"first": ("restic-backups-home.service",), "second": ()}
    assert stage_named(plan, "second").excluded == (
        Exclusion("restic-backups-home.service", "already runs in stage first"),
    )


def test_exclude_pattern_removes_a_unit_with_the_matching_pattern_as_reason() -> None:
    specs = (spec("apps", "restic-backups-*.service", exclude=("*-check.service", "*-prune*")),)
    states = {"restic-backups-home.service": "static", "restic-backups-prune.service": "static"}

    plan = plan_host("web1", specs, Inventory(states))

    assert units_of(plan) == {"apps": ("restic-backups-home.service",)}
    assert stage_named(plan, "apps").excluded == (
        Exclusion("restic-backups-prune.service", "matches exclude pattern *-prune*"),
    )


def test_patterns_that_matched_nothing_are_listed() -> None:
    plan = plan_host("web1", DEFAULT_SPECS, Inventory({"sanoid.service": "static"}))

    assert stage_named(plan, "snapshots").unmatched == ()
    assert stage_named(plan, "replication").unmatched == ("syncoid-*.service",)
    assert stage_named(plan, "applications").unmatched == tuple(Config().stages[2].units)


def test_pattern_matching_only_excluded_units_is_not_unmatched() -> None:
    plan = plan_host("web1", DEFAULT_SPECS, Inventory({"syncoid-@.service": "static"}))

    replication = stage_named(plan, "replication")
    assert replication.units == ()
    assert replication.unmatched == ()


def test_pattern_that_matches_a_unit_is_not_listed_as_unmatched() -> None:
    specs = (spec("apps", "restic-backups-*.service", "restic-backups-home.service"),)

    plan = plan_host("web1", specs, Inventory({"restic-backups-home.service": "static"}))

    assert stage_named(plan, "apps").unmatched == ()


def test_units_are_planned_in_name_order_whatever_the_listing_order() -> None:
    listed = [ListedUnit(f"restic-backups-{name}.service", "static") for name in "cab"]

    plan = plan_host("web1", DEFAULT_SPECS, build_inventory(listed, []))

    assert units_of(plan)["applications"] == (
        "restic-backups-a.service",
        "restic-backups-b.service",
        "restic-backups-c.service",
    )


def test_discover_asks_the_host_for_unit_files_and_loaded_units() -> None:
    clock = FakeClock()
    units = [
        SimUnit("sanoid.service", type="simple", gc=False),
        SimUnit("restic-backups-a.service"),
    ]
    host = FakeHost("web1", clock, units)

    found = discover(SystemdClient(host), DEFAULT_SPECS)

    assert found.states == {"sanoid.service": "static", "restic-backups-a.service": "static"}
    assert host.commands("start") == []


# -- per-host settings -----------------------------------------------------------------------

STAGES: list[dict[str, Any]] = [
    {"name": "snapshots", "critical": True, "timeout": "5m", "units": ["sanoid.service"]},
    {"name": "apps", "timeout": "1h", "units": ["restic-backups-*.service"], "max_parallel": 2},
]


def specs_for(
    host: str, overrides: dict[str, Any], selected: tuple[str, ...] = ()
) -> dict[str, StageSpec]:
    config = parse_config({"stages": STAGES, "hosts": {"db1": {"stages": overrides}}})
    return {spec.name: spec for spec in stage_specs(config, host, selected)}


def test_host_without_overrides_gets_the_stages_as_configured() -> None:
    specs = specs_for("web1", {"apps": {"timeout": "2h"}})

    assert list(specs) == ["snapshots", "apps"]
    assert specs["apps"] == StageSpec(
        "apps", False, 3600.0, ("restic-backups-*.service",), (), 2, False
    )


def test_host_override_changes_only_what_it_names() -> None:
    specs = specs_for(
        "db1",
        {"apps": {"timeout": "2h", "extra_units": ["pgbackrest-*.service"], "critical": True}},
    )

    assert specs["apps"] == StageSpec(
        "apps",
        True,
        7200.0,
        ("restic-backups-*.service", "pgbackrest-*.service"),
        (),
        2,
        False,
    )
    assert specs["snapshots"].timeout_s == 300.0


def test_host_override_can_replace_units_and_exclude() -> None:
    specs = specs_for(
        "db1", {"apps": {"units": ["borgbackup-job-*.service"], "exclude": ["*-x.service"]}}
    )

    assert specs["apps"].patterns == ("borgbackup-job-*.service",)
    assert specs["apps"].exclude == ("*-x.service",)


def test_disabled_stage_is_removed_for_that_host_only() -> None:
    assert list(specs_for("db1", {"snapshots": {"enabled": False}})) == ["apps"]
    assert list(specs_for("web1", {"snapshots": {"enabled": False}})) == ["snapshots", "apps"]


def test_only_selected_stages_are_kept_in_configured_order() -> None:
    assert list(specs_for("db1", {}, selected=("apps",))) == ["apps"]
    assert list(specs_for("db1", {}, selected=("apps", "snapshots"))) == ["snapshots", "apps"]


def test_selected_stage_disabled_for_the_host_stays_removed() -> None:
    assert list(specs_for("db1", {"apps": {"enabled": False}}, selected=("apps",))) == []
