"""The pre-push hook end to end: real git, a real bare remote, a real `git push` through the
installed hook, and the guard against a real host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.guard import accepted_logins, oneshot, started_units, write_config
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost

HOOK_HOSTS = '[hook]\nhosts = ["forge"]\n'
MAPPED_PATHS = HOOK_HOSTS + '[hook.paths]\n"hosts/forge/**" = "forge"\n'


@dataclass(frozen=True)
class Repository:
    """A clone with the hook installed, and the bare remote it pushes to."""

    path: Path
    remote: Path
    env: dict[str, str]

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=self.path, env=self.env, check=check,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    def commit(self, *files: str) -> str:
        for name in files:
            path = self.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{name} changed\n" + (path.read_text() if path.exists() else ""))
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", f"change {', '.join(files)}")
        return self.git("rev-parse", "HEAD").stdout.strip()

    def push(self, *refspecs: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "push", "origin", *refspecs], cwd=self.path,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip

    def remote_head(self, branch: str = "main") -> str:
        argv = ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"]
        completed = subprocess.run(argv, cwd=self.remote, capture_output=True, text=True,
                                   check=False)  # fmt: skip
        return completed.stdout.strip()


def make_repository(tmp_path: Path, dg_env: dict[str, str], hook_config: str) -> Repository:
    """A clone whose main is already on the remote (pushed before the hook was installed)."""
    env = {
        **dg_env,
        # `deploy-guard` must resolve from the hook script, as for a user who installed it.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{dg_env.get('PATH', os.defpath)}",
        "DEPLOY_GUARD_CONFIG": str(write_config(tmp_path, hook_config)),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org",
        "GIT_CONFIG_NOSYSTEM": "1",
    }  # fmt: skip
    env.pop("DEPLOY_GUARD_OVERRIDE", None)
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch", "main", str(remote)],
                   check=True, env=env)  # fmt: skip
    subprocess.run(["git", "init", "--quiet", "--initial-branch", "main", str(work)], check=True,
                   env=env)  # fmt: skip
    repository = Repository(work, remote, env)
    repository.git("remote", "add", "origin", str(remote))
    repository.commit("README.md", "hosts/forge/default.nix")
    assert repository.push("main").returncode == 0
    installed = subprocess.run(["deploy-guard", "hook", "install"], cwd=work, env=env,
                               capture_output=True, text=True, check=False)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return repository


@pytest.fixture
def repository(tmp_path: Path, dg_env: dict[str, str]) -> Repository:
    return make_repository(tmp_path, dg_env, HOOK_HOSTS)


def test_push_to_an_unprotected_branch_passes_without_contacting_any_host(
    host: TestHost, repository: Repository
) -> None:
    repository.commit("hosts/forge/default.nix")
    before = accepted_logins(host)

    pushed = repository.push("HEAD:refs/heads/feature")

    assert pushed.returncode == 0, pushed.stderr
    assert "deploy-guard hook: no protected branch (main, master) updated" in pushed.stderr
    assert accepted_logins(host) - before - 1 == 0
    assert repository.remote_head("feature") == repository.git("rev-parse", "HEAD").stdout.strip()


def test_push_to_main_runs_the_guard_and_passes_when_every_unit_succeeds(
    host: TestHost, repository: Repository
) -> None:
    head = repository.commit("hosts/forge/default.nix")

    pushed = repository.push("main")

    assert pushed.returncode == 0, pushed.stderr
    assert "deploy-guard hook: guarding forge before pushing main to origin" in pushed.stderr
    assert "every backup succeeded, push allowed" in pushed.stderr
    assert repository.remote_head() == head
    assert started_units(host, BACKUP_UNITS) == set(BACKUP_UNITS)


def test_failed_unit_blocks_the_push_and_the_override_lets_it_through_on_the_record(
    host: TestHost, repository: Repository, tmp_path: Path
) -> None:
    host.install_unit("restic-backups-broken.service",
                      oneshot("echo repository locked >&2; exit 1"))  # fmt: skip
    host.daemon_reload()
    before = repository.remote_head()
    head = repository.commit("hosts/forge/default.nix")

    # main is not the first ref git reports: the hook reads every line, not only the first.
    blocked = repository.push("HEAD:refs/heads/feature", "main")

    assert blocked.returncode != 0
    assert repository.remote_head() == before
    assert repository.remote_head("feature") == ""  # a refused push updates no ref at all
    assert "restic-backups-broken.service" in blocked.stderr
    assert "push BLOCKED: the guard failed (exit 1, partial failure)" in blocked.stderr
    assert "DEPLOY_GUARD_OVERRIDE=" in blocked.stderr
    assert not (tmp_path / "state" / "deploy-guard" / "audit.jsonl").exists()

    # A blank reason is no override.
    assert repository.push("main", DEPLOY_GUARD_OVERRIDE="  ").returncode != 0
    assert repository.remote_head() == before

    overridden = repository.push("main", DEPLOY_GUARD_OVERRIDE="restic repo migration, #42")

    assert overridden.returncode == 0, overridden.stderr
    assert repository.remote_head() == head
    assert "OVERRIDE by" in overridden.stderr
    audit = (tmp_path / "state" / "deploy-guard" / "audit.jsonl").read_text().splitlines()
    (record,) = [json.loads(line) for line in audit]
    assert record["reason"] == "restic repo migration, #42"
    assert record["hosts"] == ["forge"]
    assert record["command"] == []
    assert any(f.get("unit") == "restic-backups-broken.service" for f in record["failures"])
    journal = host.ssh("journalctl -b -q -o cat -t deploy-guard").stdout
    assert "restic repo migration, #42" in journal
    listed = subprocess.run(["deploy-guard", "history", "--json"], env=repository.env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    newest = json.loads(listed.stdout)["runs"][0]
    assert (newest["command"], newest["exit_code"]) == ("hook", 0)
    assert newest["override"]["reason"] == "restic repo migration, #42"


def test_paths_select_the_hosts_whose_files_changed(
    host: TestHost, tmp_path: Path, dg_env: dict[str, str]
) -> None:
    repository = make_repository(tmp_path, dg_env, MAPPED_PATHS)
    unmapped = repository.commit("docs/notes.md")
    before = accepted_logins(host)

    pushed = repository.push("main")

    assert pushed.returncode == 0, pushed.stderr
    assert "no file mapped in [hook.paths] changed" in pushed.stderr
    assert accepted_logins(host) - before - 1 == 0
    assert repository.remote_head() == unmapped

    mapped = repository.commit("hosts/forge/disks.nix")
    pushed = repository.push("main")

    assert pushed.returncode == 0, pushed.stderr
    assert "guarding forge" in pushed.stderr
    assert repository.remote_head() == mapped
    assert "sanoid.service" in started_units(host, BACKUP_UNITS)
