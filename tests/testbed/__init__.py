"""Integration testbed for deploy-guard: systemd-nspawn containers with real systemd and sshd.

    with Testbed() as testbed:
        host = testbed.boot("forge")          # ssh alias "forge" in testbed.home/.ssh/config
        host.ssh("systemctl start restic-backups-home.service")
        subprocess.run(["deploy-guard", ...], env=testbed.env())

Needs root. The Debian root filesystem is built once (about a minute) and cached under
/var/tmp/deploy-guard-testbed/.
"""

from tests.testbed.errors import (
    HostBootError,
    RemoteCommandError,
    RootfsBuildError,
    TestbedError,
    TestbedUnavailable,
)
from tests.testbed.host import RootStrategy, TestHost
from tests.testbed.rootfs import RESTIC_PASSWORD_FILE, RESTIC_REPOSITORY, ensure_rootfs
from tests.testbed.samples import BACKUP_UNITS, HELPER_UNITS, TIMERS
from tests.testbed.testbed import Testbed

__all__ = [
    "BACKUP_UNITS",
    "HELPER_UNITS",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_REPOSITORY",
    "TIMERS",
    "HostBootError",
    "RemoteCommandError",
    "RootStrategy",
    "RootfsBuildError",
    "TestHost",
    "Testbed",
    "TestbedError",
    "TestbedUnavailable",
    "ensure_rootfs",
]
