"""The host manifest model: what the NixOS module writes and the CLI accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deploy_guard.cli.schema import schema
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.manifest import (
    MANIFEST_PATH,
    Manifest,
    load_manifest,
    manifest_json_schema,
)
from deploy_guard.units import is_valid_unit_name

SAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "stages": [
        {"name": "snapshots", "units": ["sanoid.service"], "timeout": "5m"},
        {"name": "replication", "units": ["syncoid-tank-data.service"], "timeout": None},
        {
            "name": "applications",
            "units": ["restic-backups-home.service", "pgbackrest-main-full.service"],
        },
    ],
}


def document(**changes: Any) -> str:
    return json.dumps({**SAMPLE, **changes})


def stages(*entries: dict[str, Any]) -> str:
    return document(stages=list(entries))


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_manifest(text)
    return caught.value.errors


def test_valid_manifest_loads_with_stages_in_order() -> None:
    manifest = load_manifest(document())
    assert [stage.name for stage in manifest.stages] == ["snapshots", "replication", "applications"]
    assert manifest.units() == (
        "sanoid.service",
        "syncoid-tank-data.service",
        "restic-backups-home.service",
        "pgbackrest-main-full.service",
    )
    snapshots = manifest.stage("snapshots")
    assert snapshots is not None
    assert snapshots.timeout_seconds == 300.0
    replication = manifest.stage("replication")
    assert replication is not None
    assert replication.timeout_seconds is None
    assert manifest.stage("nope") is None


def test_empty_stage_means_no_backup_of_that_kind() -> None:
    manifest = load_manifest(stages({"name": "snapshots", "units": []}))
    assert manifest.units() == ()


def test_manifest_is_frozen() -> None:
    manifest = load_manifest(document())
    with pytest.raises(ValueError, match="frozen"):
        manifest.stages = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "unit",
    [
        "sanoid.service",
        "syncoid-pool-home-remote-back-up.service",
        "syncoid--lead.service",  # syncoid's escaping of "/lead"
        "syncoid-a\\b.service",  # syncoid keeps backslashes
        "postgresqlBackup-app.service",
        "borgbackup-job-docs.service",
        "getty@tty1.service",
    ],
)
def test_unit_names_the_module_can_produce_are_accepted(unit: str) -> None:
    assert load_manifest(stages({"name": "applications", "units": [unit]})).units() == (unit,)


@pytest.mark.parametrize(
    ("unit", "reason"),
    [
        ("bad unit.service", "is not a service unit name"),
        ("sanoid.timer", "is not a service unit name"),
        ("-flag.service", "is not a service unit name"),
        ("restic-backups-*.service", "is not a service unit name"),
        ("x;reboot.service", "is not a service unit name"),
        ("", "is not a service unit name"),
        ("foo@.service", "is a template"),
    ],
)
def test_bad_unit_names_are_rejected_with_their_key_path(unit: str, reason: str) -> None:
    (problem,) = problems(stages({"name": "applications", "units": ["ok.service", unit]}))
    assert problem.startswith("stages[0].units[1]: ")
    assert reason in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (document(schema_version=2), "schema_version: unsupported manifest version 2"),
        (document(schema_version="1"), "schema_version: unsupported manifest version '1'"),
        (json.dumps({"stages": []}), "schema_version: Field required"),
        (json.dumps({"schema_version": 1}), "stages: Field required"),
        (document(host="forge"), "host: unknown key"),
        (stages({"name": "a", "units": [], "critical": True}), "stages[0].critical: unknown key"),
        (stages({"name": "has space", "units": []}), "stages[0].name: String should match"),
        (stages({"name": "a", "units": [], "timeout": "5 parsecs"}), "stages[0].timeout: "),
        (stages({"name": "a", "units": [], "timeout": "0s"}), "greater than zero"),
        (stages({"name": "a", "units": "sanoid.service"}), "stages[0].units: "),
        (
            stages({"name": "a", "units": ["x.service", "x.service"]}),
            "stages[0].units: listed more than once: x.service",
        ),
        (
            stages({"name": "a", "units": []}, {"name": "a", "units": []}),
            "stages: stage names must be unique; repeated: a",
        ),
        (
            stages({"name": "a", "units": ["x.service"]}, {"name": "b", "units": ["x.service"]}),
            "stages: units listed in more than one stage: x.service",
        ),
        ("[]", "(top level): Input should be"),
        ("{not json", "not valid JSON"),
    ],
)
def test_invalid_manifests_name_the_problem(text: str, expected: str) -> None:
    assert any(expected in problem for problem in problems(text)), problems(text)


def test_every_problem_is_reported_at_once() -> None:
    text = json.dumps({
        "schema_version": 3,
        "stages": [{"name": "a", "units": ["x y"], "timeout": "soon"}],
        "extra": 1,
    })  # fmt: skip
    assert len(problems(text)) == 4


def test_error_names_the_source() -> None:
    with pytest.raises(ConfigError) as caught:
        load_manifest("{}", source=f"forge:{MANIFEST_PATH}")
    assert str(caught.value).startswith(f"forge:{MANIFEST_PATH}: ")
    assert caught.value.exit_code == ExitCode.CONFIG


def test_json_schema_describes_every_field() -> None:
    schema_document = manifest_json_schema()
    assert schema_document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_document["additionalProperties"] is False
    assert schema_document["required"] == ["schema_version", "stages"]
    assert schema_document["properties"]["schema_version"]["const"] == 1
    stage = schema_document["$defs"]["ManifestStage"]
    assert stage["additionalProperties"] is False
    for properties in (schema_document["properties"], stage["properties"]):
        for name, field in properties.items():
            assert field.get("description"), name


@pytest.mark.parametrize(
    "unit",
    ["sanoid.service", "a\\b.service", "x@y.service", "-x.service", "foo@.service", "a b.service"],
)
def test_json_schema_unit_pattern_agrees_with_the_model(unit: str) -> None:
    items = manifest_json_schema()["$defs"]["ManifestStage"]["properties"]["units"]["items"]
    pattern = re.compile(items["pattern"])
    accepted = is_valid_unit_name(unit) and not unit.endswith("@.service")
    assert (pattern.search(unit) is not None) is accepted


def test_model_and_schema_agree_on_the_sample_host_manifest() -> None:
    sample = Path(__file__).resolve().parents[2] / "nix" / "tests" / "sample-host-manifest.json"
    manifest = load_manifest(sample.read_text())
    assert isinstance(manifest, Manifest)
    assert json.loads(manifest.model_dump_json()) == json.loads(sample.read_text())


def test_schema_command_prints_the_json_schema() -> None:
    result = CliRunner().invoke(schema, ["manifest"], standalone_mode=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == manifest_json_schema()


def test_schema_command_checks_a_manifest_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(document())
    result = CliRunner().invoke(schema, ["manifest", "--check", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid manifest" in result.output


def test_schema_command_rejects_an_invalid_manifest_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(document(schema_version=9))
    with pytest.raises(ConfigError, match="unsupported manifest version 9"):
        CliRunner().invoke(schema, ["manifest", "--check", str(bad)], standalone_mode=False,
                           catch_exceptions=False)  # fmt: skip
