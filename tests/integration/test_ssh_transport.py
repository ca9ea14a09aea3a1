"""SshTransport against a real OpenSSH server on 127.0.0.1 (see sshd.py). Needs root."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_guard.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
)
from deploy_guard.transport.ssh import SshTransport
from deploy_guard.transport.sshconfig import resolve
from tests.integration.sshd import (
    ClientHome,
    SshAgent,
    SshServer,
    free_port,
    keygen,
    require_root_and_sshd,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server_and_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SshServer, ClientHome]]:
    require_root_and_sshd()
    home = ClientHome.create(tmp_path_factory.mktemp("home"))
    server = SshServer.start(tmp_path_factory.mktemp("sshd"), [home.public_key()])
    try:
        yield server, home
    finally:
        server.stop()


@pytest.fixture
def server(server_and_home: tuple[SshServer, ClientHome]) -> SshServer:
    return server_and_home[0]


@pytest.fixture
def home(
    server_and_home: tuple[SshServer, ClientHome], monkeypatch: pytest.MonkeyPatch
) -> ClientHome:
    """A fresh config and a known_hosts that trusts the server; no ssh-agent."""
    server, home = server_and_home
    monkeypatch.setenv("HOME", str(home.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    proxy = f"ssh -F {home.config} -W %h:%p target"
    home.write_config(
        server,
        extra=(
            f"Host via-command\n  Port {server.port}\n  IdentityFile {home.key}\n"
            f"  ProxyCommand {proxy}\n"
            f"Host via-failing-command\n  ProxyCommand echo no route to %h >&2; exit 7\n"
            f"Host via-jump-to-closed\n  Port {free_port()}\n  ProxyJump target\n"
            "Host via-loop\n  ProxyJump via-loop\n"
        ),
    )
    home.trust(server)
    return home


def transport(home: ClientHome, name: str, **kwargs: object) -> SshTransport:
    return SshTransport(name, resolve(name, config_file=home.config), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def target(home: ClientHome) -> Iterator[SshTransport]:
    ssh = transport(home, "target")
    yield ssh
    ssh.close()


def test_echo_returns_its_output_and_exit_status_zero(target: SshTransport) -> None:
    result = target.run(["echo", "hello", "world"], timeout=10, check=True)
    assert (result.exit_status, result.stdout, result.stderr) == (0, "hello world\n", "")
    assert result.argv == ("echo", "hello", "world")


def test_exit_status_and_stderr_are_captured(target: SshTransport) -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    result = target.run(argv, timeout=10, check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(CommandFailed) as failed:
        target.run(argv, timeout=10, check=True)
    assert (failed.value.exit_status, failed.value.stderr) == (3, "err\n")


def test_remote_environment_is_fixed(target: SshTransport) -> None:
    result = target.run(["sh", "-c", 'echo "$LC_ALL/$SYSTEMD_COLORS"'], timeout=10, check=True)
    assert result.stdout == "C/0\n"


@pytest.mark.parametrize(
    "text",
    ["a b'$(x)\n", 'double " quote; `uname` && $HOME * ?', "--option-like", "", "tab\there"],
)
def test_argv_reaches_the_remote_verbatim(target: SshTransport, text: str) -> None:
    assert target.run(["printf", "%s", text], timeout=10, check=True).stdout == text


def test_three_mib_on_stdout_and_stderr_does_not_deadlock(target: SshTransport) -> None:
    script = "head -c 3145728 /dev/zero | tr '\\0' o; head -c 3145728 /dev/zero | tr '\\0' e >&2"
    result = target.run(["sh", "-c", script], timeout=60, check=True)
    assert result.stdout == "o" * 3 * MIB
    assert result.stderr == "e" * 3 * MIB


def test_command_exceeding_its_timeout_raises_and_the_connection_stays_usable(
    target: SshTransport,
) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        target.run(["sleep", "30"], timeout=0.5, check=True)
    assert time.monotonic() - started < 5
    assert target.run(["true"], timeout=10, check=True).ok


def test_eight_concurrent_runs_share_one_connection(
    target: SshTransport, server: SshServer
) -> None:
    target.connect()
    offset = server.log_size()
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            argv = ["sh", "-c", f"sleep 0.3; echo {number}"]
            results[number] = target.run(argv, timeout=30, check=True).stdout
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {number: f"{number}\n" for number in range(8)}
    assert time.monotonic() - started >= 0.6  # at most 4 sessions at once: two rounds
    assert "Accepted publickey" not in server.log_since(offset, until="", timeout=0)


def test_unknown_host_key_is_refused_before_any_authentication(
    home: ClientHome, server: SshServer
) -> None:
    home.known_hosts.write_text("")
    offset = server.log_size()
    with pytest.raises(HostKeyUnknown) as unknown:
        transport(home, "target").connect()
    message = str(unknown.value)
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in message
    assert "SHA256:" in message
    log = server.log_since(offset, until="[preauth]")
    assert "[preauth]" in log
    assert "Accepted" not in log
    assert "Failed publickey" not in log
    assert "Postponed publickey" not in log


def test_hashed_known_hosts_written_by_ssh_keygen_are_understood(home: ClientHome) -> None:
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(home.known_hosts)], check=True)
    assert home.known_hosts.read_text().startswith("|1|")
    ssh = transport(home, "target")
    try:
        assert ssh.run(["true"], timeout=10, check=True).ok
    finally:
        ssh.close()


def test_changed_host_key_raises_and_names_the_known_hosts_file(
    home: ClientHome, server: SshServer, tmp_path: Path
) -> None:
    home.trust(server, keygen(tmp_path / "impostor"))
    offset = server.log_size()
    with pytest.raises(HostKeyChanged) as changed:
        transport(home, "target").connect()
    assert str(home.known_hosts) in str(changed.value)
    assert "Accepted" not in server.log_since(offset, until="[preauth]")


def test_passphrase_protected_identity_works_through_the_agent_with_identities_only(
    home: ClientHome, server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "id_locked"
    server.authorize(keygen(locked, "locked-key", passphrase="open sesame"))
    home.config.write_text(  # ssh_config: the first value wins, so put this block first
        f"Host locked\n  HostName 127.0.0.1\n  Port {server.port}\n  IdentityFile {locked}\n"
        + home.config.read_text()
    )
    with pytest.raises(AuthenticationFailed, match="id_locked is unusable"):
        transport(home, "locked").connect()
    agent = SshAgent.start(tmp_path)
    try:
        agent.add(home.wrong_key, "")  # IdentitiesOnly: never offered
        agent.add(locked, "open sesame")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket_path))
        offset = server.log_size()
        ssh = transport(home, "locked")
        assert ssh.run(["echo", "unlocked"], timeout=10, check=True).stdout == "unlocked\n"
        ssh.close()
        assert "Failed publickey" not in server.log_since(offset, until="Accepted publickey")
    finally:
        agent.stop()


def test_key_the_server_does_not_accept_raises_authentication_failed(home: ClientHome) -> None:
    with pytest.raises(AuthenticationFailed) as failed:
        transport(home, "wrong-key").connect()
    assert "root@127.0.0.1" in str(failed.value)
    assert str(home.wrong_key) in str(failed.value)


def test_closed_port_raises_host_unreachable(home: ClientHome) -> None:
    with pytest.raises(HostUnreachable, match="connection refused"):
        transport(home, "closed").connect()


def test_unresolvable_host_raises_host_unreachable(home: ClientHome) -> None:
    with pytest.raises(HostUnreachable, match="cannot resolve"):
        transport(home, "no-such-host.invalid").connect()


def test_proxy_jump_through_the_same_server(home: ClientHome, server: SshServer) -> None:
    ssh = transport(home, "via-jump")
    try:
        offset = server.log_size()
        assert ssh.run(["echo", "jumped"], timeout=10, check=True).stdout == "jumped\n"
        assert server.log_since(offset, until="").count("Accepted publickey") == 2
    finally:
        ssh.close()


def test_proxy_jump_to_an_unknown_jump_host_key_names_the_jump_host(home: ClientHome) -> None:
    home.known_hosts.write_text("")
    with pytest.raises(HostKeyUnknown, match=r"^via-jump: jump host target: "):
        transport(home, "via-jump").connect()


def test_proxy_command_runs_through_a_shell(home: ClientHome) -> None:
    ssh = transport(home, "via-command")
    try:
        assert ssh.run(["echo", "proxied"], timeout=10, check=True).stdout == "proxied\n"
    finally:
        ssh.close()
        ssh.close()  # twice is fine


def test_failing_proxy_command_is_reported_at_once_with_its_output(home: ClientHome) -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as unreachable:
        transport(home, "via-failing-command").connect()
    assert time.monotonic() - started < 5  # not the 15 s connect timeout
    assert "exited with status 7: no route to 127.0.0.1" in str(unreachable.value)


def test_jump_host_that_cannot_reach_the_target_raises_host_unreachable(home: ClientHome) -> None:
    with pytest.raises(HostUnreachable, match="jump host target cannot open a channel"):
        transport(home, "via-jump-to-closed").connect()


def test_proxy_jump_loop_is_refused(home: ClientHome) -> None:
    with pytest.raises(HostUnreachable, match="ProxyJump loop: via-loop -> via-loop"):
        transport(home, "via-loop").connect()


def test_alive_answers_while_connected_and_not_after_close(target: SshTransport) -> None:
    assert not target.alive(1)
    target.connect()
    assert target.alive(5)
    target.close()
    assert not target.alive(1)


# Walks up from the remote shell to the sshd process that serves this connection.
FIND_SESSION = (
    'p=$PPID; while [ "$(cat /proc/$p/comm)" != sshd ]; do p=$(cut -d" " -f4 /proc/$p/stat); done'
)


def test_alive_is_false_when_the_server_stops_answering(target: SshTransport) -> None:
    script = f"{FIND_SESSION}; echo $p"
    pid = int(target.run(["sh", "-c", script], timeout=10, check=True).stdout)
    os.kill(pid, signal.SIGSTOP)  # the server's process for this connection, on this machine
    try:
        assert not target.alive(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_connection_dying_under_a_command_raises_connection_lost(target: SshTransport) -> None:
    with pytest.raises(ConnectionLost):
        target.run(["sh", "-c", f"{FIND_SESSION}; kill -9 $p; sleep 5"], timeout=20, check=True)
