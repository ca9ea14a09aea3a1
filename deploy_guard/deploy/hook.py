"""The git pre-push hook: which pushes are guarded, and which hosts they concern.

Pure core, table-tested without git: parse git's pre-push lines (`parse_push_lines`), decide
which pushes update a protected branch (`protected_pushes`), map changed paths to host
selections (`selections_for_paths`, `hook_selections`). Thin git wrappers at the edge (argv
lists, never a shell): the hooks directory, the files a push changes, installing the script.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from deploy_guard.errors import ConfigError, UsageError
from deploy_guard.hosts.selection import known_hosts, select_hosts
from deploy_guard.hosts.targets import flake_inventory, resolve_targets
from deploy_guard.transport import process

if TYPE_CHECKING:
    from deploy_guard.config import Config, HookConfig
    from deploy_guard.guard.engine import HostTarget

log = logging.getLogger(__name__)

OVERRIDE_ENV: Final = "DEPLOY_GUARD_OVERRIDE"
MARKER: Final = "# deploy-guard: managed pre-push hook (deploy-guard hook install)"
# Kept byte for byte equal to hooks/pre-push (a unit test checks): `hook install` must work
# from an installed package, where the repository's hooks/ directory does not exist.
PRE_PUSH_SCRIPT: Final = f"""#!/bin/sh
{MARKER}
# git runs this with REMOTE and URL as arguments and the refs being pushed on stdin; exec
# hands both to deploy-guard and makes its exit code the hook's (non-zero: no push).
# Without deploy-guard on PATH the push is refused (fail closed): the message below, exit 1.
if ! command -v deploy-guard >/dev/null 2>&1; then
    echo "deploy-guard pre-push hook: deploy-guard is not on PATH, so this push is refused." >&2
    echo "Install deploy-guard (or fix PATH), or remove $0 to stop guarding pushes." >&2
    exit 1
fi
exec deploy-guard hook pre-push "$@"
"""

_SHA: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
_BRANCH_PREFIX: Final = "refs/heads/"


@dataclass(frozen=True, slots=True)
class PushedRef:
    """One line of git's pre-push input: `<local ref> <local sha> <remote ref> <remote sha>`."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str

    @property
    def deleted(self) -> bool:
        """`git push REMOTE :ref`: git sends `(delete)` and an all-zero local sha."""
        return set(self.local_sha) == {"0"}

    @property
    def new(self) -> bool:
        """The remote does not have this ref yet."""
        return set(self.remote_sha) == {"0"}

    @property
    def branch(self) -> str | None:
        """The remote ref's short name when it is a branch; tags and others are not."""
        return self.remote_ref.removeprefix(_BRANCH_PREFIX) if self.is_branch else None

    @property
    def is_branch(self) -> bool:
        return self.remote_ref.startswith(_BRANCH_PREFIX)


def parse_push_lines(text: str) -> tuple[PushedRef, ...]:
    """git's pre-push stdin, one pushed ref per line; blank lines are ignored.

    Raises:
        UsageError: a malformed line (every one of them, by line number).
    """
    pushes, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        # A local ref may be an expression with spaces (`main@{1 day ago}:main`); the last
        # three fields never have any.
        fields = line.rsplit(maxsplit=3)
        if len(fields) != 4 or not (_SHA.fullmatch(fields[1]) and _SHA.fullmatch(fields[3])):
            problems.append(f"line {number}: {line.strip()!r}")
            continue
        pushes.append(PushedRef(*fields))
    if problems:
        raise UsageError(
            "malformed pre-push input (git sends '<local ref> <local sha> <remote ref> "
            f"<remote sha>' per line): {'; '.join(problems)}"
        )
    return tuple(pushes)


def pushes_from_pre_commit(env: Mapping[str, str]) -> tuple[PushedRef, ...]:
    """The one ref the pre-commit framework describes in its PRE_COMMIT_* variables (it reads
    git's stdin itself); nothing when they are absent. Without PRE_COMMIT_TO_REF (a push of a
    whole history) the local branch is named instead of a sha and the push counts as new."""
    remote_ref = env.get("PRE_COMMIT_REMOTE_BRANCH", "")
    if not remote_ref:
        return ()
    local_ref = env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD"
    local = env.get("PRE_COMMIT_TO_REF") or local_ref
    base = env.get("PRE_COMMIT_FROM_REF") or "0" * 40
    return (PushedRef(local_ref, local, remote_ref, base),)


