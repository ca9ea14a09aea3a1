"""The flake inventory read by the real `nix eval`, from tiny flakes without inputs (offline).

Where nix is not installed these tests are skipped, except under CI=true, where that is a
failure. The flakes are plain attribute sets: we only read the attributes colmena, deploy-rs
and nixosConfigurations would have, never build anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy_guard.errors import ConfigError
from deploy_guard.hosts.inventory import InventoryHost, load_flake_inventory

FLEET = """{
  outputs = { self }: {
    colmenaHive.deploymentConfig = {
      forge = { targetHost = "forge.lan"; targetUser = "root"; targetPort = 2222;
                tags = [ "nas" ]; keys = { }; buildOnTarget = false; };
      web = { targetHost = "10.0.0.7"; targetUser = null; targetPort = null; tags = [ ]; };
      laptop = { targetHost = null; targetUser = "root"; targetPort = null; tags = [ "home" ]; };
    };
    deploy.nodes = {
      forge = { hostname = "forge.lan"; sshUser = "root";
                profiles.system.path = throw "never evaluated"; };
      web = { hostname = "10.0.0.7"; };
    };
    nixosConfigurations = { forge = throw "never evaluated"; web = { }; "bad name" = { }; };
  };
}
"""


@pytest.fixture
def nix() -> str:
    """The nix binary; skip (fail under CI=true) without one."""
    found = shutil.which("nix")
    if found is None:
        message = "nix is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(autouse=True)
def nix_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A HOME and cache of its own, so that nix neither needs nor touches the user's."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("NIX_CONFIG", raising=False)


def write_flake(directory: Path, text: str = FLEET) -> Path:
    """``directory``/flake.nix with ``text`` (created with its parents); returns directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "flake.nix").write_text(text, encoding="utf-8")
    return directory


def git(directory: Path, *arguments: str) -> None:
    subprocess.run(["git", "-C", str(directory), *arguments], check=True, capture_output=True)


def test_colmena_hosts_come_with_destination_and_tags(nix: str, tmp_path: Path) -> None:
    flake = write_flake(tmp_path / "fleet")

    hosts = load_flake_inventory("colmena", str(flake), nix=nix)

    assert hosts == {
        "forge": InventoryHost("forge", "root@forge.lan:2222", ("nas",)),
        "laptop": InventoryHost("laptop", None, ("home",)),
        "web": InventoryHost("web", "10.0.0.7"),
    }


def test_deploy_rs_nodes_are_read_without_evaluating_profiles(nix: str, tmp_path: Path) -> None:
    flake = write_flake(tmp_path / "fleet")

    hosts = load_flake_inventory("deploy-rs", str(flake), nix=nix)

    assert hosts == {
        "forge": InventoryHost("forge", "root@forge.lan"),
        "web": InventoryHost("web", "10.0.0.7"),
    }


def test_nixos_configurations_are_names_and_bad_names_are_skipped(
    nix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flake = write_flake(tmp_path / "fleet")

    hosts = load_flake_inventory("nixosConfigurations", str(flake), nix=nix)

    assert hosts == {"forge": InventoryHost("forge", None), "web": InventoryHost("web", None)}
    assert "'bad name'" in caplog.text


def test_relative_flake_is_resolved_against_cwd(nix: str, tmp_path: Path) -> None:
    write_flake(tmp_path / "infra")

    here = load_flake_inventory("nixosConfigurations", ".", nix=nix, cwd=tmp_path / "infra")
    below = load_flake_inventory("nixosConfigurations", "./infra", nix=nix, cwd=tmp_path)

    assert list(here) == list(below) == ["forge", "web"]


def test_flake_in_git_repository_needs_tracked_files(nix: str, tmp_path: Path) -> None:
    repository = write_flake(tmp_path / "repo")
    git(repository, "init", "--quiet")

    with pytest.raises(ConfigError) as caught:
        load_flake_inventory("nixosConfigurations", ".", nix=nix, cwd=repository)
    assert "git add" in str(caught.value)

    git(repository, "add", "flake.nix")  # tracked is enough, no commit needed
    hosts = load_flake_inventory("nixosConfigurations", ".", nix=nix, cwd=repository)
    assert list(hosts) == ["forge", "web"]
    assert not (repository / "flake.lock").exists()


def test_missing_nix_says_to_install_it_or_drop_the_inventory(tmp_path: Path) -> None:
    flake = write_flake(tmp_path / "fleet")

    with pytest.raises(ConfigError) as caught:
        load_flake_inventory("colmena", str(flake), nix="/nonexistent/nix")

    message = str(caught.value)
    assert "'/nonexistent/nix' not found" in message
    assert "install nix, or remove [inventory] from the configuration" in message


def test_syntax_error_reports_nix_error_and_command(nix: str, tmp_path: Path) -> None:
    flake = write_flake(tmp_path / "broken", "{ outputs = { self }: { deploy.nodes = ; }; }\n")

    with pytest.raises(ConfigError) as caught:
        load_flake_inventory("deploy-rs", str(flake), nix=nix)

    message = str(caught.value)
    assert "syntax error" in message
    assert f"{nix} eval --json" in message
    assert f"{flake}#deploy.nodes" in message
    assert "exit status 1" in message


def test_missing_attribute_reports_what_the_flake_lacks(nix: str, tmp_path: Path) -> None:
    flake = write_flake(
        tmp_path / "plain", "{ outputs = { self }: { nixosConfigurations = { }; }; }"
    )

    with pytest.raises(ConfigError) as caught:
        load_flake_inventory("colmena", str(flake), nix=nix)

    assert "colmenaHive.deploymentConfig" in str(caught.value)
    assert "does not provide attribute" in str(caught.value)


def test_wrong_shape_from_the_flake_is_a_config_error(nix: str, tmp_path: Path) -> None:
    text = "{ outputs = { self }: { deploy.nodes = { web = { hostname = 7; }; }; }; }"
    flake = write_flake(tmp_path / "odd", text)

    with pytest.raises(ConfigError, match=r"deploy\.nodes\.web\.hostname"):
        load_flake_inventory("deploy-rs", str(flake), nix=nix)


def test_slow_evaluation_times_out(nix: str, tmp_path: Path) -> None:
    flake = write_flake(tmp_path / "fleet")

    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"did not finish within 0\.001s"):
        load_flake_inventory("colmena", str(flake), nix=nix, timeout=0.001)
    assert time.monotonic() - started < 5
