"""What observe leaves on a host: the Prometheus textfile (read back with prometheus_client's
own parser), the receipts' rotation and documents, the journal fields (pure); the argv-only
atomic file write, run for real on this machine through LocalTransport; and observe's rule
that a failure on a host is a warning that stops nothing else (mocked at the transport seam).
The same, against real hosts: tests/integration/test_observe.py."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath
from unittest.mock import create_autospec

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy_guard.config import Config, parse_config
from deploy_guard.errors import CommandFailed, ExitCode, HostUnreachable
from deploy_guard.guard.engine import HostTarget
from deploy_guard.model import (
    HostResult,
    Outcome,
    Override,
    StageOutcome,
    StageResult,
    UnitResult,
)
from deploy_guard.observe import metrics, receipts
from deploy_guard.observe.metrics import PreviousMetrics, parse_previous, render
from deploy_guard.observe.run import observe
from deploy_guard.systemd import files
from deploy_guard.systemd.files import CHUNK_BYTES, WRITE_SCRIPT, put_file, read_file
from deploy_guard.transport.base import Transport
from deploy_guard.transport.local import LocalTransport
from deploy_guard.transport.process import git_revision
from tests import builders

STARTED = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=95)
EARLIER = STARTED - timedelta(days=1)
RUN_ID = "20261127T101500Z-3f9a1c"

SANOID = UnitResult("sanoid.service", Outcome.SUCCEEDED, started_at=STARTED,
                    finished_at=STARTED + timedelta(seconds=4))  # fmt: skip
RESTIC = UnitResult("restic-backups-home.service", Outcome.SUCCEEDED,
                    started_at=STARTED + timedelta(seconds=5), finished_at=FINISHED)  # fmt: skip
RESTIC_FAILED = replace(RESTIC, outcome=Outcome.FAILED, reason="exit-code")
PGBACKREST_NOT_STARTED = UnitResult("pgbackrest-main-full.service", Outcome.NOT_STARTED)
SNAPSHOTS = StageResult("snapshots", True, StageOutcome.SUCCEEDED, (SANOID,))


def host_result(*units: UnitResult, code: ExitCode = ExitCode.OK) -> HostResult:
    outcome = StageOutcome.SUCCEEDED if code is ExitCode.OK else StageOutcome.FAILED
    applications = builders.stage_result("applications", *units, outcome=outcome)
    return builders.host_result("forge", code, SNAPSHOTS, applications)


run_report = partial(builders.run_report, run_id=RUN_ID, started_at=STARTED, finished_at=FINISHED)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, parsed the way Prometheus' own client parses it."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def unit_key(name: str, stage: str, unit: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("stage", stage), ("unit", unit)))


def test_success_sets_every_metric_from_the_run() -> None:
    host = host_result(RESTIC)

    values = samples(render(run_report(host), host, PreviousMetrics()))

    assert values[(metrics.RUN_LAST, ())] == FINISHED.timestamp()
    # Issue 11, case 7: the end of the oldest backup of the run, not the guard's end.
    assert values[(metrics.RUN_LAST_SUCCESS, ())] == SANOID.finished_at.timestamp()  # type: ignore[union-attr]
    assert values[(metrics.RUN_DURATION, ())] == 95.0
    assert values[(metrics.RUN_EXIT_CODE, ())] == 0
    restic = ("applications", "restic-backups-home.service")
    assert values[unit_key(metrics.UNIT_SUCCESS, *restic)] == 1
    assert values[unit_key(metrics.UNIT_DURATION, *restic)] == 90.0
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *restic)] == FINISHED.timestamp()
    sanoid = ("snapshots", "sanoid.service")
    assert values[unit_key(metrics.UNIT_DURATION, *sanoid)] == 4.0
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *sanoid)] == SANOID.finished_at.timestamp()  # type: ignore[union-attr]


def test_failure_keeps_the_previous_last_success_timestamps() -> None:
    before = render(run_report(host_result(RESTIC)), host_result(RESTIC), PreviousMetrics())
    failed = host_result(RESTIC_FAILED, PGBACKREST_NOT_STARTED, code=ExitCode.PARTIAL)
    later = timedelta(hours=1)
    report = run_report(failed, started_at=STARTED + later, finished_at=FINISHED + later)

    values = samples(render(report, failed, parse_previous(before.decode())))

    assert values[(metrics.RUN_LAST, ())] == (FINISHED + later).timestamp()
    assert values[(metrics.RUN_LAST_SUCCESS, ())] == SANOID.finished_at.timestamp()  # type: ignore[union-attr]
    assert values[(metrics.RUN_EXIT_CODE, ())] == 1
    restic = ("applications", "restic-backups-home.service")
    assert values[unit_key(metrics.UNIT_SUCCESS, *restic)] == 0
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *restic)] == FINISHED.timestamp()
    pgbackrest = ("applications", "pgbackrest-main-full.service")
    assert values[unit_key(metrics.UNIT_SUCCESS, *pgbackrest)] == 0
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *pgbackrest)] == 0  # never
    assert unit_key(metrics.UNIT_DURATION, *pgbackrest) not in values  # it never ran


def test_first_run_failing_reports_never_succeeded_as_zero() -> None:
    failed = host_result(RESTIC_FAILED, code=ExitCode.PARTIAL)

    values = samples(render(run_report(failed), failed, PreviousMetrics()))

    assert values[(metrics.RUN_LAST_SUCCESS, ())] == 0


def test_stages_not_run_keep_their_units_and_units_gone_from_a_run_stage_are_dropped() -> None:
    previous = PreviousMetrics(
        EARLIER.timestamp(),
        {("replication", "syncoid-tank-data.service"): EARLIER.timestamp(),
         ("applications", "restic-backups-removed.service"): EARLIER.timestamp()},
    )  # fmt: skip
    host = host_result(RESTIC)

    values = samples(render(run_report(host), host, previous))

    syncoid = ("replication", "syncoid-tank-data.service")
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *syncoid)] == EARLIER.timestamp()
    assert unit_key(metrics.UNIT_SUCCESS, *syncoid) not in values
    removed = ("applications", "restic-backups-removed.service")
    assert unit_key(metrics.UNIT_LAST_SUCCESS, *removed) not in values


def test_fresh_unit_counts_as_success_at_its_recorded_end() -> None:
    fresh = replace(RESTIC, outcome=Outcome.FRESH, finished_at=EARLIER, started_at=None)
    host = host_result(fresh)

    values = samples(render(run_report(host), host, PreviousMetrics()))

    restic = ("applications", "restic-backups-home.service")
    assert values[unit_key(metrics.UNIT_SUCCESS, *restic)] == 1
    assert values[unit_key(metrics.UNIT_LAST_SUCCESS, *restic)] == EARLIER.timestamp()


def test_label_values_are_escaped_and_read_back() -> None:
    odd = replace(RESTIC, unit='restic-backups-a"b\\c.service')
    host = host_result(odd)

    previous = parse_previous(render(run_report(host), host, PreviousMetrics()).decode())

    assert ("applications", 'restic-backups-a"b\\c.service') in previous.unit_last_success


@pytest.mark.parametrize("text", ["garbage here", 'x{stage="a} 1', "x 1\nx{"])
def test_unparsable_previous_file_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the parser's messages vary by version)
        parse_previous(text)


@pytest.mark.parametrize(
    ("names", "keep", "deleted"),
    [
        ([f"2026112{n}T000000Z-aaaaaa.json" for n in range(5)], 3,
         ["20261120T000000Z-aaaaaa.json", "20261121T000000Z-aaaaaa.json"]),
        (["20261120T000000Z-aaaaaa.json", "last-success.json"], 1, []),
        (["20261120T000000Z-a.json", "20261121T000000Z-b.json.tmp-1234abcd", ".hidden.json",
          "notes.txt", "20261122T000000Z-c.json"], 1, ["20261120T000000Z-a.json"]),
        ([], 10, []),
    ],
    ids=["oldest-first", "last-success-kept", "foreign-files-ignored", "empty"],
)  # fmt: skip
def test_rotation_deletes_only_our_oldest_receipts(
    names: list[str], keep: int, deleted: list[str]
) -> None:
    assert receipts.receipts_to_delete(names, keep) == deleted


@pytest.mark.parametrize("run_id", ["../etc/passwd", ".hidden", "a/b", ""])
def test_unsafe_run_ids_name_no_receipt(run_id: str) -> None:
    with pytest.raises(ValueError, match="not a safe file name"):
        receipts.receipt_name(run_id)


def test_receipt_is_the_hosts_report_with_the_run_and_revision() -> None:
    failed = host_result(RESTIC_FAILED, code=ExitCode.PARTIAL)
    override = Override("ticket #42", "alice", FINISHED)
    report = run_report(failed, override=override, exit_code=ExitCode.OK, command="apply")

    document = receipts.receipt_document(report, failed, "0123abcd" * 5)

    assert document["run_id"] == RUN_ID
    assert document["command"] == "apply"
    assert document["host"] == "forge"
    assert document["exit_code"] == 1  # the host's
    assert document["run_exit_code"] == 0
    assert document["finished_at"] == "2026-11-27T10:16:35.000Z"
    assert document["git_revision"] == "0123abcd" * 5
    assert document["override"]["reason"] == "ticket #42"
    units = [unit["unit"] for stage in document["stages"] for unit in stage["units"]]
    assert units == ["sanoid.service", "restic-backups-home.service"]
    last = receipts.last_success_document(report, failed, None, STARTED)
    assert last["finished_at"] == "2026-11-27T10:15:00.000Z"  # the oldest backup's end
    assert last["finished_at_epoch"] == int(STARTED.timestamp())
    assert last["guard_finished_at"] == "2026-11-27T10:16:35.000Z"


@pytest.mark.parametrize(
    ("code", "override", "outcome", "priority"),
    [
        (ExitCode.OK, False, "succeeded", "6"),
        (ExitCode.PARTIAL, False, "failed", "4"),
        (ExitCode.CRITICAL, False, "critical", "3"),
        (ExitCode.PARTIAL, True, "overridden", "4"),
        (ExitCode.OK, True, "succeeded", "6"),
    ],
)
def test_journal_fields_carry_run_id_and_outcome_on_one_line_each(
    code: ExitCode, override: bool, outcome: str, priority: str
) -> None:
    host = HostResult("forge", code, error="lost\nconnection" if code else None)
    reason = Override("two\nlines", "alice", FINISHED) if override else None
    report = run_report(host, override=reason)

    fields = receipts.journal_fields(report, host, None)

    assert all("\n" not in field for field in fields)
    as_dict = dict(field.split("=", 1) for field in fields)
    assert as_dict["DEPLOY_GUARD_RUN_ID"] == RUN_ID
    assert as_dict["DEPLOY_GUARD_OUTCOME"] == outcome
    assert as_dict["PRIORITY"] == priority
    assert "DEPLOY_GUARD_GIT_REVISION" not in as_dict
    assert as_dict["MESSAGE"].startswith(f"deploy-guard run {RUN_ID}: forge {outcome}")
    argv = files.journal_argv(fields)
    assert argv[:4] == ["sh", "-c", files.JOURNAL_SCRIPT, "sh"]
    assert RUN_ID not in files.JOURNAL_SCRIPT


@pytest.mark.parametrize("size", [0, 10, CHUNK_BYTES, 3 * CHUNK_BYTES + 17])
@pytest.mark.parametrize("private", [True, False])
def test_put_file_writes_any_bytes_atomically_with_the_mode(
    tmp_path: Path, size: int, private: bool
) -> None:
    content = os.urandom(size)
    target = tmp_path / "deploy_guard.prom"
    target.write_text("old")

    put_file(LocalTransport(), PurePosixPath(target), content, private=private)

    assert target.read_bytes() == content
    assert stat.S_IMODE(target.stat().st_mode) == (0o600 if private else 0o644)
    assert [path.name for path in tmp_path.iterdir()] == ["deploy_guard.prom"]


def test_put_file_sends_data_only_as_arguments_of_the_constant_script(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    class Recording(LocalTransport):
        def run(self, argv, *, timeout, check):  # type: ignore[no-untyped-def]
            calls.append(list(argv))
            return super().run(argv, timeout=timeout, check=check)

    path = tmp_path / "it's a $(file) `name`.json"
    put_file(Recording(), PurePosixPath(path), b"x" * (CHUNK_BYTES + 1), private=True)

    assert [call[:4] for call in calls] == [["sh", "-c", WRITE_SCRIPT, "sh"]] * 2
    assert all(len(" ".join(call)) < 100_000 for call in calls)
    assert path.read_bytes() == b"x" * (CHUNK_BYTES + 1)


@pytest.mark.parametrize("where", ["missing-directory", "directory-in-the-way"])
def test_put_file_failure_raises_and_leaves_no_temporary_file(tmp_path: Path, where: str) -> None:
    directory = tmp_path / "textfiles"
    if where == "directory-in-the-way":
        (directory / "deploy_guard.prom").mkdir(parents=True)

    with pytest.raises(CommandFailed):
        put_file(LocalTransport(), PurePosixPath(directory / "deploy_guard.prom"), b"x",
                 private=False)  # fmt: skip

    assert [path.name for path in tmp_path.rglob("*.tmp-*")] == []


def test_read_file_is_none_for_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "present").write_text("text")

    assert read_file(LocalTransport(), PurePosixPath(tmp_path / "present")) == "text"
    assert read_file(LocalTransport(), PurePosixPath(tmp_path / "absent")) is None


def _target(name: str = "forge") -> HostTarget:
    return HostTarget(name, f"root@{name}.lan")


def test_a_host_that_was_never_reached_is_not_tried_again() -> None:
    lost = HostResult("forge", ExitCode.CRITICAL, error="connection refused on forge.lan:22")
    connect = create_autospec(_connect_signature, side_effect=AssertionError("connected"))

    warnings = observe(run_report(lost), Config(), [_target()], connect, git_revision=None)

    assert warnings == []
    connect.assert_not_called()


def test_a_host_gone_after_the_run_is_a_warning_not_an_error() -> None:
    host = host_result(RESTIC)
    gone = HostUnreachable("forge", "no answer from forge.lan:22")
    connect = create_autospec(_connect_signature, side_effect=gone)

    warnings = observe(run_report(host), Config(), [_target()], connect, git_revision=None)

    assert warnings == ["forge: could not record the run on the host: no answer from forge.lan:22"]


def test_a_failing_step_does_not_stop_the_others_and_nothing_raises() -> None:
    host = host_result(RESTIC)
    transport = create_autospec(Transport, instance=True)
    transport.run.side_effect = CommandFailed("forge", ["sh"], 1, "sh: read-only file system")
    config = parse_config({"metrics": {"textfile_dir": "/var/lib/textfiles"}})

    warnings = observe(run_report(host), config, [_target()], lambda target: transport,
                       git_revision=None)  # fmt: skip

    assert [warning.split(":")[1].strip() for warning in warnings] == [
        "metrics not written to /var/lib/textfiles/deploy_guard.prom",
        "receipt not written to /var/lib/deploy-guard/receipts",
        "run not logged in the journal",
    ]
    assert all("read-only file system" in warning for warning in warnings)
    transport.close.assert_called_once_with()


def test_nothing_is_written_when_every_host_write_is_off() -> None:
    config = parse_config({"receipts": {"enabled": False, "journal": False}})
    connect = create_autospec(_connect_signature, side_effect=AssertionError("connected"))

    assert observe(run_report(host_result(RESTIC)), config, [_target()], connect,
                   git_revision=None) == []  # fmt: skip


def _connect_signature(target: HostTarget) -> Transport:
    raise NotImplementedError


def test_git_revision_outside_a_repository_is_none(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None


def test_git_revision_of_a_repository_is_its_head(tmp_path: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    assert git_revision(tmp_path) is None  # no commit yet
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"],
                   check=True, env=env)  # fmt: skip
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip

    assert git_revision(tmp_path) == head


# -- issue 11, case 7: success receipts only for a whole, proven run --------------------------


def test_oldest_proven_backup_is_the_end_of_the_oldest_unit_including_fresh_ones() -> None:
    fresh = UnitResult("restic-backups-etc.service", Outcome.FRESH,
                       finished_at=EARLIER)  # fmt: skip
    host = host_result(RESTIC, fresh)

    assert receipts.oldest_proven_backup(host) == EARLIER
    values = samples(render(run_report(host), host, PreviousMetrics()))
    assert values[(metrics.RUN_LAST_SUCCESS, ())] == EARLIER.timestamp()


@pytest.mark.parametrize(
    "host",
    [
        replace(host_result(RESTIC), stage_subset=True),  # --stage ran only some stages
        HostResult("forge", ExitCode.OK, ()),  # nothing ran
        replace(host_result(RESTIC), error="no backup unit found on forge"),
        host_result(RESTIC_FAILED, code=ExitCode.PARTIAL),
        HostResult(
            "forge",
            ExitCode.OK,
            (
                SNAPSHOTS,
                StageResult(
                    "applications",
                    False,
                    StageOutcome.SUCCEEDED,
                    (replace(RESTIC, finished_at=None),),
                ),
            ),
        ),
    ],
    ids=["stage-subset", "no-stage", "host-error", "failed-unit", "no-end-time"],
)
def test_no_success_receipt_or_metric_without_a_whole_proven_run(host: HostResult) -> None:
    previous = PreviousMetrics(run_last_success=EARLIER.timestamp())

    assert receipts.oldest_proven_backup(host) is None
    values = samples(render(run_report(host), host, previous))
    assert values[(metrics.RUN_LAST_SUCCESS, ())] == EARLIER.timestamp()
