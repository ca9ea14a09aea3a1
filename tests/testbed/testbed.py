"""The testbed: a temporary HOME with ssh settings, and the test hosts it can reach."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import random
import re
import secrets
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from tests.testbed.errors import TestbedError
from tests.testbed.host import STOP_TIMEOUT_SECONDS, TestHost
from tests.testbed.rootfs import ensure_rootfs
from tests.testbed.system import (
    CACHE_DIRECTORY,
    check_prerequisites,
    ensure_inotify_instances,
    ensure_nspawn_runtime_directory,
    exclusive_lock,
    remove_tree,
    terminate_process,
    unmount,
)

logger = logging.getLogger(__name__)

RUNS_DIRECTORY: Final = CACHE_DIRECTORY / "runs"
STATE_FILE_NAME: Final = "testbed.json"
BOOT_TIMEOUT_SECONDS: Final = 60.0
# Host names double as hostnames, ssh aliases and parts of nspawn machine names.
HOST_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9-]{0,30}")
# Ports are picked below the kernel's ephemeral range, so an outgoing connection cannot
# take a host's port between the moment it is chosen and the moment sshd binds it.
LOWEST_PORT: Final = 20000


class Testbed:
    """A HOME directory whose ~/.ssh reaches every host booted in it, as for a real user.

    Use as a context manager, or call close(); an atexit hook closes it as a last resort,
    and a later Testbed cleans up after a process that died without closing.
    """

    __test__ = False  # pytest: not a test class despite the name

    def __init__(self, directory: Path | None = None, *, detached: bool = False) -> None:
        """Build or reuse the root filesystem and create the HOME directory.

        detached: hosts outlive this process (no atexit hook, no parent-death signal); used
        by `python -m tests.testbed up`, which leaves the stopping to `down`.

        Raises:
            TestbedUnavailable: not root or a tool is missing.
            RootfsBuildError: the root filesystem could not be built.
        """
        check_prerequisites()
        self.rootfs = ensure_rootfs()
        ensure_nspawn_runtime_directory()
        ensure_inotify_instances()
        reap_abandoned_runs()
        if directory is None:
            RUNS_DIRECTORY.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(prefix="run-", dir=RUNS_DIRECTORY))
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.home = directory / "home"
        self.detached = detached
        self.hosts: dict[str, TestHost] = {}
        self._closed = False
        if not detached:
            atexit.register(self.close)
        create_home(self.home)
        self._write_state()

    @property
    def ssh_config_path(self) -> Path:
        return self.home / ".ssh/config"

    @property
    def known_hosts_path(self) -> Path:
        return self.home / ".ssh/known_hosts"

    @property
    def identity_path(self) -> Path:
        return self.home / ".ssh/id_ed25519"

    def __enter__(self) -> Testbed:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        """Return an environment for running deploy-guard as a user whose HOME is the testbed.

        SSH_AUTH_SOCK is dropped so the developer's agent keys are never offered.
        """
        environment = dict(os.environ)
        environment["HOME"] = str(self.home)
        # OpenSSH reads ~/.ssh/config from the passwd home, not $HOME.
        environment["DEPLOY_GUARD_SSH_CONFIG"] = str(self.ssh_config_path)
        environment.pop("SSH_AUTH_SOCK", None)
        return environment

    def boot(
        self, name: str, *, sample_units: bool = True, timeout: float = BOOT_TIMEOUT_SECONDS
    ) -> TestHost:
        """Boot a host reachable as ssh alias NAME, and wait until it is ready.

        Raises:
            TestbedError: bad or duplicate name, or the testbed is closed.
            HostBootError: the container did not boot or sshd did not answer in time.
        """
        if self._closed:
            raise TestbedError("the testbed is closed")
        if not HOST_NAME_PATTERN.fullmatch(name):
            raise TestbedError(f"host name must match {HOST_NAME_PATTERN.pattern}: {name!r}")
        if name in self.hosts:
            raise TestbedError(f"a host named {name!r} is already running")
        # A fresh suffix per boot: nspawn keys lock and propagation directories by machine
        # name, and two pytest processes may each boot a host called "forge".
        token = secrets.token_hex(3)
        host = TestHost(
            name,
            port=choose_port({host.port for host in self.hosts.values()}),
            machine=f"dg-{name}-{token}",
            directory=self.directory / "hosts" / f"{name}-{token}",
            ssh_config=self.ssh_config_path,
            on_stop=self._forget,
        )
        # Registered before any I/O, so close() cleans up a half-made host too.
        self.hosts[name] = host
        try:
            host.prepare(
                self.rootfs,
                self.identity_path.with_suffix(".pub").read_text(),
                sample_units=sample_units,
            )
            self._write_ssh_files()
            self._write_state()
            host.start(tie_to_parent=not self.detached)
            self._write_state()
            host.wait_until_ready(timeout)
        except BaseException:
            host.stop()
            raise
        logger.info(
            "booted %s on port %d: root by %s in %.2f s, boot in %.2f s",
            name,
            host.port,
            host.root_strategy,
            host.prepare_seconds,
            host.boot_seconds,
        )
        return host

    def close(self) -> None:
        """Stop every host, unmount their roots and delete the testbed's files.

        Tries every host even when one fails to stop, then raises.

        Raises:
            TestbedError: some host or directory could not be cleaned up.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        problems: list[str] = []
        for host in list(self.hosts.values()):
            try:
                host.stop()
            except Exception as error:  # gather, then report them all
                problems.append(f"{host.name}: {error}")
        try:
            remove_testbed_files(self.directory)
        except OSError as error:
            problems.append(str(error))
        if problems:
            raise TestbedError("closing the testbed: " + "; ".join(problems))

    def _forget(self, host: TestHost) -> None:
        """Drop a stopped host from the ssh files and the state file."""
        if self.hosts.get(host.name) is host:
            del self.hosts[host.name]
        if not self._closed:
            self._write_ssh_files()
            self._write_state()

    def _write_ssh_files(self) -> None:
        """Rewrite ~/.ssh/config and ~/.ssh/known_hosts for the hosts now running.

        UserKnownHostsFile is spelled out because OpenSSH expands `~` from the passwd
        entry, not from $HOME: without it `ssh -F this-config` would read root's own file.
        """
        blocks: list[str] = ["# Written by the deploy-guard testbed; rewritten at each boot.\n"]
        known_hosts: list[str] = []
        for host in self.hosts.values():
            if not host.host_key:
                continue
            blocks.append(
                f"Host {host.name}\n"
                f"    HostName 127.0.0.1\n"
                f"    Port {host.port}\n"
                f"    User root\n"
                f"    IdentityFile {self.identity_path}\n"
                f"    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts_path}\n"
            )
            known_hosts.append(f"[127.0.0.1]:{host.port} {host.host_key}\n")
        write_atomically(self.ssh_config_path, "\n".join(blocks), mode=0o600)
        write_atomically(self.known_hosts_path, "".join(known_hosts), mode=0o644)

    def _write_state(self) -> None:
        """Record what is running, for `down` and for reaping after a crashed process."""
        state = {
            "owner_pid": os.getpid(),
            "detached": self.detached,
            "home": str(self.home),
            "hosts": [
                {
                    "name": host.name,
                    "machine": host.machine,
                    "port": host.port,
                    "pid": None if host.process is None else host.process.pid,
                    "root": str(host.root),
                    "directory": str(host.directory),
                }
                for host in self.hosts.values()
            ],
        }
        write_atomically(self.directory / STATE_FILE_NAME, json.dumps(state, indent=2) + "\n")