def protected_pushes(pushes: Iterable[PushedRef], branches: Sequence[str]) -> list[PushedRef]:
    """The pushes that update a protected branch: the remote ref is `refs/heads/NAME` and NAME
    matches one of ``branches`` (fnmatch globs; `*` also matches `/`). Deleting a branch
    deploys nothing new, and tags are not branches: neither is guarded."""
    return [
        push
        for push in pushes
        if not push.deleted
        and push.branch is not None
        and any(fnmatch.fnmatchcase(push.branch, pattern) for pattern in branches)
    ]


def _segment_regex(segment: str) -> str:
    """One path segment of a glob: `*` and `?` never cross a `/`; `[...]` as in fnmatch."""
    parts, index = [], 0
    while index < len(segment):
        character = segment[index]
        closing = segment.find("]", index + 2) if character == "[" else -1
        if character == "*":
            parts.append("[^/]*")
        elif character == "?":
            parts.append("[^/]")
        elif closing != -1:
            body = segment[index + 1 : closing]
            body = "^" + body[1:] if body.startswith("!") else body
            parts.append("(?!/)[" + body.replace("\\", "\\\\") + "]")
            index = closing
        else:
            parts.append(re.escape(character))
        index += 1
    return "".join(parts)


@functools.lru_cache(maxsize=256)
def glob_regex(glob: str) -> re.Pattern[str]:
    """A path glob, anchored at the repository root, as a regular expression.

    `*`, `?` and `[...]` match within one path segment. A whole segment `**` matches any
    number of segments: `**/default.nix` at any depth (the root too), `modules/**/*.nix`
    anywhere below modules/, and a trailing `hosts/forge/**` everything inside hosts/forge.
    """
    segments = glob.strip("/").split("/")
    pattern = ""
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            pattern += (".+" if pattern else ".*") if last else "(?:[^/]+/)*"
        else:
            pattern += _segment_regex(segment) + ("" if last else "/")
    return re.compile(pattern, re.DOTALL)


def path_matches(glob: str, path: str) -> bool:
    return glob_regex(glob).fullmatch(path) is not None


def selections_for_paths(changed: Iterable[str], paths: Mapping[str, Sequence[str]]) -> list[str]:
    """The host selections of every glob in ``paths`` that a changed file matches, each once,
    in the table's order."""
    files = list(changed)
    selected: dict[str, None] = {}
    for glob, selections in paths.items():
        if any(path_matches(glob, file) for file in files):
            selected.update(dict.fromkeys(selections))
    return list(selected)


def hook_selections(
    hosts: Sequence[str],
    paths: Mapping[str, Sequence[str]],
    changes: Sequence[Sequence[str] | None],
) -> list[str]:
    """What the protected pushes guard: all of ``hosts`` without a `paths` table, or when
    any push's changed files are unknown (None: fail closed); otherwise the selections
    mapped from the changed files (possibly none)."""
    if not paths or any(files is None for files in changes):
        return list(hosts)
    return selections_for_paths((file for files in changes if files for file in files), paths)


def narrow_hosts(protected: Sequence[str], selected: Sequence[str], path: Path | None) -> list[str]:
    """``selected`` (from `paths`), which must all be among ``protected`` (from `hosts`).

    Raises:
        ConfigError: a `paths` selection names a host that `hosts` does not.
    """
    outside = [name for name in selected if name not in protected]
    if outside:
        raise ConfigError(
            path,
            [
                f"hook.paths selects {', '.join(outside)}, which hook.hosts "
                "does not list; add it there or fix the selection"
            ],
        )
    return list(selected)


def override_reason(env: Mapping[str, str]) -> str | None:
    """DEPLOY_GUARD_OVERRIDE's reason; empty or blank is no override."""
    return env.get(OVERRIDE_ENV, "").strip() or None


@dataclass(frozen=True, slots=True)
class ChangedFiles:
    """The files a push changes, or None and why they cannot be known."""

    files: tuple[str, ...] | None
    unknown_because: str = ""


def _first_line(completed: process.Finished[str]) -> str:
    lines = completed.stderr.strip().splitlines()
    return lines[0] if lines else f"git exited with status {completed.returncode}"


