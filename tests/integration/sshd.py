"""A real OpenSSH server on 127.0.0.1 for the SSH transport tests, and a client home for it.

`SshServer` runs ``/usr/sbin/sshd -D -e -f CONFIG`` as root on a free port with its own host
key and AuthorizedKeysFile, logging to a file the tests read. `ClientHome` is a temporary
``$HOME`` with ``.ssh/config``, ``known_hosts`` and keys. OpenSSH reads the config of the passwd
home, not of ``$HOME``, so the tests pass ``config_file=`` (``ssh -F``) to `sshconfig.resolve`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"


def require_root_and_sshd() -> None:
    """Skip (or fail, when ``CI=true``) unless we are root and OpenSSH is installed."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if not SSHD.exists() or shutil.which(SSH_KEYGEN) is None or shutil.which("ssh") is None:
        missing.append(f"{SSHD}, ssh and ssh-keygen")
    if missing:
        message = f"the SSH integration tests need {' and '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def keygen(path: Path, comment: str = "deploy-guard-test", passphrase: str = "") -> str:
    """Create an ed25519 key pair at ``path``; return the public key line."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class SshServer:
    """One running sshd; `stop` kills it (by the pid we started, never by name)."""

    directory: Path
    port: int
    host_public_key: str  # "ssh-ed25519 AAAA... comment"
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, directory: Path, authorized_keys: list[str], extra: str = "") -> SshServer:
        """``extra``: more sshd_config lines (e.g. a KexAlgorithms paramiko cannot speak)."""
        directory.mkdir(parents=True, exist_ok=True)
        host_key = directory / "ssh_host_ed25519_key"
        host_public_key = keygen(host_key, "test-host-key")
        (directory / "authorized_keys").write_text("".join(f"{k}\n" for k in authorized_keys))
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {directory}/authorized_keys\n"
            "PidFile none\n"
            "UsePAM no\n"
            "StrictModes no\n"  # the temp dir's parents are not root-only
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "AllowTcpForwarding yes\n"  # ProxyJump through this same server
            "LogLevel VERBOSE\n"  # logs "Failed publickey" for every rejected key
            f"{extra}"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        log_path = directory / "sshd.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = cls(directory, port, host_public_key, log_path, process)
        server.wait_listening()
        return server

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log_path.read_text()}")

    def authorize(self, public_key: str) -> None:
        with (self.directory / "authorized_keys").open("a") as authorized_keys:
            authorized_keys.write(f"{public_key}\n")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int, *, until: str, timeout: float = 5.0) -> str:
        """The log written after ``offset``, once it contains ``until`` (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("rb") as log_file:
                log_file.seek(offset)
                text = log_file.read().decode(errors="replace")
            if until in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class ClientHome:
    """A temporary ``$HOME`` for the client: ``.ssh/config``, ``known_hosts`` and keys."""

    home: Path
    key: Path  # authorized on the server
    wrong_key: Path  # not authorized anywhere

    @property
    def config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    @classmethod
    def create(cls, home: Path) -> ClientHome:
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        client = cls(home, ssh_dir / "id_ed25519", ssh_dir / "id_wrong")
        keygen(client.key, "client-key")
        keygen(client.wrong_key, "wrong-key")
        return client

    def public_key(self) -> str:
        return self.key.with_name(self.key.name + ".pub").read_text().strip()

    def write_config(self, server: SshServer, extra: str = "") -> None:
        """Host ``target`` is the server; ``via-jump`` reaches it through ``target`` itself;
        ``wrong-key`` offers a key the server does not know; ``closed`` has nothing listening.
        ``extra`` may add more ``via-*`` hosts.
        """
        common = (
            "  User root\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
        )
        self.config.write_text(
            "Host target via-* wrong-key closed\n  HostName 127.0.0.1\n"
            f"Host target via-jump\n  Port {server.port}\n  IdentityFile {self.key}\n"
            "Host via-jump\n  ProxyJump target\n"
            f"Host wrong-key\n  Port {server.port}\n  IdentityFile {self.wrong_key}\n"
            f"Host closed\n  Port {free_port()}\n  IdentityFile {self.key}\n"
            f"{extra}"
            f"Host *\n{common}"
        )

    def trust(self, server: SshServer, host_public_key: str | None = None) -> None:
        """Write known_hosts with ``host_public_key`` (default: the server's real key)."""
        key_type, key_data = (host_public_key or server.host_public_key).split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{server.port} {key_type} {key_data}\n")


@dataclass
class SshAgent:
    """A private ``ssh-agent -D`` on its own socket; `stop` kills it by its pid."""

    socket_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, directory: Path) -> SshAgent:
        socket_path = directory / "agent.sock"
        process = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(socket_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.05)
        return cls(socket_path, process)

    def add(self, key: Path, passphrase: str) -> None:
        """``ssh-add`` a passphrase-protected key, answering through SSH_ASKPASS."""
        askpass = key.with_name("askpass")
        askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
        askpass.chmod(0o700)
        env = {
            **os.environ,
            "SSH_AUTH_SOCK": str(self.socket_path),
            "SSH_ASKPASS": str(askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
        }
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
