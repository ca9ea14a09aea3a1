"""After a run: notifications, and on each host the metrics textfile, a receipt and a journal
entry. The CLI calls `observe` once the report is final; it never raises for a failure here,
it returns warnings: a notifier or metrics failure is never a verdict (STYLE, "Errors").

Files and the journal entry are written on hosts by `systemd.files`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploy_guard.config import Config
from deploy_guard.errors import (
    DeployGuardError,
    TransportError,
    describe_exception,
    internal_error,
)
from deploy_guard.guard.engine import HostTarget, in_parallel
from deploy_guard.model import HostResult, RunReport
from deploy_guard.observe import metrics, notify, receipts
from deploy_guard.observe.report import dumps
from deploy_guard.systemd import files
from deploy_guard.transport.base import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observation:
    """What every per-host job needs to know about the run."""

    report: RunReport
    config: Config
    git_revision: str | None


def _reason(exc: DeployGuardError) -> str:
    return exc.reason if isinstance(exc, TransportError) else str(exc)


def write_metrics(transport: Transport, host: HostResult, observation: Observation) -> list[str]:
    """Replace deploy_guard.prom, keeping the previous file's last-success timestamps."""
    assert observation.config.metrics is not None
    path = PurePosixPath(observation.config.metrics.textfile_dir) / metrics.TEXTFILE_NAME
    warnings = []
    try:
        text = files.read_file(transport, path)
        previous = metrics.PreviousMetrics()
        if text:
            try:
                previous = metrics.parse_previous(text)
            except ValueError as exc:
                warnings.append(
                    f"{host.host}: the previous {path} could not be read ({exc}); "
                    "its last-success timestamps start over"
                )
        content = metrics.render(observation.report, host, previous)
        files.put_file(transport, path, content, private=False)
    except DeployGuardError as exc:
        warnings.append(f"{host.host}: metrics not written to {path}: {_reason(exc)}")
    return warnings


def write_receipts(transport: Transport, host: HostResult, observation: Observation) -> list[str]:
    """RUN_ID.json, last-success.json when the host succeeded, then rotation; the directory
    is made 0700 and the files 0600 (readable by the guard's user only)."""
    report, revision = observation.report, observation.git_revision
    directory = PurePosixPath(receipts.RECEIPTS_DIRECTORY)
    try:
        name = receipts.receipt_name(report.run_id)
        files.make_directory(transport, directory, "0700")
        document = receipts.receipt_document(report, host, revision)
        files.put_file(transport, directory / name, dumps(document).encode(), private=True)
        backups_end = receipts.oldest_proven_backup(host)
        if backups_end is not None:  # a whole proven run only (issue 11, case 7)
            document = receipts.last_success_document(report, host, revision, backups_end)
            last = directory / receipts.LAST_SUCCESS_NAME
            files.put_file(transport, last, dumps(document).encode(), private=True)
        listing = files.list_directory(transport, directory)
        old = receipts.receipts_to_delete(listing, observation.config.receipts.keep)
        if old:
            files.remove_files(transport, (directory / item for item in old))
    except (DeployGuardError, ValueError) as exc:
        reason = _reason(exc) if isinstance(exc, DeployGuardError) else str(exc)
        return [f"{host.host}: receipt not written to {directory}: {reason}"]
    return []


def log_in_journal(transport: Transport, host: HostResult, observation: Observation) -> list[str]:
    """One entry: SYSLOG_IDENTIFIER=deploy-guard, DEPLOY_GUARD_RUN_ID, DEPLOY_GUARD_OUTCOME."""
    fields = receipts.journal_fields(observation.report, host, observation.git_revision)
    try:
        files.log_in_journal(transport, fields)
    except DeployGuardError as exc:
        return [f"{host.host}: run not logged in the journal: {_reason(exc)}"]
    return []


def _host_steps(config: Config) -> list[Callable[[Transport, HostResult, Observation], list[str]]]:
    steps: list[Callable[[Transport, HostResult, Observation], list[str]]] = []
    if config.metrics is not None:
        steps.append(write_metrics)
    if config.receipts.enabled:
        steps.append(write_receipts)
    if config.receipts.journal:
        steps.append(log_in_journal)
    return steps


def observe_host(
    target: HostTarget,
    host: HostResult,
    connect: Callable[[HostTarget], Transport],
    observation: Observation,
) -> list[str]:
    """Every write on one host, over one connection. Never raises."""
    steps = _host_steps(observation.config)
    if not steps or (host.error is not None and not host.stages):
        # Nothing to write, or the host could not even be planned (most often unreachable):
        # trying again would only wait for the same timeout.
        return []
    try:
        transport = connect(target)
    except DeployGuardError as exc:
        return [f"{host.host}: could not record the run on the host: {_reason(exc)}"]
    except Exception as exc:
        log.debug("%s: internal error while connecting", host.host, exc_info=True)
        return [f"{host.host}: could not record the run on the host: {describe_exception(exc)}"]
    warnings: list[str] = []
    try:
        for step in steps:
            try:
                warnings += step(transport, host, observation)
            except Exception as exc:  # a bug here must not hide the other steps' work
                log.debug("%s: internal error in %s", host.host, step.__name__, exc_info=True)
                warnings.append(f"{host.host}: {step.__name__}: {internal_error(exc)}")
    finally:
        try:
            transport.close()
        except Exception:
            log.debug("%s: closing failed", host.host, exc_info=True)
    return warnings


def notify_run(report: RunReport, config: Config) -> list[str]:
    """Send the run's notification when `[notify] on` asks for it. Never raises."""
    if not config.notify.urls or not notify.should_notify(report, config.notify.on):
        return []
    try:
        return notify.send(config.notify.urls, notify.build_message(report))
    except Exception as exc:
        log.debug("notification failed", exc_info=True)
        return [f"notification not sent: {internal_error(exc)}"]


def observe(
    report: RunReport,
    config: Config,
    targets: Sequence[HostTarget],
    connect: Callable[[HostTarget], Transport],
    *,
    git_revision: str | None,
) -> list[str]:
    """Send the notification and, on each host of the report, write the metrics, the receipt
    and the journal entry; all at once (hosts in parallel, as in the run). Hosts are matched
    to ``targets`` by name. Returns the warnings, the notification's first; never raises for
    anything that goes wrong here (KeyboardInterrupt still goes through).
    """
    observation = Observation(report, config, git_revision)
    by_name = {target.name: target for target in targets}
    jobs: list[Callable[[], list[str]]] = [functools.partial(notify_run, report, config)]
    for host in report.hosts:
        target = by_name.get(host.host)
        if target is None:
            log.debug("%s: no target, nothing recorded on the host", host.host)
            continue
        jobs.append(functools.partial(observe_host, target, host, connect, observation))
    try:
        results = in_parallel(jobs, config.parallel + 1)
    except Exception as exc:  # the jobs catch everything; this is a last line of defence
        log.debug("observe failed", exc_info=True)
        return [f"observability: {internal_error(exc)}"]
    return [warning for warnings in results for warning in warnings]
