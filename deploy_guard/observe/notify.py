"""Notifications of run results through Apprise (ntfy, Discord, email, Gotify, JSON webhooks).

Which runs are notified and what the message says are pure functions of the report; `send`
is the only I/O. Apprise is an optional extra (`deploy-guard[notify]`), imported only when a
URL is configured. A notification that cannot be delivered is a warning, never a verdict.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, assert_never

from deploy_guard.config import Config
from deploy_guard.errors import ConfigError, ExitCode, describe_exception
from deploy_guard.model import HostResult, RunReport, UnitResult

log = logging.getLogger(__name__)

APPRISE_LOGGER: Final = "apprise"
INSTALL_HINT: Final = "pip install 'deploy-guard[notify]'"
# Long messages are cut: chat services truncate or reject them, and the report has it all.
MAX_UNITS_PER_HOST: Final = 10
MAX_HOSTS_IN_TITLE: Final = 5
# systemd's own job messages about a unit (systemd 252..256), as they appear in a log tail.
SYSTEMD_PREFIXES: Final = ("Failed to start ", "Starting ", "Started ", "Stopping ", "Stopped ")


class NotifyEvent(StrEnum):
    """What a run was, for `[notify] on`."""

    FAILURE = "failure"
    OVERRIDE = "override"
    SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class Message:
    """One notification: ``kind`` picks Apprise's type (failure, warning, success)."""

    kind: NotifyEvent
    title: str
    body: str


def run_failed(report: RunReport) -> bool:
    """Any host or the deploy did not succeed (an override does not make a run green)."""
    return report.exit_code is not ExitCode.OK or any(
        host.exit_code is not ExitCode.OK for host in report.hosts
    )


def run_events(report: RunReport) -> frozenset[NotifyEvent]:
    """Every event the run is: failure or success, plus override when it was overridden."""
    events = {NotifyEvent.FAILURE if run_failed(report) else NotifyEvent.SUCCESS}
    if report.override is not None:
        events.add(NotifyEvent.OVERRIDE)
    return frozenset(events)


def should_notify(report: RunReport, on: Collection[str]) -> bool:
    """One message per run, when any of its events is in ``on``."""
    return any(event.value in on for event in run_events(report))


def _names(hosts: Sequence[str]) -> str:
    shown = ", ".join(hosts[:MAX_HOSTS_IN_TITLE])
    more = len(hosts) - MAX_HOSTS_IN_TITLE
    return f"{shown} and {more} more" if more > 0 else shown or "no host"


def message_kind(report: RunReport) -> NotifyEvent:
    if report.override is not None:
        return NotifyEvent.OVERRIDE
    return NotifyEvent.FAILURE if run_failed(report) else NotifyEvent.SUCCESS


def _title(report: RunReport, kind: NotifyEvent) -> str:
    failed = [host.host for host in report.hosts if host.exit_code is not ExitCode.OK]
    every = [host.host for host in report.hosts]
    match kind:
        case NotifyEvent.OVERRIDE:
            return f"deploy-guard {report.command} OVERRIDDEN on {_names(failed or every)}"
        case NotifyEvent.FAILURE:
            return f"deploy-guard {report.command} FAILED on {_names(failed or every)}"
        case NotifyEvent.SUCCESS:
            return f"deploy-guard {report.command} succeeded on {_names(every)}"
        case _:
            assert_never(kind)


def _last_output_line(unit: UnitResult) -> str | None:
    """The run's own last words: the log tail ends with systemd's messages about the run
    ("X.service: Failed with result 'exit-code'.", "Failed to start ..."), which the reason
    already says; the line before them is the program's error."""
    for line in reversed(unit.log_tail):
        if line.strip() and not line.startswith((f"{unit.unit}: ", *SYSTEMD_PREFIXES)):
            return line.strip()
    return None


def _host_lines(host: HostResult) -> list[str]:
    if host.exit_code is ExitCode.OK:
        count = sum(len(stage.units) for stage in host.stages)
        return [f"{host.host}: ok, {count} unit{'s' if count != 1 else ''} succeeded"]
    lines = [f"{host.host}: exit {int(host.exit_code)}" + (f": {host.error}" if host.error else "")]
    failed = [
        (stage.name, unit)
        for stage in host.stages
        for unit in stage.units
        if not unit.outcome.is_success
    ]
    for stage_name, unit in failed[:MAX_UNITS_PER_HOST]:
        line = f"  - {unit.unit} ({stage_name}): {unit.outcome.value}"
        if unit.reason:
            line += f": {unit.reason}"
        output = _last_output_line(unit)
        if output:
            line += f" | {output}"
        lines.append(line)
    if len(failed) > MAX_UNITS_PER_HOST:
        lines.append(f"  ... and {len(failed) - MAX_UNITS_PER_HOST} more")
    return lines


