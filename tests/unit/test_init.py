"""`deploy-guard init` without hosts: the file it writes, and how HOST arguments are read."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deploy_guard.config import Config, default_stages, parse_config
from deploy_guard.errors import UsageError
from deploy_guard.init import host_argument, render_config


def test_template_is_the_built_in_stages_written_out() -> None:
    text = render_config()

    assert text.startswith("#:schema ./deploy-guard.schema.json\n")
    config = parse_config(tomllib.loads(text), text=text)
    assert config.stages == default_stages()
    assert config == Config(stages=default_stages())
    assert "# [hosts.forge]" in text


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
