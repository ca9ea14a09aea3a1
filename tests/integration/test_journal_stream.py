"""`journalctl --follow` through the SSH transport on real systemd 252 (issue 15): it pushes
the first matching message after the cursor (no --after-cursor skip), and closing the
stream ends journalctl on the host (nothing is left behind without a pty)."""

from __future__ import annotations

import time

from deploy_guard.clock import SystemClock
from deploy_guard.guard.stage import EngineSettings, StageContext, run_stage
from deploy_guard.model import Outcome, StagePlan
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import JournalEntry
from deploy_guard.transport.base import CommandResult
from tests.testbed.host import TestHost

UNIT = "stream-probe.service"


def _followers(host: TestHost) -> list[str]:
    found = host.ssh("pgrep -a journalctl || true").stdout
    return [line for line in found.splitlines() if "--follow" in line]


def test_the_stream_pushes_a_runs_messages_from_the_cursor_and_ends_on_close(
    host: TestHost, client: SystemdClient
) -> None:
    host.install_unit(UNIT, "[Service]\nType=oneshot\nExecStart=/bin/sleep 1\n")
    host.daemon_reload()
    cursor = client.journal_cursor()
    follow = client.follow_journal(cursor, [UNIT])
    assert follow is not None
    client.start([UNIT])
    entries: list[JournalEntry] = []
    for _ in range(120):  # journald writes asynchronously; a bound, not a timing assertion
        got = follow.wait(0.5)
        assert got is not None, "the stream broke"
        entries += got
        if any(entry.unit_result or entry.message_id.startswith("7ad2") for entry in entries):
            break
    messages = [entry.message for entry in entries]
    assert any("Starting" in message for message in messages), messages  # the first match
    assert any("Deactivated successfully" in message for message in messages), messages
    assert _followers(host), "journalctl --follow should run while the stream is open"

    follow.close()

    for _ in range(50):
        if not _followers(host):
            break
        time.sleep(0.2)
    assert _followers(host) == []


class _CountingShows:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.shows: list[tuple[str, ...]] = []
        self.streams = 0

    @property
    def host(self) -> str:
        return self.inner.host  # type: ignore[attr-defined,no-any-return]

    def run(self, argv: list[str], *, timeout: float, check: bool) -> CommandResult:
        if "show" in argv:
            self.shows.append(tuple(argv))
        return self.inner.run(argv, timeout=timeout, check=check)  # type: ignore[attr-defined,no-any-return]

    def open_stream(self, argv: list[str]) -> object:
        self.streams += 1
        return self.inner.open_stream(argv)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_a_stage_on_a_real_host_is_watched_by_its_stream_not_by_polling(
    host: TestHost, client: SystemdClient
) -> None:
    short, long = "stream-short.service", "stream-long.service"
    host.install_unit(short, "[Service]\nType=oneshot\nExecStart=/bin/sleep 1\n")
    host.install_unit(long, "[Service]\nType=oneshot\nExecStart=/bin/sleep 4\n")
    host.daemon_reload()
    counting = _CountingShows(client.transport)
    context = StageContext(
        SystemdClient(counting),  # type: ignore[arg-type]
        SystemClock(),
        # Polling or a sweep would look only after a minute: the stream must say when.
        EngineSettings(poll_interval=60.0, sweep_interval=60.0, log_lines=0),
        lambda event: None,
    )

    run = run_stage(context, StagePlan("apps", False, 120.0, None, False, (short, long)))

    assert [r.outcome for r in run.result.units] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert all(r.invocation_id for r in run.result.units)
    assert counting.streams == 1
    shown = [[word for word in argv if word.endswith(".service")] for argv in counting.shows]
    assert shown[0] == [short, long]  # the baseline
    # Then only the unit systemd just said something about: a poll would read both.
    assert shown[1] == [short], shown
    assert shown[-1] == [long], shown
