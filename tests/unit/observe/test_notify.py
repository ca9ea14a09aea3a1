"""Notifications: which runs are notified, what the message says, and delivery through a real
Apprise `json://` URL to an HTTP server in the test (and to a dead one: a warning, no more)."""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from deploy_guard.config import Config, parse_config
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.guard.engine import HostTarget
from deploy_guard.model import (
    DeployOutcome,
    DeployStep,
    HostResult,
    Outcome,
    Override,
    RunReport,
    StageOutcome,
    StageResult,
    UnitResult,
)
from deploy_guard.observe import notify
from deploy_guard.observe.notify import NotifyEvent
from deploy_guard.observe.run import observe
from deploy_guard.transport.base import Transport
from tests import builders

STARTED = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
FINISHED = STARTED + timedelta(minutes=16)
RUN_ID = "20261127T101500Z-3f9a1c"
BROKEN = UnitResult(
    "restic-backups-home.service", Outcome.FAILED, result="exit-code", exit_status=1,
    log_tail=("open repository", "Fatal: unable to open repository at /srv/restic",
              "restic-backups-home.service: Main process exited, code=exited, status=1/FAILURE",
              "restic-backups-home.service: Failed with result 'exit-code'.",
              "Failed to start restic-backups-home.service."),
    reason="the run failed (systemd result exit-code, status 1)",
)  # fmt: skip
GOOD = UnitResult("sanoid.service", Outcome.SUCCEEDED)
FORGE_OK = HostResult(
    "forge", ExitCode.OK, (StageResult("snapshots", True, StageOutcome.SUCCEEDED, (GOOD,)),)
)
FORGE_FAILED = HostResult(
    "forge",
    ExitCode.PARTIAL,
    (
        StageResult("snapshots", True, StageOutcome.SUCCEEDED, (GOOD,)),
        StageResult("applications", False, StageOutcome.FAILED, (BROKEN,)),
    ),
)
DB_LOST = HostResult("db-1", ExitCode.CRITICAL, error="connection refused on 10.0.0.7:22")
OVERRIDE = Override("restic repo is being migrated, ticket #42", "alice", FINISHED)


run_report = partial(builders.run_report, run_id=RUN_ID, started_at=STARTED, finished_at=FINISHED)


SUCCESS = run_report(FORGE_OK)
FAILURE = run_report(FORGE_FAILED, DB_LOST)
OVERRIDDEN = run_report(FORGE_FAILED, command="apply", override=OVERRIDE, exit_code=ExitCode.OK)
DEPLOY_FAILED = run_report(
    FORGE_OK, command="apply", exit_code=ExitCode.DEPLOY_FAILED,
    deploy=DeployOutcome("nixos-rebuild", (DeployStep(("nixos-rebuild",), ("forge",), 1),),
                         ("forge",)),
)  # fmt: skip


@pytest.mark.parametrize(
    ("report", "events"),
    [
        (SUCCESS, {NotifyEvent.SUCCESS}),
        (FAILURE, {NotifyEvent.FAILURE}),
        (OVERRIDDEN, {NotifyEvent.FAILURE, NotifyEvent.OVERRIDE}),
        (DEPLOY_FAILED, {NotifyEvent.FAILURE}),
        (run_report(FORGE_OK, exit_code=ExitCode.INTERRUPTED), {NotifyEvent.FAILURE}),
    ],
    ids=["success", "failure", "override", "deploy-failed", "interrupted"],
)
def test_run_events_follow_hosts_and_deploy(report: RunReport, events: set[NotifyEvent]) -> None:
    assert notify.run_events(report) == events


@pytest.mark.parametrize(
    ("report", "on", "expected"),
    [
        (SUCCESS, ["failure", "override"], False),
        (SUCCESS, ["success"], True),
        (FAILURE, ["failure", "override"], True),
        (FAILURE, ["override"], False),
        (OVERRIDDEN, ["override"], True),
        (OVERRIDDEN, ["success"], False),
    ],
)
def test_only_runs_named_in_on_are_notified(
    report: RunReport, on: list[str], expected: bool
) -> None:
    assert notify.should_notify(report, on) is expected


def test_default_on_is_failure_and_override() -> None:
    assert Config().notify.on == ["failure", "override"]


def test_failure_message_names_hosts_failed_units_reasons_and_run_id() -> None:
    message = notify.build_message(FAILURE)

    assert message.kind is NotifyEvent.FAILURE
    assert message.title == "deploy-guard run FAILED on forge, db-1"
    assert RUN_ID in message.body
    assert "restic-backups-home.service (applications): failed" in message.body
    assert "the run failed (systemd result exit-code, status 1)" in message.body
    assert "Fatal: unable to open repository at /srv/restic" in message.body
    assert "Failed to start" not in message.body
    assert "db-1: exit 2: connection refused on 10.0.0.7:22" in message.body
    assert "sanoid.service" not in message.body  # succeeded units are not listed


