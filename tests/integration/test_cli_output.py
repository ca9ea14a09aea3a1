"""What deploy-guard prints when an SSH handshake fails, against a real OpenSSH server whose
only key exchange paramiko cannot speak (issue 14: paramiko's 21-line DEBUG traceback
reached stderr even with -q and --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.sshd import ClientHome, SshServer, require_root_and_sshd

pytestmark = pytest.mark.integration

# OpenSSH 9.x offers it; paramiko has no post-quantum key exchange.
UNSPEAKABLE_KEX = "KexAlgorithms sntrup761x25519-sha512@openssh.com\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientHome]:
    require_root_and_sshd()
    client = ClientHome.create(tmp_path_factory.mktemp("home"))
    server = SshServer.start(tmp_path_factory.mktemp("sshd"), [client.public_key()],
                             extra=UNSPEAKABLE_KEX)  # fmt: skip
    try:
        client.write_config(server)
        client.trust(server)
        yield client
    finally:
        server.stop()


def deploy_guard(home: ClientHome, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home.home), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
           "XDG_STATE_HOME": str(home.home / "state"),
           "DEPLOY_GUARD_SSH_CONFIG": str(home.config),
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "deploy_guard", *args], env=env, cwd=home.home,
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def test_failed_handshake_with_quiet_prints_one_line(home: ClientHome) -> None:
    result = deploy_guard(home, "plan", "target", "-q")

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("target: SSH handshake with 127.0.0.1:")
    assert "Exception(" not in lines[0]  # no repr


def test_failed_handshake_in_a_run_says_not_reached_and_json_stays_clean(
    home: ClientHome,
) -> None:
    result = deploy_guard(home, "run", "target", "-q", "--json")

    host = json.loads(result.stdout)["hosts"][0]
    assert result.returncode == 2
    assert host["error"].startswith("SSH handshake with 127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert "paramiko" not in result.stderr
    assert "not reached (exit 2): SSH handshake" in result.stderr
    assert "0/0 units" not in result.stderr


def test_failed_handshake_with_debug_shows_the_library_log(home: ClientHome) -> None:
    result = deploy_guard(home, "plan", "target", "--debug")

    assert "DEBUG deploy_guard.transport.ssh.paramiko" in result.stderr
