"""What a run leaves behind (issue 7), after real runs on the testbed: the metrics textfile
read back and parsed with prometheus_client, the receipts with their modes and rotation, the
journal entry's fields, and notifications through Apprise to an HTTP server in the test.

The engine runs in-process (as in test_engine_calls.py) and `observe` is called with its
report, the way the CLI calls it after `run`, `apply` and the hook.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy_guard.clock import SystemClock
from deploy_guard.config import Config, parse_config
from deploy_guard.errors import ExitCode
from deploy_guard.guard.engine import HostTarget, RunRequest, run_hosts
from deploy_guard.guard.stage import EngineSettings
from deploy_guard.hosts.targets import connect, resolve_targets
from deploy_guard.model import RunReport
from deploy_guard.observe import receipts
from deploy_guard.observe.report import host_json, time_text
from deploy_guard.observe.run import observe
from deploy_guard.transport.base import Transport
from tests.integration.guard import oneshot
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

TEXTFILE_DIR = "/var/lib/prometheus-node-exporter-text-files"
PROM = f"{TEXTFILE_DIR}/deploy_guard.prom"
RECEIPTS = "/var/lib/deploy-guard/receipts"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ETC = "restic-backups-etc.service"


@dataclass
class Guard:
    """Runs the engine on the testbed's forge and observes the result like the CLI does."""

    config: Config

    @property
    def targets(self) -> tuple[HostTarget, ...]:
        return resolve_targets(self.config, ["forge"])

    def connect(self, target: HostTarget) -> Transport:
        return connect(target, connect_timeout=10)

    def run(self) -> RunReport:
        settings = EngineSettings(poll_interval=0.3, stop_grace=2)
        request = RunRequest("run", self.targets, 4, settings)
        return run_hosts(request, self.connect, SystemClock(), lambda event: None)

    def observe(self, report: RunReport, config: Config | None = None) -> list[str]:
        return observe(report, config or self.config, self.targets, self.connect,
                       git_revision=REVISION)  # fmt: skip


@pytest.fixture
def guard(testbed: Testbed, host: TestHost, monkeypatch: pytest.MonkeyPatch) -> Guard:
    for variable, value in testbed.env().items():
        monkeypatch.setenv(variable, value)
    host.ssh(f"mkdir -p {TEXTFILE_DIR}")
    return Guard(parse_config({"metrics": {"textfile_dir": TEXTFILE_DIR}}))


def break_etc(host: TestHost) -> None:
    """restic-backups-etc fails from now on: the guard exits 1."""
    host.install_unit(ETC, oneshot("echo repository locked >&2; exit 1"))
    host.daemon_reload()


def read_metrics(host: TestHost) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = host.ssh(f"cat {PROM}").stdout
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def unit(name: str, stage: str, unit_name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("stage", stage), ("unit", unit_name)))