def test_override_message_gives_reason_and_who() -> None:
    message = notify.build_message(OVERRIDDEN)

    assert message.kind is NotifyEvent.OVERRIDE
    assert message.title == "deploy-guard apply OVERRIDDEN on forge"
    assert "override by alice: restic repo is being migrated, ticket #42" in message.body
    assert "restic-backups-home.service" in message.body


def test_success_and_deploy_lines() -> None:
    assert notify.build_message(SUCCESS).title == "deploy-guard run succeeded on forge"
    assert "forge: ok, 1 unit succeeded" in notify.build_message(SUCCESS).body
    body = notify.build_message(DEPLOY_FAILED).body
    assert "deploy (nixos-rebuild) of forge: exit 1" in body


def test_many_failed_units_are_cut_short() -> None:
    units = tuple(replace(BROKEN, unit=f"restic-backups-{n}.service") for n in range(25))
    stage = StageResult("applications", False, StageOutcome.FAILED, units)
    host = HostResult("forge", ExitCode.PARTIAL, (stage,))

    body = notify.build_message(run_report(host)).body

    assert "restic-backups-9.service" in body
    assert "restic-backups-10.service" not in body
    assert "... and 15 more" in body


def test_no_urls_needs_no_apprise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    notify.check_notify_available(Config())


def test_url_without_apprise_installed_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    config = parse_config({"notify": {"urls": ["ntfy://ntfy.sh/backups"]}})

    with pytest.raises(ConfigError) as raised:
        notify.check_notify_available(config)

    assert raised.value.exit_code is ExitCode.CONFIG
    assert "deploy-guard[notify]" in str(raised.value)


def test_unknown_url_scheme_is_a_configuration_error_without_echoing_the_url() -> None:
    config = parse_config({"notify": {"urls": ["ntfy://ntfy.sh/ok", "nosuch://user:hunter2@x"]}})

    with pytest.raises(ConfigError) as raised:
        notify.check_notify_available(config)

    assert raised.value.errors == ("notify.urls.1: not a URL Apprise supports",)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "body",
    [{"notify": {"urls": [""]}}, {"notify": {"on": ["always"]}}, {"notify": {"url": "x"}}],
)
def test_bad_notify_tables_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(body)


@pytest.fixture
def dead_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _no_connection(target: HostTarget) -> Transport:
    raise AssertionError(f"observe connected to {target.name}")


def _notify_only(*urls: str, on: tuple[str, ...] = ("failure", "override")) -> Config:
    return parse_config({"notify": {"urls": list(urls), "on": list(on)}})


def test_notification_reaches_a_json_webhook_with_the_run(
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    port, received = receiver

    warnings = observe(FAILURE, _notify_only(f"json://127.0.0.1:{port}/hook"), [],
                       _no_connection, git_revision=None)  # fmt: skip

    assert warnings == []
    (payload,) = received
    assert payload["title"] == "deploy-guard run FAILED on forge, db-1"
    assert payload["type"] == "failure"
    assert RUN_ID in payload["message"]
    assert "restic-backups-home.service (applications): failed" in payload["message"]


def test_override_is_sent_as_a_warning_and_success_only_when_asked(
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    port, received = receiver
    url = f"json://127.0.0.1:{port}/"

    observe(OVERRIDDEN, _notify_only(url), [], _no_connection, git_revision=None)
    observe(SUCCESS, _notify_only(url), [], _no_connection, git_revision=None)
    observe(SUCCESS, _notify_only(url, on=("success",)), [], _no_connection, git_revision=None)

    assert [payload["type"] for payload in received] == ["warning", "success"]
    assert "ticket #42" in received[0]["message"]


def test_dead_url_is_a_warning_with_masked_secret_and_the_others_still_get_it(
    receiver: tuple[int, list[dict[str, Any]]], dead_port: int
) -> None:
    port, received = receiver
    dead = f"json://user:hunter2@127.0.0.1:{dead_port}/"
    config = _notify_only(dead, f"json://127.0.0.1:{port}/")

    warnings = observe(FAILURE, config, [], _no_connection, git_revision=None)

    (warning,) = warnings
    assert "was not delivered" in warning
    assert f"127.0.0.1:{dead_port}" in warning
    assert "hunter2" not in warning
    assert len(received) == 1


def test_send_without_apprise_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "apprise", None)

    warnings = notify.send(["json://127.0.0.1:1/"], notify.build_message(FAILURE))

    assert warnings == [
        "notifications not sent: Apprise is not installed (pip install 'deploy-guard[notify]')"
    ]
