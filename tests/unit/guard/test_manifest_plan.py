"""A host's manifest makes the plan exact: its units are expected, patterns are the fallback."""

from __future__ import annotations

import json

from deploy_guard.config import Config
from deploy_guard.guard.discovery import Inventory, plan_host, stage_specs, with_manifest
from deploy_guard.manifest import load_manifest

SPECS = stage_specs(Config(), "forge")


def manifest(**stages: list[str]) -> str:
    return json.dumps({
        "schema_version": 1,
        "stages": [{"name": name, "units": units, "timeout": "2h" if name == "applications"
                    else None} for name, units in stages.items()],
    })  # fmt: skip


def test_manifest_units_replace_the_patterns_and_keep_unmentioned_stages() -> None:
    specs = with_manifest(SPECS, load_manifest(manifest(applications=["restic-backups-a.service"])))

    by_name = {spec.name: spec for spec in specs}
    assert by_name["applications"].patterns == ("restic-backups-a.service",)
    assert by_name["applications"].manifest is True
    assert by_name["applications"].timeout_s == 7200
    assert by_name["replication"].patterns == ("syncoid-*.service",)
    assert by_name["replication"].manifest is False


def test_manifest_unit_unknown_to_systemd_is_still_planned_so_that_it_fails() -> None:
    specs = with_manifest(SPECS, load_manifest(manifest(
        applications=["restic-backups-a.service", "restic-backups-gone.service"])))  # fmt: skip
    inventory = Inventory(
        {"restic-backups-a.service": "static", "restic-backups-b.service": "static"}
    )

    plan = plan_host("forge", specs, inventory)

    applications = next(stage for stage in plan.stages if stage.name == "applications")
    assert applications.units == ("restic-backups-a.service", "restic-backups-gone.service")
    assert applications.source == "manifest"
    # A unit the manifest does not list is not run just because a pattern would match it.
    assert "restic-backups-b.service" not in applications.units


def test_manifest_stage_without_a_configured_stage_is_added_not_dropped() -> None:
    specs = with_manifest(SPECS, load_manifest(manifest(databases=["postgresqlBackup.service"])))

    assert specs[-1].name == "databases"
    assert specs[-1].patterns == ("postgresqlBackup.service",)
    assert specs[-1].critical is False


def test_empty_critical_manifest_stage_is_allowed_only_when_the_manifest_says_so() -> None:
    # Issue 11, case 6: a critical stage emptied by a broken build must not go green.
    specs = with_manifest(SPECS, load_manifest(manifest(snapshots=[])))
    snapshots = next(spec for spec in specs if spec.name == "snapshots")
    assert snapshots.critical is True
    assert snapshots.allow_empty is False
    assert snapshots.patterns == ()

    document = json.loads(manifest(snapshots=[]))
    document["stages"][0]["allow_empty"] = True
    specs = with_manifest(SPECS, load_manifest(json.dumps(document)))
    assert next(spec for spec in specs if spec.name == "snapshots").allow_empty is True


def test_empty_non_critical_manifest_stage_is_allowed() -> None:
    specs = with_manifest(SPECS, load_manifest(manifest(replication=[])))

    replication = next(spec for spec in specs if spec.name == "replication")
    assert replication.critical is False
    assert replication.allow_empty is True


def test_masked_manifest_unit_stays_planned_so_that_it_fails() -> None:
    # Issue 11, case 6: a masked unit the host requires is not silently left out.
    specs = with_manifest(SPECS, load_manifest(manifest(applications=["restic-backups-a.service"])))
    inventory = Inventory({"restic-backups-a.service": "masked", "syncoid-x.service": "masked"})

    plan = plan_host("forge", specs, inventory)

    by_name = {stage.name: stage for stage in plan.stages}
    assert by_name["applications"].units == ("restic-backups-a.service",)
    # A masked unit that only a pattern matched is still excluded (nothing required it).
    assert by_name["replication"].units == ()
    assert [item.reason for item in by_name["replication"].excluded] == ["masked"]