def remote_json(host: TestHost, path: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(host.ssh(f"cat {path}").stdout)
    return document


def test_metrics_after_a_success_and_after_a_failure(guard: Guard, host: TestHost) -> None:
    first = guard.run()
    assert first.exit_code is ExitCode.OK

    assert guard.observe(first) == []

    values = read_metrics(host)
    succeeded_at = first.finished_at.timestamp()
    # The last success is the end of the run's oldest backup, not the guard's end (issue 11).
    oldest_backup = receipts.oldest_proven_backup(first.hosts[0])
    assert oldest_backup is not None
    assert values[("deploy_guard_run_last_timestamp_seconds", ())] == succeeded_at
    assert values[("deploy_guard_run_last_success_timestamp_seconds", ())] == (
        oldest_backup.timestamp())  # fmt: skip
    assert values[("deploy_guard_run_exit_code", ())] == 0
    duration = (first.finished_at - first.started_at).total_seconds()
    assert values[("deploy_guard_run_duration_seconds", ())] == pytest.approx(duration)
    successes = {labels[1][1]: value for (name, labels), value in values.items()
                 if name == "deploy_guard_unit_success"}  # fmt: skip
    assert successes == dict.fromkeys(BACKUP_UNITS, 1.0)
    assert values[unit("deploy_guard_unit_duration_seconds", "applications", ETC)] > 0
    etc_success = values[unit("deploy_guard_unit_last_success_timestamp_seconds",
                              "applications", ETC)]  # fmt: skip
    assert first.started_at.timestamp() < etc_success <= succeeded_at
    listing = host.ssh(f"stat -c '%a %n' {TEXTFILE_DIR}/*").stdout.splitlines()
    assert listing == [f"644 {PROM}"]  # node_exporter may read it; no temporary file left

    break_etc(host)
    second = guard.run()
    assert second.exit_code is ExitCode.PARTIAL
    assert guard.observe(second) == []

    values = read_metrics(host)
    assert values[("deploy_guard_run_last_timestamp_seconds", ())] == second.finished_at.timestamp()
    assert values[("deploy_guard_run_last_success_timestamp_seconds", ())] == (
        oldest_backup.timestamp())  # unchanged  # fmt: skip
    assert values[("deploy_guard_run_exit_code", ())] == 1
    assert values[unit("deploy_guard_unit_success", "applications", ETC)] == 0
    assert values[unit("deploy_guard_unit_last_success_timestamp_seconds",
                       "applications", ETC)] == etc_success  # fmt: skip
    home = "restic-backups-home.service"
    assert values[unit("deploy_guard_unit_success", "applications", home)] == 1
    assert values[unit("deploy_guard_unit_last_success_timestamp_seconds",
                       "applications", home)] > succeeded_at  # fmt: skip


def test_receipts_hold_the_hosts_report_and_only_the_guard_user_reads_them(
    guard: Guard, host: TestHost
) -> None:
    first = guard.run()
    assert guard.observe(first) == []

    receipt = remote_json(host, f"{RECEIPTS}/{first.run_id}.json")
    assert receipt["run_id"] == first.run_id
    assert receipt["command"] == "run"
    assert receipt["git_revision"] == REVISION
    assert receipt["exit_code"] == 0
    assert {key: receipt[key] for key in host_json(first.hosts[0])} == host_json(first.hosts[0])
    last = remote_json(host, f"{RECEIPTS}/last-success.json")
    assert last["run_id"] == first.run_id
    assert last["guard_finished_at"] == receipt["finished_at"]
    oldest_backup = receipts.oldest_proven_backup(first.hosts[0])
    assert oldest_backup is not None
    assert last["finished_at"] == time_text(oldest_backup)
    modes = host.ssh(f"stat -c '%a %U %n' {RECEIPTS} {RECEIPTS}/*").stdout.splitlines()
    assert modes == [
        f"700 root {RECEIPTS}",
        f"600 root {RECEIPTS}/{first.run_id}.json",
        f"600 root {RECEIPTS}/last-success.json",
    ]
    denied = host.ssh(f"runuser -u nobody -- cat {RECEIPTS}/last-success.json", check=False)
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr

    break_etc(host)
    second = guard.run()
    assert guard.observe(second) == []

    assert remote_json(host, f"{RECEIPTS}/{second.run_id}.json")["exit_code"] == 1
    assert remote_json(host, f"{RECEIPTS}/last-success.json")["run_id"] == first.run_id


def test_only_the_ten_newest_receipts_are_kept(guard: Guard, host: TestHost) -> None:
    report = guard.run()
    receipts_only = parse_config({"receipts": {"journal": False}})
    run_ids = [f"202611{day:02d}T000000Z-{day:06x}" for day in range(1, 13)]

    for run_id in run_ids:
        assert guard.observe(replace(report, run_id=run_id), receipts_only) == []

    names = host.ssh(f"ls {RECEIPTS}").stdout.split()
    assert names == sorted([f"{run_id}.json" for run_id in run_ids[2:]] + ["last-success.json"])
    assert remote_json(host, f"{RECEIPTS}/last-success.json")["run_id"] == run_ids[-1]


def journal_entries(host: TestHost, run_id: str) -> list[dict[str, Any]]:
    """The host's deploy-guard entries for ``run_id``, waiting a little for the first one
    (journald writes asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        output = host.ssh("journalctl -q -t deploy-guard -o json", check=False).stdout
        entries = [json.loads(line) for line in output.splitlines() if line.strip()]
        entries = [entry for entry in entries if entry.get("DEPLOY_GUARD_RUN_ID") == run_id]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_each_run_is_logged_in_the_hosts_journal_with_its_fields(
    guard: Guard, host: TestHost
) -> None:
    break_etc(host)
    report = guard.run()

    assert guard.observe(report) == []

    (entry,) = journal_entries(host, report.run_id)
    assert entry["SYSLOG_IDENTIFIER"] == "deploy-guard"
    assert entry["DEPLOY_GUARD_OUTCOME"] == "failed"
    assert entry["DEPLOY_GUARD_EXIT_CODE"] == "1"
    assert entry["DEPLOY_GUARD_GIT_REVISION"] == REVISION
    assert entry["PRIORITY"] == "4"
    assert report.run_id in entry["MESSAGE"]
    assert ETC in entry["MESSAGE"]


def test_notification_of_a_real_failed_run_and_a_dead_url_only_warns(
    guard: Guard, host: TestHost, receiver: tuple[int, list[dict[str, Any]]]
) -> None:
    port, received = receiver
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = parse_config({
        "metrics": {"textfile_dir": TEXTFILE_DIR},
        "notify": {"urls": [f"json://127.0.0.1:{dead_port}/", f"json://127.0.0.1:{port}/"]},
    })  # fmt: skip
    break_etc(host)
    report = guard.run()

    warnings = guard.observe(report, config)

    (warning,) = warnings
    assert f"127.0.0.1:{dead_port}" in warning
    assert report.exit_code is ExitCode.PARTIAL  # the verdict is the run's alone
    (payload,) = received
    assert payload["type"] == "failure"
    assert payload["title"] == "deploy-guard run FAILED on forge"
    assert report.run_id in payload["message"]
    assert f"{ETC} (applications): failed" in payload["message"]
    assert "repository locked" in payload["message"]  # the unit's last log line
    # Everything else was still recorded on the host.
    assert remote_json(host, f"{RECEIPTS}/{report.run_id}.json")["exit_code"] == 1
    assert read_metrics(host)[("deploy_guard_run_exit_code", ())] == 1


def test_a_missing_textfile_directory_is_a_warning_and_the_receipt_is_still_written(
    guard: Guard, host: TestHost
) -> None:
    report = guard.run()
    config = parse_config({"metrics": {"textfile_dir": "/nonexistent/textfiles"}})

    warnings = guard.observe(report, config)

    (warning,) = warnings
    assert warning.startswith("forge: metrics not written to /nonexistent/textfiles/")
    # The receipt is this run's, whatever its verdict (one CI run on a loaded machine saw
    # this guard run exit 1; its failures are shown here if it happens again).
    failures = [
        f"{unit.unit}: {unit.outcome.value} {unit.reason} {unit.artifact}"
        for host_result in report.hosts
        for stage in host_result.stages
        for unit in stage.units
        if not unit.outcome.is_success
    ]
    receipt = remote_json(host, f"{RECEIPTS}/{report.run_id}.json")
    assert receipt["exit_code"] == int(report.exit_code), failures