def _deploy_line(report: RunReport) -> str | None:
    deploy = report.deploy
    if deploy is None:
        return None
    if deploy.refused:
        return f"deploy ({deploy.tool}): refused, nothing deployed"
    code = deploy.exit_code
    status = "not run" if code is None else f"exit {code}"
    line = f"deploy ({deploy.tool}) of {_names(list(deploy.deployed_hosts))}: {status}"
    if deploy.skipped_hosts:
        line += f"; skipped: {', '.join(deploy.skipped_hosts)}"
    return line


def build_message(report: RunReport) -> Message:
    """The notification for ``report``: the hosts, each failed unit with its reason and last
    log line, the run id, the override (reason and who) and the deploy's outcome."""
    kind = message_kind(report)
    lines = [f"run {report.run_id} ({report.command}), exit code {int(report.exit_code)}"]
    if report.override is not None:
        lines.append(f"override by {report.override.by}: {report.override.reason}")
    for host in report.hosts:
        lines += _host_lines(host)
    deploy = _deploy_line(report)
    if deploy:
        lines.append(deploy)
    return Message(kind, _title(report, kind), "\n".join(lines))


def check_notify_available(config: Config, path: Path | None = None) -> None:
    """Refuse `[notify] urls` that cannot work: Apprise missing, or a URL it does not know.

    Raises:
        ConfigError: Apprise is not installed, or some URLs are not Apprise URLs.
    """
    urls = config.notify.urls
    if not urls:
        return
    if importlib.util.find_spec("apprise") is None:
        raise ConfigError(
            path, [f"notify.urls: needs Apprise, which is not installed: {INSTALL_HINT}"]
        )
    import apprise  # noqa: PLC0415 (optional, and slow to import)

    problems = []
    with _apprise_logs():
        for index, url in enumerate(urls):
            # The URL itself is not repeated: it usually holds a token or password.
            if apprise.Apprise.instantiate(url) is None:
                problems.append(f"notify.urls.{index}: not a URL Apprise supports")
    if problems:
        raise ConfigError(path, problems)


class _Collected(logging.Handler):
    """Apprise says why a delivery failed only in its log; keep those lines for the warning."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _apprise_logs() -> Iterator[_Collected]:
    """Collect Apprise's warnings; they become ours, so they are not printed twice (unless
    --debug asked for everything)."""
    logger = logging.getLogger(APPRISE_LOGGER)
    handler = _Collected()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = logger.isEnabledFor(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _notify_type(kind: NotifyEvent) -> str:
    match kind:
        case NotifyEvent.FAILURE:
            return "failure"
        case NotifyEvent.OVERRIDE:
            return "warning"
        case NotifyEvent.SUCCESS:
            return "success"
        case _:
            assert_never(kind)


def send(urls: Sequence[str], message: Message) -> list[str]:
    """Deliver ``message`` to each URL on its own, so that one dead service is named alone.

    Returns the warnings (a URL shown with its secrets masked). Never raises.
    """
    try:
        import apprise  # noqa: PLC0415 (optional, and slow to import)
    except ImportError:
        return [f"notifications not sent: Apprise is not installed ({INSTALL_HINT})"]
    warnings = []
    for index, url in enumerate(urls):
        with _apprise_logs() as logs:
            try:
                service = apprise.Apprise.instantiate(url)
                if service is None:
                    warnings.append(f"notify.urls.{index}: not a URL Apprise supports")
                    continue
                client = apprise.Apprise()
                client.add(service)
                delivered = bool(
                    client.notify(
                        body=message.body,
                        title=message.title,
                        notify_type=_notify_type(message.kind),
                        body_format=apprise.NotifyFormat.TEXT,
                    )
                )
                # Secrets masked; the query (Apprise's defaults, maybe a token) left out.
                shown = str(service.url(privacy=True)).partition("?")[0]  # type: ignore[no-untyped-call]
            except Exception as exc:  # a notifier's bug must not end the run: a warning
                log.debug("notification %d failed", index, exc_info=True)
                warnings.append(
                    f"notification {index + 1} could not be sent: {describe_exception(exc)}"
                )
                continue
        if not delivered:
            reason = "; ".join(logs.messages[-2:]) or "Apprise gave no reason"
            warnings.append(f"notification to {shown} was not delivered: {reason}")
    return warnings
