"""syncoid (`syncoid-NAME`): the source dataset has a `syncoid_*` sync snapshot created after
the run started. With `--no-sync-snap` syncoid leaves none: that cannot be proven."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from deploy_guard.artifact.base import (
    Artifact,
    Candidate,
    CheckOutput,
    Params,
    newest_decision,
    tool_failed,
    unverified,
)

KIND: Final = "syncoid"
SYNC_SNAPSHOT_PREFIX: Final = "syncoid_"


def argv(params: Params) -> list[str]:
    source = str(params.get("source", ""))
    return ["zfs", "list", "-Hp", "-t", "snapshot", "-o", "name,creation", "-d", "1", "--", source]


def describe(params: Params) -> str:
    if params.get("no_sync_snap"):
        return "syncoid: cannot be proven (--no-sync-snap leaves no snapshot)"
    return f"syncoid: a syncoid_* snapshot of {params.get('source')} created after the run started"


def _positional(exec_argv: Sequence[str]) -> list[str]:
    """syncoid's SOURCE and TARGET: the last two arguments that are not options (every
    option syncoid takes with a value is written --opt=value, or --sendoptions V: skipped)."""
    args, skip = [], False
    for arg in list(exec_argv)[1:]:
        if skip:
            skip = False
        elif arg in (
            "--sendoptions",
            "--recvoptions",
            "--sshkey",
            "--sshport",
            "--identifier",
            "--source-bwlimit",
            "--target-bwlimit",
            "--compress",
            "--sshcipher",
            "--sshoption",
            "--exclude",
            "--exclude-datasets",
        ):
            skip = True
        elif not arg.startswith("-"):
            args.append(arg)
    return args[-2:]


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"no_sync_snap": "--no-sync-snap" in exec_argv}
    positional = _positional(exec_argv)
    if len(positional) == 2:
        params["source"] = positional[0]
    return params


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `zfs list -Hp -t snapshot -o name,creation` lines (name TAB epoch)."""
    source = str(params.get("source", ""))
    if params.get("no_sync_snap"):
        return unverified(
            KIND,
            "the job runs with --no-sync-snap: syncoid leaves no snapshot "
            "by which the run could be proven",
        )
    if not source:
        return unverified(KIND, "the source dataset is unknown")
    if ":" in source and "/" not in source.split(":", 1)[0]:  # [user@]host:pool/dataset
        return unverified(KIND, f"the source {source} is on another host")
    if output.exit_status != 0:
        return tool_failed(KIND, "zfs list", output)
    candidates = []
    for line in output.stdout.splitlines():
        name, _, creation = line.partition("\t")
        if not creation.strip().isdigit():
            return unverified(KIND, f"cannot read zfs's answer: {line!r}")
        dataset, _, snapshot = name.partition("@")
        if dataset == source and snapshot.startswith(SYNC_SNAPSHOT_PREFIX):
            candidates.append(Candidate(name, datetime.fromtimestamp(int(creation), UTC)))
    return newest_decision(
        KIND, candidates, started_at, tool="syncoid", what="sync snapshot", where=f"of {source}"
    )
