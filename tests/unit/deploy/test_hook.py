"""The pre-push hook: git's input, protected branches, path globs, and installing the script
into a real (temporary) git repository."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_guard.deploy.hook import (
    MARKER,
    PRE_PUSH_SCRIPT,
    PushedRef,
    changed_files,
    hook_selections,
    narrow_hosts,
    override_reason,
    parse_push_lines,
    path_matches,
    protected_pushes,
    pushes_from_pre_commit,
    selections_for_paths,
)
from deploy_guard.errors import ConfigError, ExitCode, UsageError

REPOSITORY = Path(__file__).resolve().parents[3]
ZERO = "0" * 40
LOCAL = "a" * 40
REMOTE = "b" * 40


def push(remote_ref: str, local_sha: str = LOCAL, remote_sha: str = REMOTE) -> PushedRef:
    local_ref = "(delete)" if local_sha == ZERO else "refs/heads/work"
    return PushedRef(local_ref, local_sha, remote_ref, remote_sha)


def test_push_lines_are_parsed_one_ref_per_line_and_blank_lines_ignored() -> None:
    text = (
        f"refs/heads/main {LOCAL} refs/heads/main {REMOTE}\n\n"
        f"(delete) {ZERO} refs/heads/old {REMOTE}\n"
        f"refs/tags/v1 {'c' * 64} refs/tags/v1 {'0' * 64}\n"
    )
    pushes = parse_push_lines(text)
    assert pushes == (
        PushedRef("refs/heads/main", LOCAL, "refs/heads/main", REMOTE),
        PushedRef("(delete)", ZERO, "refs/heads/old", REMOTE),
        PushedRef("refs/tags/v1", "c" * 64, "refs/tags/v1", "0" * 64),
    )
    assert [p.deleted for p in pushes] == [False, True, False]
    assert [p.new for p in pushes] == [False, False, True]


def test_a_local_ref_with_spaces_keeps_the_last_three_fields_apart() -> None:
    (pushed,) = parse_push_lines(f"main@{{1 day ago}} {LOCAL} refs/heads/main {REMOTE}\n")
    assert pushed.local_ref == "main@{1 day ago}"
    assert pushed.branch == "main"


def test_no_input_is_no_push() -> None:
    assert parse_push_lines("") == ()


@pytest.mark.parametrize(
    "line",
    [
        "garbage",
        f"refs/heads/main {LOCAL} refs/heads/main",
        f"refs/heads/main {LOCAL} refs/heads/main not-a-sha",
        f"refs/heads/main {LOCAL[:39]} refs/heads/main {REMOTE}",
        f"refs/heads/main {LOCAL.upper()} refs/heads/main {REMOTE}",
    ],
)
def test_malformed_push_lines_are_a_usage_error_naming_the_line(line: str) -> None:
    with pytest.raises(UsageError, match="line 2") as raised:
        parse_push_lines(f"refs/heads/a {LOCAL} refs/heads/a {REMOTE}\n{line}\n")
    assert raised.value.exit_code is ExitCode.CONFIG


@pytest.mark.parametrize(
    ("pushed", "branches", "guarded"),
    [
        (push("refs/heads/main"), ["main", "master"], True),
        (push("refs/heads/master"), ["main", "master"], True),
        (push("refs/heads/feature"), ["main", "master"], False),
        (push("refs/heads/main", remote_sha=ZERO), ["main"], True),  # new branch
        (push("refs/heads/main", local_sha=ZERO), ["main"], False),  # deletion
        (push("refs/tags/main"), ["main"], False),  # a tag is no branch
        (push("refs/for/main"), ["main"], False),  # a review ref is no branch
        (push("refs/heads/release/2026.11"), ["release/*"], True),
        (push("refs/heads/team/main"), ["main"], False),  # the short name, whole
        (push("refs/heads/main"), [], False),
    ],
)
def test_protected_branch_decision(pushed: PushedRef, branches: list[str], guarded: bool) -> None:
    assert bool(protected_pushes([pushed], branches)) is guarded


def test_only_the_pushes_to_protected_branches_are_kept() -> None:
    pushes = [push("refs/heads/feature"), push("refs/heads/main"), push("refs/tags/v1")]
    assert protected_pushes(pushes, ["main"]) == [pushes[1]]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, ()),
        (
            {"PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main", "PRE_COMMIT_LOCAL_BRANCH": "main",
             "PRE_COMMIT_FROM_REF": REMOTE, "PRE_COMMIT_TO_REF": LOCAL},
            (PushedRef("main", LOCAL, "refs/heads/main", REMOTE),),
        ),
        (  # a whole history: no from/to, the local branch stands in and the push is new
            {"PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main", "PRE_COMMIT_LOCAL_BRANCH": "main"},
            (PushedRef("main", "main", "refs/heads/main", ZERO),),
        ),
    ],
)  # fmt: skip
def test_pre_commit_variables_describe_one_push(
    environment: dict[str, str], expected: tuple[PushedRef, ...]
) -> None:
    assert pushes_from_pre_commit(environment) == expected


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("hosts/forge/**", "hosts/forge/default.nix", True),
        ("hosts/forge/**", "hosts/forge/disks/zfs.nix", True),
        ("hosts/forge/**", "hosts/forge", False),  # inside the directory only
        ("hosts/forge/**", "hosts/forgery/default.nix", False),
        ("hosts/*/default.nix", "hosts/forge/default.nix", True),
        ("hosts/*/default.nix", "hosts/a/b/default.nix", False),  # * stays in one segment
        ("**/default.nix", "default.nix", True),  # zero directories
        ("**/default.nix", "modules/backup/default.nix", True),
        ("modules/**/*.nix", "modules/x.nix", True),
        ("modules/**/*.nix", "modules/a/b/x.nix", True),
        ("modules/**/*.nix", "other/modules/x.nix", False),  # anchored at the root
        ("flake.lock", "flake.lock", True),
        ("flake.lock", "sub/flake.lock", False),
        ("/flake.nix", "flake.nix", True),
        ("**", "anything/at/all", True),
        ("web-?.nix", "web-1.nix", True),
        ("web-?.nix", "web-10.nix", False),
        ("web-[12].nix", "web-2.nix", True),
        ("web-[!12].nix", "web-3.nix", True),
        ("web-[!12].nix", "web-1.nix", False),
        ("a.b", "axb", False),  # a dot is a dot
        ("secrets/*", "secrets/a/b", False),
    ],
)
def test_path_globs(glob: str, path: str, matches: bool) -> None:
    assert path_matches(glob, path) is matches


PATHS = {
    "hosts/forge/**": ["forge"],
    "hosts/web-*/**": ["@web"],
    "modules/**": ["forge", "@web"],
}


@pytest.mark.parametrize(
    ("changed", "selections"),
    [
        (["README.md"], []),
        (["hosts/forge/default.nix"], ["forge"]),
        (["hosts/web-1/default.nix", "hosts/forge/x.nix"], ["forge", "@web"]),
        (["modules/backup.nix"], ["forge", "@web"]),
        ([], []),
    ],
)
def test_changed_paths_map_to_selections_in_table_order(
    changed: list[str], selections: list[str]
) -> None:
    assert selections_for_paths(changed, PATHS) == selections


def test_without_paths_every_configured_host_is_guarded() -> None:
    assert hook_selections(["forge", "@web"], {}, [["README.md"]]) == ["forge", "@web"]


def test_unknown_changes_guard_every_configured_host() -> None:
    assert hook_selections(["forge", "@web"], PATHS, [["README.md"], None]) == ["forge", "@web"]


def test_changes_outside_every_glob_guard_nothing() -> None:
    assert hook_selections(["forge"], PATHS, [["README.md"], ["docs/x.md"]]) == []


def test_a_paths_selection_outside_hosts_is_a_configuration_error() -> None:
    assert narrow_hosts(["forge", "web-1"], ["web-1"], None) == ["web-1"]
    with pytest.raises(ConfigError, match="db-1"):
        narrow_hosts(["forge"], ["forge", "db-1"], None)


@pytest.mark.parametrize(
    ("value", "reason"), [(None, None), ("", None), ("  \t", None), (" ticket 42 ", "ticket 42")]
)
def test_override_variable_blank_is_no_override(value: str | None, reason: str | None) -> None:
    environment = {} if value is None else {"DEPLOY_GUARD_OVERRIDE": value}
    assert override_reason(environment) == reason


def test_shipped_script_is_the_installed_one_and_executable() -> None:
    shipped = REPOSITORY / "hooks" / "pre-push"
    assert shipped.read_text(encoding="utf-8") == PRE_PUSH_SCRIPT
    assert shipped.stat().st_mode & stat.S_IXUSR
    assert MARKER in PRE_PUSH_SCRIPT.splitlines()


# --- real git ---------------------------------------------------------------------------


def git(repository: Path, *args: str) -> str:
    environment = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    completed = subprocess.run(["git", *args], cwd=repository, env=environment, check=True,
                               capture_output=True, text=True)  # fmt: skip
    return completed.stdout.strip()


def commit(repository: Path, *files: str) -> str:
    for name in files:
        path = repository / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name} {path.exists() and path.read_text()}\n")
    git(repository, "add", "--all")
    git(repository, "commit", "--quiet", "--allow-empty", "-m", "change")
    return git(repository, "rev-parse", "HEAD")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    path = tmp_path / "repository"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    return path


def deploy_guard(
    cwd: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DEPLOY_GUARD_CONFIG": "",
        "XDG_CONFIG_HOME": "/nonexistent",
        **env,
    }
    return subprocess.run([sys.executable, "-m", "deploy_guard", *args], cwd=cwd, input=stdin,
                          env=environment, capture_output=True, text=True, check=False)  # fmt: skip


def test_install_writes_an_executable_hook_where_git_looks(repository: Path) -> None:
    result = deploy_guard(repository, "hook", "install")
    hook = repository / ".git" / "hooks" / "pre-push"
    assert result.returncode == 0, result.stderr
    assert hook.read_text() == PRE_PUSH_SCRIPT
    assert os.access(hook, os.X_OK)
    assert str(hook.relative_to(repository)) in result.stderr


def test_install_honours_core_hooks_path(repository: Path) -> None:
    git(repository, "config", "core.hooksPath", "githooks")
    (repository / "sub").mkdir()
    result = deploy_guard(repository / "sub", "hook", "install")  # from a subdirectory
    assert result.returncode == 0, result.stderr
    assert os.access(repository / "githooks" / "pre-push", os.X_OK)
    assert not (repository / ".git" / "hooks" / "pre-push").exists()


def test_install_refuses_a_foreign_hook_and_force_replaces_it(repository: Path) -> None:
    hook = repository / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexec run-the-linters\n")
    refused = deploy_guard(repository, "hook", "install")
    assert refused.returncode == 3
    assert "was not written by deploy-guard" in refused.stderr
    assert "--force" in refused.stderr
    assert hook.read_text() == "#!/bin/sh\nexec run-the-linters\n"

    forced = deploy_guard(repository, "hook", "install", "--force")
    assert forced.returncode == 0, forced.stderr
    assert hook.read_text() == PRE_PUSH_SCRIPT


def test_install_replaces_its_own_hook_without_force(repository: Path) -> None:
    assert deploy_guard(repository, "hook", "install").returncode == 0
    (repository / ".git" / "hooks" / "pre-push").write_text(PRE_PUSH_SCRIPT + "# older\n")
    assert deploy_guard(repository, "hook", "install").returncode == 0
    assert (repository / ".git" / "hooks" / "pre-push").read_text() == PRE_PUSH_SCRIPT


def test_install_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    result = deploy_guard(tmp_path, "hook", "install", GIT_CEILING_DIRECTORIES=str(tmp_path))
    assert result.returncode == 3
    assert "git hooks directory" in result.stderr


def test_changed_files_of_an_update_list_renamed_files_under_both_names(repository: Path) -> None:
    before = commit(repository, "hosts/forge/default.nix", "README.md")
    git(repository, "mv", "hosts/forge/default.nix", "shared.nix")
    after = commit(repository, "docs/x.md")
    changed = changed_files(push("refs/heads/main", after, before), "origin", repository)
    assert sorted(changed.files or ()) == ["docs/x.md", "hosts/forge/default.nix", "shared.nix"]


def test_a_new_branch_is_compared_with_the_remotes_default_branch(repository: Path) -> None:
    base = commit(repository, "README.md")
    git(repository, "update-ref", "refs/remotes/origin/main", base)
    tip = commit(repository, "hosts/forge/x.nix")
    changed = changed_files(push("refs/heads/main", tip, ZERO), "origin", repository)
    assert changed.files == ("hosts/forge/x.nix",)


def test_a_new_branch_without_a_known_default_branch_is_unknown(repository: Path) -> None:
    tip = commit(repository, "README.md")
    changed = changed_files(push("refs/heads/main", tip, ZERO), "origin", repository)
    assert changed.files is None
    assert "no default branch" in changed.unknown_because


def test_an_unknown_remote_sha_makes_the_changes_unknown(repository: Path) -> None:
    tip = commit(repository, "README.md")
    changed = changed_files(push("refs/heads/main", tip, "c" * 40), "origin", repository)
    assert changed.files is None


CONFIG = """
[hook]
hosts = ["nohost.invalid"]
[hook.paths]
"hosts/forge/**" = "nohost.invalid"
"""


def test_pushes_that_need_no_guard_exit_0_without_contacting_anything(
    repository: Path, tmp_path: Path
) -> None:
    """Contacting nohost.invalid would fail the push: exit 0 proves nothing was guarded."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    before = commit(repository, "README.md")
    after = commit(repository, "docs/unmapped.md")
    pre_commit = {"PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main", "PRE_COMMIT_FROM_REF": before,
                  "PRE_COMMIT_TO_REF": after}  # fmt: skip
    cases = [
        (f"refs/heads/main {after} refs/heads/feature {before}\n", {}, "no protected branch"),
        (f"refs/heads/main {after} refs/heads/main {before}\n", {}, "no file mapped"),
        (f"(delete) {ZERO} refs/heads/main {before}\n", {}, "no protected branch"),
        ("", {}, "no protected branch"),
        ("", {**pre_commit, "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/x"}, "no protected branch"),
        ("", pre_commit, "no file mapped"),  # the pre-commit framework's variables
    ]
    for stdin, env, note in cases:
        result = deploy_guard(repository, "hook", "pre-push", "origin", "url", stdin=stdin,
                              DEPLOY_GUARD_CONFIG=str(config), **env)  # fmt: skip
        assert (result.returncode, note in result.stderr) == (0, True), (stdin, result.stderr)


def test_without_hook_hosts_the_hook_says_it_guards_nothing(repository: Path) -> None:
    stdin = f"refs/heads/main {LOCAL} refs/heads/main {REMOTE}\n"
    result = deploy_guard(repository, "hook", "pre-push", "origin", "url", stdin=stdin)
    assert result.returncode == 0
    assert "no [hook] hosts configured" in result.stderr


def test_malformed_input_blocks_the_push_with_exit_3(repository: Path) -> None:
    result = deploy_guard(repository, "hook", "pre-push", "origin", "url", stdin="nonsense\n")
    assert result.returncode == 3
    assert "malformed pre-push input" in result.stderr
