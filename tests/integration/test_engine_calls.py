"""How the engine talks to a host, seen through a recording wrapper around the real SSH
transport: one connection, every unit of a stage started in one call, one `show` per poll."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from deploy_guard.clock import SystemClock
from deploy_guard.config import parse_config
from deploy_guard.guard.engine import HostTarget, RunRequest, run_hosts
from deploy_guard.guard.stage import EngineSettings
from deploy_guard.hosts.targets import connect, resolve_targets
from deploy_guard.transport.base import CommandResult, Transport
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed


@dataclass
class Recorder:
    """Every argv each host's transport ran, and how many connections were opened."""

    connections: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)


class RecordingTransport:
    """Passes every call through to the real transport and writes it down."""

    def __init__(self, inner: Transport, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    @property
    def host(self) -> str:
        return self.inner.host

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        self.recorder.calls.append(tuple(argv))
        return self.inner.run(argv, timeout=timeout, check=check)

    def close(self) -> None:
        self.inner.close()


def _subcommand(argv: tuple[str, ...]) -> str | None:
    words = [word for word in argv[1:] if not word.startswith("-")]
    return words[0] if argv[0] == "systemctl" and words else None


@pytest.fixture
def recorded_run(
    testbed: Testbed, host: TestHost, monkeypatch: pytest.MonkeyPatch
) -> tuple[Recorder, int]:
    for variable, value in testbed.env().items():
        if os.environ.get(variable) != value:
            monkeypatch.setenv(variable, value)
    config = parse_config({"poll_interval": "0.3s"})
    recorder = Recorder()

    def recording_connect(target: HostTarget) -> Transport:
        recorder.connections[target.name] = recorder.connections.get(target.name, 0) + 1
        return RecordingTransport(connect(target, connect_timeout=10), recorder)

    request = RunRequest("run", resolve_targets(config, ["forge"]), 4, EngineSettings(0.3))
    report = run_hosts(request, recording_connect, SystemClock(), lambda event: None)
    return recorder, int(report.exit_code)


def test_one_connection_and_one_start_call_per_stage(recorded_run: tuple[Recorder, int]) -> None:
    recorder, code = recorded_run

    assert code == 0
    assert recorder.connections == {"forge": 1}
    starts = [argv for argv in recorder.calls if _subcommand(argv) == "start"]
    started = [[word for word in argv if word.endswith(".service")] for argv in starts]
    assert started == [
        ["sanoid.service"],
        ["syncoid-tank-data.service", "syncoid-tank-home.service"],
        ["pgbackrest-main-full.service", "restic-backups-etc.service",
         "restic-backups-home.service"],
    ]  # fmt: skip


def _is_status_show(argv: tuple[str, ...]) -> bool:
    """The engine's `show` of unit states (not stage 4's `show -p Environment,...`)."""
    return _subcommand(argv) == "show" and any("InvocationID" in word for word in argv)


def test_each_poll_is_one_show_covering_every_watched_unit(
    recorded_run: tuple[Recorder, int],
) -> None:
    recorder, _code = recorded_run
    calls = recorder.calls
    # The applications stage: from its `start` to its last status `show` (stage 4's proof
    # of its units comes after).
    home = "restic-backups-home.service"
    start = next(i for i, argv in enumerate(calls) if _subcommand(argv) == "start" and home in argv)
    polls = [index for index, argv in enumerate(calls[start:], start) if _is_status_show(argv)]
    polls = [index for index in polls if index < _first_proof_call(calls, start)]
    # Every poll is one `show` of every unit still watched, then one journal read.
    for index, next_index in itertools.pairwise(polls):
        between = [call[0] for call in calls[index + 1 : next_index]]
        assert between == ["journalctl"], between
    assert home in calls[polls[0]]  # the first poll covers every unit of the stage
    assert len(polls) >= 2  # at least two polls


def _first_proof_call(calls: list[tuple[str, ...]], after: int) -> int:
    """Index of stage 4's first call after ``after`` (its `show -p Environment,...`)."""
    for index, argv in enumerate(calls[after:], after):
        if _subcommand(argv) == "show" and not _is_status_show(argv):
            return index
    return len(calls)
