"""One test host: a systemd-nspawn container booted from the cached rootfs, sshd on loopback."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Final

from tests.testbed.errors import HostBootError, RemoteCommandError, TestbedError
from tests.testbed.samples import install_sample_units
from tests.testbed.system import log_tail, remove_tree, terminate_process, unmount

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS: Final = 15.0
READY_STATES: Final = ("running", "degraded")
# Set to "copy" to skip overlayfs (for comparison, or where overlayfs misbehaves).
ROOT_STRATEGY_VARIABLE: Final = "DEPLOY_GUARD_TESTBED_ROOT"
SSH_OPTIONS: Final = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "LogLevel=ERROR",
)
PR_SET_PDEATHSIG: Final = 1
# systemd-nspawn's exit status when the container's systemd reboots (checked on the testbed:
# docs/field-notes.md); systemd-nspawn@.service restarts on it (RestartForceExitStatus=133).
REBOOT_EXIT_STATUS: Final = 133


class RootStrategy(enum.Enum):
    """How a host's writable root was made from the cached rootfs."""

    OVERLAY = "overlay"
    COPY = "copy"


class TestHost:
    """A booted container that looks like a NixOS host to deploy-guard: systemd + sshd.

    Built by Testbed.boot(); the constructor only records names and paths.
    """

    __test__ = False  # pytest: not a test class despite the name

    def __init__(
        self,
        name: str,
        *,
        port: int,
        machine: str,
        directory: Path,
        ssh_config: Path,
        on_stop: Callable[[TestHost], None] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.machine = machine
        self.directory = directory
        self.root = directory / "root"
        self.log_path = directory / "nspawn.log"
        self.ssh_config = ssh_config
        self.host_key = ""
        self.root_strategy: RootStrategy | None = None
        self.prepare_seconds = 0.0
        self.boot_seconds = 0.0
        self.process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._on_stop = on_stop
        self._stopped = False
        self._lifecycle = threading.Lock()  # stop() and the reboot supervisor
        self._argv: list[str] = []
        self._cgroups: list[Path] = []
        self.reboots = 0  # times the container rebooted in place
        self.exit_statuses: list[int] = []  # of every systemd-nspawn that ended

    def __repr__(self) -> str:
        return f"TestHost(name={self.name!r}, port={self.port}, machine={self.machine!r})"

    def prepare(self, lower: Path, authorized_key: str, *, sample_units: bool) -> None:
        """Make the host's root from the cached rootfs and write its per-host settings."""
        started = time.monotonic()
        self.directory.mkdir(parents=True)
        self.root_strategy = make_root(lower, self.directory)
        self.host_key = configure_host_root(self.root, self.name, self.port, authorized_key)
        if sample_units:
            install_sample_units(self.root)
        self.prepare_seconds = time.monotonic() - started

    def start(self, *, tie_to_parent: bool) -> None:
        """Launch systemd-nspawn in its own session, its console going to the log file.

        With tie_to_parent, the kernel sends nspawn SIGTERM when this process dies, so a
        killed pytest still shuts its containers down, and a thread of this process boots
        the container again when its systemd reboots (nspawn exits 133, see reboot()).
        """
        self._argv = [
            "systemd-nspawn",
            f"--directory={self.root}",
            "--boot",
            "--register=no",  # no systemd-machined here (PID 1 is not systemd)
            "--keep-unit",  # and no systemd to create a scope unit with
            f"--machine={self.machine}",
            f"--hostname={self.name}",
            "--link-journal=no",
            "--console=read-only",
        ]
        self._cgroups = prepare_cgroups(self.machine)
        self._launch(tie_to_parent, truncate_log=True)
        if tie_to_parent:
            threading.Thread(
                target=self._supervise, name=f"nspawn-{self.name}", daemon=True
            ).start()

    def _launch(self, tie_to_parent: bool, *, truncate_log: bool) -> None:
        cgroups = self._cgroups

        def before_exec() -> None:
            enter_cgroups(cgroups)
            if tie_to_parent:
                die_with_parent()

        with self.log_path.open("wb" if truncate_log else "ab") as log:
            self.process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=before_exec,  # noqa: PLW1509
                env={**os.environ, "TERM": "dumb", "SYSTEMD_COLORS": "0"},
            )
        self._started_at = time.monotonic()

    def _supervise(self) -> None:
        """Boot the container again each time its systemd reboots, like
        systemd-nspawn@.service's RestartForceExitStatus=133, until it stops otherwise.

        Runs on its own thread, which must outlive each nspawn it starts: the parent-death
        signal is tied to the thread that forked the child.
        """
        while True:
            process = self.process
            if process is None:
                return
            status = process.wait()
            with self._lifecycle:
                self.exit_statuses.append(status)
                if self._stopped or status != REBOOT_EXIT_STATUS:
                    return
                self.reboots += 1
                logger.info("%s rebooted (nspawn exited %d); booting it again", self.name, status)
                self._launch(True, truncate_log=False)

    def wait_until_ready(self, timeout: float) -> None:
        """Wait until sshd answers and systemd has finished booting.

        Raises:
            HostBootError: nspawn exited, the timeout passed, or systemd reports a state
                other than running or degraded.
        """
        deadline = time.monotonic() + timeout
        last_error = "no ssh attempt finished"
        while True:
            if self.process is None or self.process.poll() is not None:
                status = None if self.process is None else self.process.returncode
                raise HostBootError(self.name, f"systemd-nspawn exited ({status})", self.log())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = f"not ready after {timeout:g} s; last ssh error: {last_error}"
                raise HostBootError(self.name, reason, self.log())
            try:
                result = self.run_ssh(
                    "systemctl is-system-running --wait", timeout=remaining, connect_timeout=2
                )
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 255:  # ssh itself failed: sshd is not listening yet
                last_error = result.stderr.strip()
                time.sleep(0.1)
                continue
            state = result.stdout.strip()
            if state not in READY_STATES:
                raise HostBootError(self.name, f"system state {state!r} after boot", self.log())
            self.boot_seconds = time.monotonic() - self._started_at
            if state == "degraded":
                failed = self.ssh("systemctl --failed --plain --no-legend", check=False)
                logger.warning("test host %s is degraded: %s", self.name, failed.stdout.strip())
            return

    def run_ssh(
        self, command: str, *, timeout: float, connect_timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        """Run command through the system ssh client and the testbed's ssh config."""
        argv = [
            "ssh",
            "-F",
            str(self.ssh_config),
            *SSH_OPTIONS,
            "-o",
            f"ConnectTimeout={connect_timeout:.0f}",
            self.name,
            command,
        ]
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ssh(
        self, command: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as root, for test setup and inspection.

        Raises:
            RemoteCommandError: check is true and the command (or ssh) exited non-zero.
            subprocess.TimeoutExpired: it ran longer than timeout seconds.
        """
        result = self.run_ssh(command, timeout=timeout)
        if check and result.returncode != 0:
            raise RemoteCommandError(
                self.name, command, result.returncode, result.stdout, result.stderr
            )
        return result

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file into the host's root directly (visible inside at once).

        Raises:
            TestbedError: path is not absolute, or a symlink would lead outside the root.
        """
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():  # replace the link itself, never what it points to
            target.unlink()
        target.write_text(text)
        target.chmod(mode)

    def install_unit(self, name: str, text: str) -> None:
        """Write /etc/systemd/system/NAME; call daemon_reload() before using it."""
        if "/" in name:
            raise TestbedError(f"not a unit name: {name!r}")
        self.write_file(f"/etc/systemd/system/{name}", text)

    def daemon_reload(self) -> None:
        """Make systemd re-read unit files."""
        self.ssh("systemctl daemon-reload")

    def reboot(self) -> None:
        """Reboot the container in place (`systemctl reboot` inside); returns at once.

        systemd-nspawn exits 133 when the container's systemd reboots, and the supervisor
        started by start() boots it again from the same root, with the same port and ssh
        host key. Use wait_for_reboot() to wait for it to come back.
        """
        # The shutdown may close this very connection before ssh sees the exit status (255).
        self.ssh("systemctl reboot --no-block", check=False)

    def wait_for_reboot(self, old_boot_id: str, timeout: float = 120) -> str:
        """Wait until the host is back up with a boot id other than old_boot_id; return it.

        Raises:
            HostBootError: it did not come back in time, or nspawn exited otherwise.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.process
            if self._stopped or (process is not None and process.poll() not in (None, 133)):
                reason = f"systemd-nspawn exited {self.exit_statuses} instead of rebooting"
                raise HostBootError(self.name, reason, self.log())
            try:
                result = self.run_ssh(
                    "systemctl is-system-running --wait; cat /proc/sys/kernel/random/boot_id",
                    timeout=max(1.0, deadline - time.monotonic()), connect_timeout=2,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                continue
            lines = result.stdout.split()
            boot_id = lines[-1].replace("-", "") if len(lines) == 2 else ""
            if boot_id and boot_id != old_boot_id and lines[0] in READY_STATES:
                return boot_id
            time.sleep(0.2)
        raise HostBootError(self.name, f"not back from reboot after {timeout:g} s", self.log())

    def boot_id(self) -> str:
        """Return the container's boot ID as the journal spells it (32 hex digits)."""
        result = self.ssh("cat /proc/sys/kernel/random/boot_id")
        return result.stdout.strip().replace("-", "")

    def host_path(self, path: str) -> Path:
        """Map an absolute path inside the container to the host, staying inside its root.

        Absolute symlinks in the container point at the host's files when followed from
        outside, so a parent directory that resolves outside the root is refused.

        Raises:
            TestbedError: path is not absolute, or its parent resolves outside the root.
        """
        container_path = PurePosixPath(path)
        if not container_path.is_absolute():
            raise TestbedError(f"container path must be absolute: {path!r}")
        target = self.root / container_path.relative_to("/")
        root = self.root.resolve()
        parent = target.parent.resolve()
        if parent != root and root not in parent.parents:
            raise TestbedError(f"{path!r} leads outside the container root (symlink)")
        return parent / target.name

    def log(self, line_count: int = 40) -> str:
        """Return the tail of the container's console log."""
        return log_tail(self.log_path, line_count)

    def stop(self) -> None:
        """Shut the container down, unmount and delete its root. Safe to call twice."""
        with self._lifecycle:  # no reboot may launch a new nspawn from now on
            if self._stopped:
                return
            self._stopped = True
            process = self.process
        try:
            if process is not None:
                terminate_process(process.pid, self.machine, STOP_TIMEOUT_SECONDS)
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            try:
                remove_cgroups(self._cgroups)
                unmount(self.root)
                remove_tree(self.directory)
            finally:
                if self._on_stop is not None:
                    self._on_stop(self)


def make_root(lower: Path, directory: Path) -> RootStrategy:
    """Create directory/root as an overlay on lower, or as a copy if overlayfs fails."""
    root = directory / "root"
    root.mkdir()
    if os.environ.get(ROOT_STRATEGY_VARIABLE) != RootStrategy.COPY.value:
        upper, work = directory / "upper", directory / "work"
        upper.mkdir()
        work.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        result = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return RootStrategy.OVERLAY
        logger.warning("overlayfs failed (%s); copying the rootfs", result.stderr.strip())
    root.rmdir()
    subprocess.run(["cp", "-a", "--reflink=auto", str(lower), str(root)], check=True)
    return RootStrategy.COPY


def configure_host_root(root: Path, name: str, port: int, authorized_key: str) -> str:
    """Write one host's identity and sshd settings; return its public host key line.

    Every host gets a fresh ed25519 host key (the cached rootfs has none), so a test that
    talks to the wrong port fails host key checking instead of silently reaching a sibling.
    """
    (root / "etc/hostname").write_text(f"{name}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    # A machine ID of its own, so journals and D-Bus see distinct machines.
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    key_path = root / "etc/ssh/ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key_path)],
        check=True,
        capture_output=True,
    )
    (root / "etc/ssh/sshd_config.d/20-testbed-host.conf").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
    )
    authorized_keys = root / "root/.ssh/authorized_keys"
    authorized_keys.write_text(authorized_key.strip() + "\n")
    authorized_keys.chmod(0o600)
    key_type, key_body = key_path.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {key_body}"


_libc = ctypes.CDLL(None, use_errno=True)


CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


def prepare_cgroups(machine: str) -> list[Path]:
    """A cgroup of its own for each container, in every mounted hierarchy.

    Without it every container's systemd manages the same cgroup paths (PID 1 here is not
    systemd and puts nspawn in the root cgroup), so the same unit started on two hosts at
    once collides: status 219/CGROUP (seen on the testbed).
    """
    directories = []
    hierarchies = [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.procs").exists() else [
        path for path in CGROUP_ROOT.iterdir() if (path / "cgroup.procs").exists()
    ]  # fmt: skip
    for hierarchy in hierarchies:
        directory = hierarchy / "deploy-guard-testbed" / machine
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # cpuset refuses tasks until set
                for level in (directory.parent, directory):
                    target = level / name
                    if target.exists() and not target.read_text().strip():
                        target.write_text((level.parent / name).read_text())
        except OSError as error:
            logger.debug("no cgroup of its own in %s: %s", hierarchy, error)
            continue
        directories.append(directory)
    return directories


def enter_cgroups(directories: list[Path]) -> None:
    """In the child before exec: move into the container's cgroups (errors are ignored:
    the container still boots, only less isolated)."""
    for directory in directories:
        with contextlib.suppress(OSError):
            (directory / "cgroup.procs").write_text("0")


def remove_cgroups(directories: list[Path]) -> None:
    """Remove a stopped container's cgroups, deepest first (a cgroup is removed by rmdir)."""
    for directory in directories:
        if not directory.exists():
            continue
        for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            directory.rmdir()


def die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
