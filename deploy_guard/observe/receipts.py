"""What each host keeps of each run: receipts in /var/lib/deploy-guard/receipts and a journal
entry (`journalctl -t deploy-guard`).

Pure: the documents, which old receipts to delete, the journal fields (`systemd.files`
writes them). `observe` writes them on the host. The NixOS module's `requireFreshBackup` check reads
`last-success.json` (`finished_at`, or `finished_at_epoch`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from deploy_guard.errors import ExitCode
from deploy_guard.model import HostResult, RunReport, StageOutcome
from deploy_guard.observe.report import Json, host_json, override_json, time_text
from deploy_guard.systemd.files import journal_lines, one_line

RECEIPTS_DIRECTORY: Final = "/var/lib/deploy-guard/receipts"
LAST_SUCCESS_NAME: Final = "last-success.json"
RECEIPT_SCHEMA: Final = 1
# A file name of ours: a run id (20261127T101500Z-3f9a1c) never holds a slash or starts with
# a dot, and sorts by the time the run started.
_SAFE_NAME: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")


def receipt_name(run_id: str) -> str:
    """``RUN_ID.json``.

    Raises:
        ValueError: the run id could name a file outside the receipts directory.
    """
    if not _SAFE_NAME.match(run_id):
        raise ValueError(f"run id {run_id!r} is not a safe file name")
    return f"{run_id}.json"


def _deploy_part(report: RunReport, host: str) -> Json | None:
    deploy = report.deploy
    if deploy is None:
        return None
    return {
        "tool": deploy.tool,
        "deployed": host in deploy.deployed_hosts,
        "skipped": host in deploy.skipped_hosts,
        "refused": deploy.refused,
        "exit_code": deploy.exit_code,
    }


def receipt_document(report: RunReport, host: HostResult, git_revision: str | None) -> Json:
    """The host's part of the report (`exit_code` is the host's own) and the run around it."""
    return {
        "schema": RECEIPT_SCHEMA,
        "run_id": report.run_id,
        "command": report.command,
        "started_at": time_text(report.started_at),
        "finished_at": time_text(report.finished_at),
        "run_exit_code": int(report.exit_code),
        "git_revision": git_revision,
        **host_json(host),
        "override": override_json(report.override),
        "deploy": _deploy_part(report, host.host),
    }


def oldest_proven_backup(host: HostResult) -> datetime | None:
    """When the oldest backup of a whole proven run of ``host`` ended, or None.

    A whole proven run (issue 11, case 7): every configured stage of the host ran (no
    `--stage` subset, no host error), every unit succeeded or was proven `fresh`, and at
    least one unit did. Its time is the end of its oldest backup (a `fresh` unit's own
    earlier run counts with that run's end), not the time the guard finished.
    """
    if host.exit_code is not ExitCode.OK or host.error is not None or host.stage_subset:
        return None
    units = [unit for stage in host.stages for unit in stage.units]
    whole = all(
        stage.outcome in (StageOutcome.SUCCEEDED, StageOutcome.FRESH) for stage in host.stages
    )
    if not units or not whole or not all(unit.outcome.is_success for unit in units):
        return None
    ends = [unit.finished_at for unit in units]
    if any(end is None for end in ends):
        return None
    return min(end for end in ends if end is not None)


def last_success_document(
    report: RunReport, host: HostResult, git_revision: str | None, backups_end: datetime
) -> Json:
    """`last-success.json`: the last whole proven run of this host. `finished_at` (and
    `finished_at_epoch`, which the NixOS module's requireFreshBackup reads) is when the
    oldest backup of that run ended; `guard_finished_at` is when the guard itself ended."""
    return {
        "schema": RECEIPT_SCHEMA,
        "host": host.host,
        "run_id": report.run_id,
        "command": report.command,
        "started_at": time_text(report.started_at),
        "finished_at": time_text(backups_end),
        "finished_at_epoch": int(backups_end.timestamp()),
        "guard_finished_at": time_text(report.finished_at),
        "git_revision": git_revision,
    }


def receipts_to_delete(names: Iterable[str], keep: int) -> list[str]:
    """The receipts beyond the ``keep`` newest (by name: run ids sort by start time). Only
    names of ours are considered: never last-success.json, temporary or foreign files."""
    receipts = sorted(
        name
        for name in names
        if name.endswith(".json") and name != LAST_SUCCESS_NAME and _SAFE_NAME.match(name)
    )
    return receipts[: max(len(receipts) - keep, 0)]


def host_outcome(report: RunReport, host: HostResult) -> str:
    """`DEPLOY_GUARD_OUTCOME`: succeeded, failed, critical, interrupted, or overridden (the
    host failed and the deploy went ahead on an override)."""
    if host.exit_code is not ExitCode.OK and report.override is not None:
        return "overridden"
    match host.exit_code:
        case ExitCode.OK:
            return "succeeded"
        case ExitCode.PARTIAL:
            return "failed"
        case ExitCode.INTERRUPTED:
            return "interrupted"
        case _:
            return "critical"


def journal_message(report: RunReport, host: HostResult) -> str:
    outcome = host_outcome(report, host)
    text = f"deploy-guard {report.command} {report.run_id}: {host.host} {outcome}"
    text += f" (exit {int(host.exit_code)})"
    if host.error:
        text += f": {host.error}"
    failed = [
        unit.unit for stage in host.stages for unit in stage.units if not unit.outcome.is_success
    ]
    if failed:
        text += f"; not succeeded: {', '.join(failed)}"
    if report.override is not None:
        text += f"; override by {report.override.by}: {report.override.reason}"
    return one_line(text)


def _priority(host: HostResult) -> int:
    """syslog priorities: info for a success, warning for a partial failure, else error."""
    if host.exit_code is ExitCode.OK:
        return 6
    return 4 if host.exit_code is ExitCode.PARTIAL else 3


def journal_fields(report: RunReport, host: HostResult, git_revision: str | None) -> list[str]:
    """KEY=VALUE fields of the run's journal entry on ``host`` (each value on one line)."""
    fields = {
        "MESSAGE": journal_message(report, host),
        "PRIORITY": str(_priority(host)),
        "DEPLOY_GUARD_RUN_ID": report.run_id,
        "DEPLOY_GUARD_OUTCOME": host_outcome(report, host),
        "DEPLOY_GUARD_COMMAND": report.command,
        "DEPLOY_GUARD_EXIT_CODE": str(int(host.exit_code)),
    }
    if git_revision:
        fields["DEPLOY_GUARD_GIT_REVISION"] = git_revision
    if report.override is not None:
        fields["DEPLOY_GUARD_OVERRIDE_REASON"] = report.override.reason
    return journal_lines(fields)
