"""Output that can be trusted and grepped, secrets and state files (issue 14)."""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from rich.text import Text

from deploy_guard.cli.common import Common, console, setup_logging
from deploy_guard.errors import (
    CommandFailed,
    ConnectionLost,
    ExitCode,
    describe_exception,
    internal_error,
    without_host,
)
from deploy_guard.model import HostResult, RunReport
from deploy_guard.observe import report
from deploy_guard.render import print_summary
from deploy_guard.secrets import mask_secrets
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.base import PARAMIKO_LOGGER, CommandResult, Transport
from tests import builders

# What systemctl 252 prints where systemd is not PID 1 (run in a container here), exit 1.
NO_BUS_STDERR = (
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down\n"
)


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Fatal: unable to open repository at s3:https://AKIAEXAMPLE:wJalr/K7+bPx@s3.example.org/b",
         "Fatal: unable to open repository at s3:https://***@s3.example.org/b"),
        ("repository rest:https://backup:hunter2@rest.example.org:8000/forge opened",
         "repository rest:https://***@rest.example.org:8000/forge opened"),
        ("RESTIC_PASSWORD=hunter2 restic backup /srv", "RESTIC_PASSWORD=*** restic backup /srv"),
        ("export AWS_SECRET_ACCESS_KEY='a b c'", "export AWS_SECRET_ACCESS_KEY=***"),
        ("mysqldump --password=s3cr3t db", "mysqldump --password=*** db"),
        ("GET /api?token=abc123&x=1", "GET /api?token=***&x=1"),
        ('{"api_key": "k-123", "user": "ann"}', '{"api_key": ***, "user": "ann"}'),
        ("db_passwd: hunter2", "db_passwd: ***"),
        # Not secrets: stays readable.
        ("restic-backups-key.service: Failed with result 'exit-code'.",
         "restic-backups-key.service: Failed with result 'exit-code'."),
        ("snapshot 4f3a2b saved", "snapshot 4f3a2b saved"),
        ("https://example.org/path", "https://example.org/path"),
    ],
)  # fmt: skip
def test_secrets_in_log_lines_are_masked(line: str, masked: str) -> None:
    assert mask_secrets(line) == masked


class _Journal:
    """A transport whose journalctl prints what a restic unit printed."""

    host = "forge"

    def __init__(self, output: str) -> None:
        self.output = output

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        return CommandResult(tuple(argv), 0, self.output, "")

    def close(self) -> None:
        """Nothing to close."""


def test_log_tail_of_a_run_is_masked_before_anyone_sees_it() -> None:
    transport: Transport = _Journal(
        "Fatal: unable to open config file: Stat: "
        "s3:https://AKIAEXAMPLE:SECRETKEY@s3.example.org/bucket/config\n"
        "RESTIC_PASSWORD=correct-horse\n"
    )

    tail = SystemdClient(transport).log_tail("0f" * 16, 10)

    assert tail == (
        "Fatal: unable to open config file: Stat: s3:https://***@s3.example.org/bucket/config",
        "RESTIC_PASSWORD=***",
    )


# -- state files -----------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: any file not created with its final mode would be world-writable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def a_report() -> RunReport:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return builders.run_report(
        builders.host_result("forge"), run_id="20260102T030405Z-abcdef", started_at=at
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_saved_report_is_created_0600_in_0700_directories_without_a_chmod(
    tmp_path: Path,
) -> None:
    with mock.patch("os.chmod", side_effect=AssertionError("chmod after creation")):
        path = report.save_run(a_report(), {"XDG_STATE_HOME": str(tmp_path / "state")})

    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700  # runs/
    assert mode(path.parent.parent) == 0o700  # deploy-guard/
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_a_state_directory_readable_by_others_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state" / "deploy-guard"
    state.mkdir(parents=True)
    state.chmod(0o755)

    with caplog.at_level(logging.WARNING):
        path = report.save_run(a_report(), {"XDG_STATE_HOME": str(tmp_path / "state")})

    assert mode(state) == 0o700
    assert mode(path.parent) == 0o700
    assert f"{state} was readable by others (mode 0755): tightened to 0700" in caplog.text