def create_home(home: Path) -> None:
    """Create HOME/.ssh with a fresh key pair and empty config and known_hosts."""
    ssh_directory = home / ".ssh"
    ssh_directory.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "deploy-guard-testbed",
            "-f",
            str(ssh_directory / "id_ed25519"),
        ],
        check=True,
        capture_output=True,
    )
    write_atomically(ssh_directory / "config", "", mode=0o600)
    write_atomically(ssh_directory / "known_hosts", "", mode=0o644)


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace path in one rename, so a concurrent reader never sees a half-written file."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    scratch.chmod(mode)
    os.replace(scratch, path)


def choose_port(taken: set[int]) -> int:
    """Return a free 127.0.0.1 TCP port below the ephemeral range, not in taken."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _attempt in range(100):
        port = random.randrange(LOWEST_PORT, max(ephemeral_low, LOWEST_PORT + 1000))
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise TestbedError("no free port found on 127.0.0.1")


def stop_recorded_hosts(directory: Path) -> None:
    """Stop the hosts listed in directory's state file and delete the testbed's files.

    Used by `down` and to reap runs whose owner died; the processes are not our children.
    """
    state_path = directory / STATE_FILE_NAME
    state: dict[str, Any] = json.loads(state_path.read_text())
    for record in state["hosts"]:
        if record["pid"] is not None:
            terminate_process(record["pid"], record["machine"], STOP_TIMEOUT_SECONDS)
        unmount(Path(record["root"]))
        remove_tree(Path(record["directory"]))
    remove_testbed_files(directory)


def remove_testbed_files(directory: Path) -> None:
    """Delete what a Testbed created in directory, and directory itself if then empty.

    Only named entries are removed, because `up --state DIR` may be given any directory.
    """
    remove_tree(directory / "hosts")
    remove_tree(directory / "home")
    (directory / STATE_FILE_NAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


def reap_abandoned_runs() -> None:
    """Clean up runs whose pytest process died without closing its testbed.

    Their containers were sent SIGTERM by the kernel (parent-death signal) but their
    overlay mounts and directories remain.
    """
    if not RUNS_DIRECTORY.is_dir():
        return
    with exclusive_lock(CACHE_DIRECTORY / "reap.lock"):
        for state_path in RUNS_DIRECTORY.glob(f"*/{STATE_FILE_NAME}"):
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError):
                continue
            if state["detached"] or process_exists(state["owner_pid"]):
                continue
            logger.warning("cleaning up abandoned testbed run %s", state_path.parent)
            try:
                stop_recorded_hosts(state_path.parent)
            except OSError as error:
                logger.warning("could not clean up %s: %s", state_path.parent, error)


def process_exists(pid: int) -> bool:
    """Tell whether a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
