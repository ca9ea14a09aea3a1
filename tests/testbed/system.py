"""Host-side plumbing shared by the testbed: prerequisites, processes, mounts, logs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from tests.testbed.errors import TestbedUnavailable

CACHE_DIRECTORY: Final = Path("/var/tmp/deploy-guard-testbed")
NSPAWN_RUNTIME_DIRECTORY: Final = Path("/run/systemd/nspawn")
REQUIRED_TOOLS: Final = ("systemd-nspawn", "debootstrap", "ssh", "ssh-keygen", "mount", "umount")
# Each booted container's systemd and journald take inotify instances from root's share, which
# is 128 by default: past it nspawn exits 255 ("Too many open files") at boot. Seen with a
# dozen hosts at once (the fan-out tests and benchmarks boot up to 24).
INOTIFY_INSTANCES: Final = Path("/proc/sys/fs/inotify/max_user_instances")
MIN_INOTIFY_INSTANCES: Final = 1024


def check_prerequisites() -> None:
    """Check that this process can run containers at all.

    Raises:
        TestbedUnavailable: not root, or a required tool is not installed.
    """
    if os.geteuid() != 0:
        raise TestbedUnavailable("the testbed needs root (systemd-nspawn, mount)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise TestbedUnavailable(f"missing tools: {', '.join(missing)}")


def ensure_inotify_instances() -> None:
    """Raise the machine's inotify instance limit to MIN_INOTIFY_INSTANCES if it is lower."""
    with contextlib.suppress(OSError, ValueError):
        if int(INOTIFY_INSTANCES.read_text()) < MIN_INOTIFY_INSTANCES:
            INOTIFY_INSTANCES.write_text(f"{MIN_INOTIFY_INSTANCES}\n")


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an fcntl lock on lock_path, blocking until other processes release it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_nspawn_runtime_directory() -> None:
    """Mount a tmpfs on /run/systemd/nspawn unless something already is.

    Without systemd as PID 1, /run here is part of the root disk. nspawn then refuses to
    clean up its propagation directory ("Attempted to remove disk file system under
    /run/systemd/nspawn/propagate/..."). The tmpfs is shared by every testbed on the
    machine, so it is left mounted on purpose.
    """
    with exclusive_lock(CACHE_DIRECTORY / "nspawn-runtime.lock"):
        if os.path.ismount(NSPAWN_RUNTIME_DIRECTORY):
            return
        NSPAWN_RUNTIME_DIRECTORY.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_RUNTIME_DIRECTORY)],
            check=True,
            capture_output=True,
        )


def log_tail(log_path: Path, line_count: int = 40) -> str:
    """Return the last lines of a log file, or a note saying it cannot be read."""
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as error:
        return f"(cannot read {log_path}: {error})"
    return "\n".join(lines[-line_count:])


def process_is_running(pid: int, marker: str) -> bool:
    """Tell whether pid is alive, not a zombie, and its command line contains marker.

    The marker guards against pid reuse: a state file may outlive the process it names.
    """
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = status.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and marker.encode() in command_line


def terminate_process(pid: int, marker: str, timeout: float) -> None:
    """SIGTERM a process, then SIGKILL its process group if it has not exited in time.

    SIGTERM makes systemd-nspawn shut the container down in an orderly way. A unit that
    ignores SIGTERM (TimeoutStopSec defaults to 90 s) would hold that up, so after the
    timeout the whole session started for the container is killed.
    """
    if not process_is_running(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_is_running(pid, marker):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def unmount(mount_point: Path) -> None:
    """Unmount mount_point if it is a mount point; lazily if it stays busy."""
    for _attempt in range(20):
        if not os.path.ismount(mount_point):
            return
        result = subprocess.run(["umount", str(mount_point)], capture_output=True, check=False)
        if result.returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True, check=False)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, refusing to if anything inside is still mounted."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mount_points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    still_mounted = [point for point in mount_points if point.startswith(prefix)]
    if still_mounted:
        raise OSError(f"refusing to delete {path}: still mounted under it: {still_mounted}")
    shutil.rmtree(path)
