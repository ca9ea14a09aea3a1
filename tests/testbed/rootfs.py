"""The cached Debian root filesystem every test host boots from (lower layer of its overlay)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final, TextIO

from tests.testbed.errors import RootfsBuildError, TestbedUnavailable
from tests.testbed.system import CACHE_DIRECTORY, exclusive_lock, log_tail

logger = logging.getLogger(__name__)

SUITE: Final = "bookworm"
PACKAGES: Final = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "restic",
    "borgbackup",  # stage 4 proves borg archives with real `borg list --json` (issue 16)
    "libpam-systemd",
    "polkitd",
)
# Bump whenever configure_rootfs() changes, so every cache built by the old recipe is ignored.
RECIPE_VERSION: Final = 2
DEBOOTSTRAP_TIMEOUT_SECONDS: Final = 900

RESTIC_REPOSITORY: Final = "/var/lib/restic-repo"
RESTIC_PASSWORD_FILE: Final = "/etc/restic/password"

# Units that only slow a container's boot, or could start work in the middle of a test.
MASKED_UNITS: Final = (
    "console-getty.service",
    "container-getty@.service",
    "getty@.service",
    "serial-getty@.service",
    "getty-static.service",
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)

SSHD_POLICY: Final = """\
# deploy-guard testbed: key login for root only. Port, address and host key are per host.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

JOURNALD_POLICY: Final = """\
# deploy-guard testbed: each host lives for one boot, so keep the journal in /run.
[Journal]
Storage=volatile
RuntimeMaxUse=64M
"""

SAMPLE_HOME_FILES: Final = {
    "home/alice/notes.txt": "Things to back up before every deploy.\n",
    "home/alice/projects/plan.md": "# Plan\n\n1. Run every backup.\n2. Deploy.\n",
}


def cache_key() -> str:
    """Return the hash naming the cached root filesystem for the current recipe."""
    recipe = {"suite": SUITE, "packages": sorted(PACKAGES), "recipe_version": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_rootfs() -> Path:
    """Return the cached root filesystem, building it first if needed.

    Two processes asking at once serialise on a lock; the second one finds the finished tree.

    Raises:
        TestbedUnavailable: no Debian mirror can be found in this machine's apt sources.
        RootfsBuildError: debootstrap or the post-configuration failed.
    """
    key = cache_key()
    rootfs = CACHE_DIRECTORY / f"rootfs-{key}"
    if rootfs.is_dir():
        return rootfs
    with exclusive_lock(CACHE_DIRECTORY / f"rootfs-{key}.lock"):
        if rootfs.is_dir():
            return rootfs
        build_rootfs(rootfs)
    return rootfs


def build_rootfs(rootfs: Path) -> None:
    """Debootstrap and configure a root filesystem in a scratch directory, then rename it.

    The rename is atomic, so rootfs either does not exist or is complete. Call with the
    cache lock held: leftovers of an interrupted build are deleted first.

    Raises:
        TestbedUnavailable: no Debian mirror can be found in this machine's apt sources.
        RootfsBuildError: debootstrap or the post-configuration failed.
    """
    mirror = find_debian_mirror()
    scratch = rootfs.with_name(rootfs.name + ".partial")
    log_path = rootfs.with_name(rootfs.name + ".log")
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.monotonic()
    with log_path.open("w") as log:
        log.write(f"debootstrap {SUITE} from {mirror} into {scratch}\n")
        log.flush()
        try:
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(scratch),
                    mirror,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
            )
            configure_rootfs(scratch, log)
        except (subprocess.SubprocessError, OSError) as error:
            log.write(f"\nbuild failed: {error}\n")
            log.flush()
            shutil.rmtree(scratch, ignore_errors=True)
            raise RootfsBuildError(log_path, log_tail(log_path)) from error
    os.rename(scratch, rootfs)
    logger.info("built %s in %.1f s", rootfs, time.monotonic() - started)


def find_debian_mirror() -> str:
    """Return the first Debian archive URI configured in this machine's apt sources.

    Reads deb822 `.sources` files and classic `deb URL suite ...` lines, so no mirror host
    name is ever written into the repository.

    Raises:
        TestbedUnavailable: no `deb` source with a plain Debian archive was found.
    """
    candidates: list[str] = []
    sources_directory = Path("/etc/apt/sources.list.d")
    for sources_file in sorted(sources_directory.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", sources_file.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, flags=re.MULTILINE))
            if "deb" in fields.get("Types", "").split():
                candidates.extend(fields.get("URIs", "").split())
    classic_files = [Path("/etc/apt/sources.list"), *sorted(sources_directory.glob("*.list"))]
    for list_file in classic_files:
        if list_file.is_file():
            line_pattern = r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)"
            candidates.extend(re.findall(line_pattern, list_file.read_text(), flags=re.MULTILINE))
    # The security archive has no base system to bootstrap from.
    archives = [uri for uri in candidates if "security" not in uri]
    if not archives:
        raise TestbedUnavailable("no Debian mirror found in /etc/apt/sources.list(.d)")
    return archives[0]


def configure_rootfs(root: Path, log: TextIO) -> None:
    """Turn a fresh debootstrap tree into the shared image every test host starts from.

    Per-host settings (host keys, hostname, machine id, port) are left out on purpose.
    """
    for host_key in (root / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    (root / "etc/hostname").unlink(missing_ok=True)
    # An empty machine-id would mean "first boot"; each host gets its own before boot.
    (root / "etc/machine-id").write_text("")
    lock_root_password(root / "etc/shadow")
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    write(root / "etc/ssh/sshd_config.d/10-testbed-policy.conf", SSHD_POLICY)
    write(root / "etc/systemd/journald.conf.d/10-testbed.conf", JOURNALD_POLICY)
    for unit in MASKED_UNITS:
        mask = root / "etc/systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
    for relative_path, text in SAMPLE_HOME_FILES.items():
        write(root / relative_path, text)
    initialise_restic_repository(root, log)


def lock_root_password(shadow: Path) -> None:
    """Give root no usable password, so only the testbed's ssh key logs in.

    `*` rather than `!`: with UsePAM off, sshd refuses a `!` account even with a valid key.
    """
    lines = shadow.read_text().splitlines()
    rewritten = [
        "root:*:" + line.split(":", 2)[2] if line.startswith("root:") else line for line in lines
    ]
    shadow.write_text("\n".join(rewritten) + "\n")


def initialise_restic_repository(root: Path, log: TextIO) -> None:
    """Create the restic password and repository once, in the image.

    Initialising here instead of in an ExecStartPre means two restic units started together
    never race to `restic init` the same repository.
    """
    write(root / RESTIC_PASSWORD_FILE.lstrip("/"), secrets.token_urlsafe(24) + "\n", mode=0o600)
    subprocess.run(
        [
            "chroot",
            str(root),
            "/usr/bin/restic",
            "--no-cache",
            "--repo",
            RESTIC_REPOSITORY,
            "--password-file",
            RESTIC_PASSWORD_FILE,
            "init",
        ],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
        timeout=120,
    )


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write text to path, creating parent directories, and set its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
