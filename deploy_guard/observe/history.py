"""Past runs, read back from the saved reports (STATE/runs/RUN_ID.json) and the audit log.

Reading never fails as a whole: a file or line that cannot be read or understood is skipped
and named in the returned warnings. An override in the audit log is joined to its run by run
id; an audit line whose report is gone still appears, as a run without a report.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from deploy_guard.deploy.override import AUDIT_FILE
from deploy_guard.model import Failure
from deploy_guard.observe.report import run_failures

RUNS_DIRECTORY: Final = "runs"


@dataclass(frozen=True, slots=True)
class OverrideEntry:
    """An override of one run: from its report, the audit log, or both (``audited``)."""

    reason: str
    by: str
    at: datetime | None
    audited: bool


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One past run. ``command`` and ``exit_code`` are None when only the audit log knows it."""

    run_id: str
    command: str | None
    started_at: datetime
    finished_at: datetime | None
    hosts: tuple[str, ...]
    exit_code: int | None
    deployed: bool  # apply: the deploy command ran and exited 0
    override: OverrideEntry | None
    failures: tuple[Failure, ...]
    report: Path | None


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field} is not an ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(document: dict[str, Any], field: str) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise ValueError(f"{field} is missing or not a string")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def entry_from_report(document: Any, path: Path | None = None) -> HistoryEntry:
    """A saved report (`report.run_json`) as a history entry.

    Raises:
        ValueError: the document lacks a field history needs, or has it in the wrong type.
    """
    document = _object(document, "the report")
    code = document.get("exit_code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ValueError("exit_code is missing or not an integer")
    hosts = document.get("hosts")
    if not isinstance(hosts, list):
        raise ValueError("hosts is missing or not a list")
    hosts = [_object(host, "a host") for host in hosts]
    names = tuple(_text(host, "host") for host in hosts)
    finished = document.get("finished_at")
    override = document.get("override")
    deploy = document.get("deploy")
    return HistoryEntry(
        run_id=_text(document, "run_id"),
        command=_text(document, "command"),
        started_at=_time(document.get("started_at"), "started_at"),
        finished_at=_time(finished, "finished_at") if finished is not None else None,
        hosts=names,
        exit_code=code,
        deployed=isinstance(deploy, dict) and deploy.get("exit_code") == 0,
        override=_override(override, audited=False) if override is not None else None,
        failures=tuple(run_failures(hosts)),
        report=path,
    )


def _override(value: Any, *, audited: bool) -> OverrideEntry:
    override = _object(value, "override")
    at = override.get("at")
    return OverrideEntry(
        _text(override, "reason"),
        _text(override, "by"),
        _time(at, "override.at") if at is not None else None,
        audited,
    )


def read_reports(runs: Path) -> tuple[list[HistoryEntry], list[str]]:
    """Every saved report in ``runs``; the unreadable ones become warnings."""
    entries, warnings = [], []
    try:
        paths = sorted(runs.glob("*.json"))
    except OSError as exc:
        return [], [f"cannot list {runs}: {exc.strerror}"]
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            entries.append(entry_from_report(document, path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            warnings.append(f"skipped {path}: {reason}")
    return entries, warnings


def entry_from_audit(line: str) -> HistoryEntry:
    """One audit.jsonl line (`apply.OverrideRecord.audit_line`) as a run without a report.

    Raises:
        ValueError: not JSON, or a field history needs is missing or of the wrong type.
    """
    record = _object(json.loads(line), "the line")
    hosts = record.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
        raise ValueError("hosts is missing or not a list of names")
    at = _time(record.get("at"), "at")
    failures = record.get("failures")
    failures = failures if isinstance(failures, list) else []
    override = OverrideEntry(_text(record, "reason"), _text(record, "user"), at, audited=True)
    return HistoryEntry(
        run_id=_text(record, "run_id"),
        command=None,
        started_at=at,
        finished_at=None,
        hosts=tuple(hosts),
        exit_code=None,
        deployed=False,
        override=override,
        failures=tuple(f for f in failures if isinstance(f, dict)),
        report=None,
    )


def read_audit(path: Path) -> tuple[list[HistoryEntry], list[str]]:
    """Every override in the audit log; a missing log is no override, bad lines are warnings."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"cannot read {path}: {exc.strerror}"]
    entries, warnings = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(entry_from_audit(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            warnings.append(f"skipped {path} line {number}: {exc}")
    return entries, warnings


def merge(reports: Iterable[HistoryEntry], audit: Iterable[HistoryEntry]) -> list[HistoryEntry]:
    """Join each audit record to its run's report; newest first (then by run id)."""
    by_run = {entry.run_id: entry for entry in reports}
    for record in audit:
        entry = by_run.get(record.run_id)
        if entry is None:
            by_run[record.run_id] = record
        elif entry.override is None:
            by_run[record.run_id] = replace(entry, override=record.override)
        else:
            by_run[record.run_id] = replace(entry, override=replace(entry.override, audited=True))
    return sorted(by_run.values(), key=lambda e: (e.started_at, e.run_id), reverse=True)


def load_history(state_directory: Path) -> tuple[list[HistoryEntry], list[str]]:
    """Every past run under ``state_directory`` (`report.state_dir`), newest first."""
    reports, report_warnings = read_reports(state_directory / RUNS_DIRECTORY)
    audit, audit_warnings = read_audit(state_directory / AUDIT_FILE)
    return merge(reports, audit), report_warnings + audit_warnings


def select(entries: Sequence[HistoryEntry], hosts: Sequence[str], limit: int) -> list[HistoryEntry]:
    """The entries that guarded one of ``hosts`` (names or globs; none: all), at most
    ``limit`` of them (0: no limit)."""
    chosen = [
        entry
        for entry in entries
        if not hosts
        or any(fnmatch.fnmatchcase(name, pattern) for name in entry.hosts for pattern in hosts)
    ]
    return chosen[:limit] if limit else chosen