# -- logging and wrapping --------------------------------------------------------------------


def common(**options: object) -> Common:
    values: dict[str, object] = {"config": None, "verbose": 0, "quiet": False,
                                 "no_color": True, "json": False, "debug": False}  # fmt: skip
    values.update(options)
    return Common(**values)  # type: ignore[arg-type]


def paramiko_records() -> None:
    """What paramiko logs on a failed handshake (through the channel ssh.py gives it)."""
    from deploy_guard.transport import ssh  # noqa: F401, PLC0415 (installs the filter)

    channel = logging.getLogger(PARAMIKO_LOGGER)
    channel.error("Exception (client): Error reading SSH protocol banner")
    channel.error("Traceback (most recent call last):")
    logging.getLogger("paramiko.transport").error("Socket exception: Connection reset")


@pytest.mark.parametrize("options", [{"quiet": True}, {}, {"verbose": 2}, {"json": True}])
def test_paramiko_records_never_reach_stderr_below_debug(
    capsys: pytest.CaptureFixture[str], options: dict[str, object]
) -> None:
    setup_logging(common(**options))

    paramiko_records()

    assert capsys.readouterr().err == ""


def test_paramiko_records_reach_stderr_with_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(common(debug=True))

    paramiko_records()

    err = capsys.readouterr().err
    assert "DEBUG deploy_guard.transport.ssh.paramiko: Traceback" in err


def test_a_long_line_stays_one_line_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    line = "forge: " + "cannot connect to a host far far away " * 8

    console(common()).print(Text(line))

    assert capsys.readouterr().err == line + "\n"


# -- messages --------------------------------------------------------------------------------


def test_command_failed_where_systemd_is_not_pid_1_says_so() -> None:
    error = CommandFailed("local", ["systemctl", "list-units"], 1, NO_BUS_STDERR)

    assert without_host(error, "local") == (
        "systemd is not running as PID 1 on local (container or chroot?): systemctl exited "
        "with status 1: Failed to connect to bus: Host is down"
    )


def test_host_messages_are_not_prefixed_twice() -> None:
    assert without_host(ConnectionLost("local", "connection reset"), "local") == (
        "connection reset"
    )


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (EOFError(), "the server closed the connection"),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
        (ValueError("bad value"), "bad value"),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_exceptions_are_described_never_as_their_repr(error: BaseException, text: str) -> None:
    assert describe_exception(error) == text
    assert internal_error(error) == f"internal error: {type(error).__name__}: {text}"


def test_a_host_that_was_not_reached_says_so_in_the_summary() -> None:
    buffer = io.StringIO()
    at = datetime(2026, 1, 2, tzinfo=UTC)
    host = HostResult("forge", ExitCode.CRITICAL, error="connection refused on 10.0.0.5:22")
    run = RunReport("run-1", "run", at, at, ExitCode.CRITICAL, (host,))

    print_summary(Console(file=buffer, width=200), run, final=False)

    assert buffer.getvalue().strip() == (
        "forge: not reached (exit 2): connection refused on 10.0.0.5:22"
    )


def test_an_ssh_config_host_name_dns_cannot_hold_is_unreachable_not_an_internal_error() -> None:
    from deploy_guard.errors import HostUnreachable  # noqa: PLC0415
    from deploy_guard.transport.ssh import SshTransport  # noqa: PLC0415
    from deploy_guard.transport.sshconfig import SshTarget  # noqa: PLC0415

    long_name = "b" * 64 + ".example.org"  # what `HostName` in ~/.ssh/config said
    transport = SshTransport("forge", SshTarget("forge", long_name, 22, "root"),
                             connect_timeout=5)  # fmt: skip

    with pytest.raises(HostUnreachable) as raised:
        transport.connect()

    assert str(raised.value) == (
        f"forge: {long_name} is not a valid host name: a label of it is 64 characters long; "
        "DNS allows 63"
    )