def default_branch(remote: str | None, cwd: Path | None = None) -> str | None:
    """The remote's default branch as we know it: REMOTE/HEAD, else REMOTE/main or
    REMOTE/master; None when the remote is a URL or none of them is known."""
    if not remote or remote.startswith("-"):
        return None
    completed = process.git(["rev-parse", "--abbrev-ref", f"{remote}/HEAD"], cwd)
    if completed.returncode == 0 and completed.stdout.strip() not in ("", f"{remote}/HEAD"):
        return completed.stdout.strip()
    for name in ("main", "master"):
        ref = f"refs/remotes/{remote}/{name}"
        if process.git(["rev-parse", "--verify", "--quiet", ref], cwd).returncode == 0:
            return ref
    return None


def changed_files(push: PushedRef, remote: str | None, cwd: Path | None = None) -> ChangedFiles:
    """`git diff --name-only` between what the remote has and what is pushed; a new branch
    from its merge-base with the remote's default branch. Renames count twice (old and new
    path), so moving a file out of a mapped directory still guards its hosts."""
    base = push.remote_sha
    if push.new:
        default = default_branch(remote, cwd)
        if default is None:
            return ChangedFiles(None, f"new branch, and no default branch is known for {remote}")
        merge_base = process.git(["merge-base", push.local_sha, default], cwd)
        if merge_base.returncode != 0:
            return ChangedFiles(None, f"no merge-base with {default}: {_first_line(merge_base)}")
        base = merge_base.stdout.strip()
    diff = process.git(
        ["diff", "--name-only", "--no-renames", "-z", base, push.local_sha, "--"], cwd
    )
    if diff.returncode != 0:
        return ChangedFiles(None, f"git diff failed: {_first_line(diff)}")
    return ChangedFiles(tuple(name for name in diff.stdout.split("\0") if name))


def hooks_directory(cwd: Path) -> Path:
    """Where git looks for hooks (`git rev-parse --git-path hooks`: core.hooksPath honoured).

    Raises:
        UsageError: not in a git repository, or git is missing.
    """
    completed = process.git(["rev-parse", "--git-path", "hooks"], cwd)
    if completed.returncode != 0:
        raise UsageError(f"cannot find the git hooks directory: {_first_line(completed)}")
    return cwd / completed.stdout.strip()


def is_ours(path: Path) -> bool:
    """A hook deploy-guard wrote: it carries the marker line."""
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False


def install_hook(directory: Path, *, force: bool) -> Path:
    """Write the pre-push script (mode 0755) into ``directory``; ours is replaced freely.

    Raises:
        UsageError: another pre-push hook is there (without ``force``), or it cannot be written.
    """
    path = directory / "pre-push"
    if (path.exists() or path.is_symlink()) and not force and not is_ours(path):
        raise UsageError(
            f"{path} exists and was not written by deploy-guard; call "
            '`deploy-guard hook pre-push "$@"` from it yourself (stdin must reach '
            "it), or replace it with --force"
        )
    temporary = directory / ".pre-push.deploy-guard.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary.write_text(PRE_PUSH_SCRIPT, encoding="utf-8")
        temporary.chmod(0o755)
        temporary.replace(path)  # a symlink is replaced, not followed
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    return path


# -- which hosts a push concerns ----------------------------------------------------------


def push_selections(
    hook_config: HookConfig,
    pushes: Sequence[PushedRef],
    remote: str | None,
    note: Callable[[str], None],
) -> list[str]:
    """The host selections the protected pushes concern (git diffs only with `paths`)."""
    if not hook_config.paths:
        return list(hook_config.hosts)
    changes = []
    for push in pushes:
        changed = changed_files(push, remote)
        if changed.files is None:
            note(
                f"cannot tell which files the push to {push.branch} changes "
                f"({changed.unknown_because}); guarding every host in [hook] hosts"
            )
        changes.append(changed.files)
    return hook_selections(hook_config.hosts, hook_config.paths, changes)


def push_targets(
    config: Config, path: Path | None, selections: list[str]
) -> tuple[HostTarget, ...]:
    """Read the inventory (only now: something must be guarded) and resolve the hosts.

    Raises:
        ConfigError: inventory failure, or a `paths` selection outside `hosts`.
        UsageError: a tag or glob that matches no host.
    """
    flake_hosts = flake_inventory(config, path)
    known = known_hosts(config, flake_hosts)
    protected = select_hosts(config.hook.hosts, known)
    names = narrow_hosts(protected, select_hosts(selections, known), path)
    return resolve_targets(config, names, flake_hosts=flake_hosts)
