"""`deploy-guard init` without hosts: the file it writes, and how HOST arguments are read."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from deploy_guard.config import Config, config_json_schema, default_stages, parse_config
from deploy_guard.errors import UsageError
from deploy_guard.init import HostSurvey, host_argument, render_config
from deploy_guard.model import HostPlan, StagePlan


def test_template_is_the_built_in_stages_written_out() -> None:
    text = render_config()

    assert text.startswith("#:schema ./deploy-guard.schema.json\n")
    config = parse_config(tomllib.loads(text), text=text)
    assert config.stages == default_stages()
    assert config == Config(stages=default_stages())
    assert "# [hosts.forge]" in text
    jsonschema.validate(tomllib.loads(text), config_json_schema())


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("forge", ("forge", "forge")),
        ("root@forge.example.org", ("forge", "root@forge.example.org")),
        ("deploy-guard@forge:2222", ("forge", "deploy-guard@forge:2222")),
        ("vault=root@10.0.0.5", ("vault", "root@10.0.0.5")),
    ],
)
def test_host_argument_names_the_host(argument: str, expected: tuple[str, str]) -> None:
    assert host_argument(argument) == expected


@pytest.mark.parametrize("argument", ["root@10.0.0.5", "=forge", "a b=forge", "vault="])
def test_host_argument_without_a_usable_name_is_refused(argument: str) -> None:
    with pytest.raises(UsageError, match="NAME=DESTINATION"):
        host_argument(argument)


def run_init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_guard", "init", *args], cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip


def test_init_writes_the_file_and_its_schema_and_never_overwrites_without_force(
    tmp_path: Path,
) -> None:
    first = run_init(tmp_path)
    assert first.returncode == 0, first.stderr
    written = tmp_path / "deploy-guard.toml"
    assert written.read_text() == render_config()
    assert (tmp_path / "deploy-guard.schema.json").is_file()

    written.write_text("parallel = 1\n")
    refused = run_init(tmp_path)
    assert refused.returncode == 3
    assert "exists; nothing was written" in refused.stderr
    assert written.read_text() == "parallel = 1\n"

    forced = run_init(tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert written.read_text() == render_config()


def survey(*stages: StagePlan, unclaimed: tuple[str, ...] = ()) -> HostSurvey:
    return HostSurvey("vault", "deploy-guard@vault.lan", HostPlan("vault", stages), unclaimed)


def stage_plan(
    name: str, *units: str, critical: bool = False, source: str = "patterns"
) -> StagePlan:
    return StagePlan(name, critical, 60.0, None, False, units, source=source)


def test_host_entry_lets_an_empty_critical_stage_be_empty_and_only_offers_unknown_units() -> None:
    text = render_config([survey(
        stage_plan("snapshots", critical=True),
        stage_plan("replication", "syncoid-tank-data.service"),
        stage_plan("applications", "restic-backups-home.service"),
        unclaimed=("nightly-backup.service",),
    )])  # fmt: skip

    data = tomllib.loads(text)
    config = parse_config(data, text=text)
    host = config.hosts["vault"]
    assert host.ssh == "deploy-guard@vault.lan"
    assert host.become is None
    assert host.stages["snapshots"].allow_empty is True
    assert host.stages["applications"].extra_units == []  # offered in a comment only
    assert '# extra_units = ["nightly-backup.service"]' in text
    assert "# replication: patterns that match here: syncoid-*.service" in text
    assert "#   snapshots: no unit" in text
    jsonschema.validate(data, config_json_schema())


def test_stages_from_the_hosts_manifest_get_no_overrides() -> None:
    text = render_config([survey(stage_plan("snapshots", critical=True, source="manifest"))])

    assert "#   snapshots (from the host's manifest): no unit" in text
    assert "hosts.vault.stages" not in text


def test_become_is_written_when_asked() -> None:
    text = render_config([survey(stage_plan("snapshots", "sanoid.service"))], become=True)

    assert parse_config(tomllib.loads(text)).hosts["vault"].become == "sudo"
