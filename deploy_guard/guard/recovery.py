"""Getting a host back after the connection broke in the middle of a run.

Closing a connection does not stop remote work (STYLE): the units keep running under PID 1,
so after a reconnect the engine simply resumes watching the same runs from its journal
cursor. Only a changed boot id means those runs are gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from deploy_guard.clock import Clock
from deploy_guard.errors import DeployGuardError, HostRebooted, TransportError
from deploy_guard.systemd.client import SystemdClient

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


@dataclass(slots=True)
class Recovery:
    """Per host: its boot id at the start, how long it may stay away, how often it came back."""

    boot_id: str | None
    limit: float
    reconnects: int = 0
    notes: list[str] = field(default_factory=list)
    rebooted_as: str | None = None  # the boot id found after a reboot mid-run

    @property
    def boot_ids(self) -> tuple[str, ...]:
        """The host's boot id at the start and, if it rebooted mid-run, the new one."""
        return tuple(boot_id for boot_id in (self.boot_id, self.rebooted_as) if boot_id)

    def recover(self, client: SystemdClient, clock: Clock, error: TransportError) -> None:
        """Reconnect with bounded exponential backoff, and check the host did not reboot.

        Raises:
            HostRebooted: the boot id changed: runs in flight did not finish.
            TransportError: the host stayed unreachable for longer than ``limit``.
        """
        started = clock.monotonic()
        delay = FIRST_BACKOFF
        last: DeployGuardError = error
        log.warning("%s: lost contact (%s); reconnecting", client.host, error)
        while clock.monotonic() - started < self.limit:
            client.transport.close()  # a hung connection must not be reused
            clock.sleep(min(delay, max(0.0, self.limit - (clock.monotonic() - started))))
            delay = min(delay * 2, MAX_BACKOFF)
            try:
                boot_id = client.boot_id()
            except TransportError as exc:
                last = exc
                continue
            if self.boot_id is not None and boot_id != self.boot_id:
                self.rebooted_as = boot_id
                raise HostRebooted(
                    client.host,
                    f"the host rebooted during the run (boot id {self.boot_id} -> {boot_id})",
                )
            self.reconnects += 1
            self.notes.append(f"reconnected after: {error.reason}")
            log.warning("%s: reconnected", client.host)
            return
        raise type(last)(client.host, f"unreachable for {self.limit:.0f}s: {_reason(last)}")


def _reason(error: DeployGuardError) -> str:
    return error.reason if isinstance(error, TransportError) else str(error)
