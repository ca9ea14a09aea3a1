"""An override on the record: the audit log (STATE/audit.jsonl, written first: no record, no
override) and an entry in each host's journal."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from deploy_guard.errors import DeployGuardError, without_host
from deploy_guard.model import Failure, Override
from deploy_guard.statefiles import private_directory
from deploy_guard.systemd import files
from deploy_guard.transport.base import Transport

AUDIT_FILE: Final = "audit.jsonl"


class OverrideNotRecorded(DeployGuardError):
    """The override could not be written down, so it is not honoured."""


def local_user() -> str:
    """The account running deploy-guard, from the password database (not $USER, which
    anyone can set); under sudo, the user who ran sudo is named too."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid {os.getuid()}"
    sudo_user = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {sudo_user})" if sudo_user and sudo_user != name else name


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """Everything written down about one override."""

    override: Override
    run_id: str
    hosts: tuple[str, ...]
    failures: list[Failure]
    commands: tuple[tuple[str, ...], ...]

    def audit_line(self) -> str:
        return json.dumps(
            {
                "at": self.override.at.isoformat().replace("+00:00", "Z"),
                "user": self.override.by,
                "hosts": list(self.hosts),
                "reason": self.override.reason,
                "run_id": self.run_id,
                "failures": self.failures,
                "command": [list(argv) for argv in self.commands],
            },
            ensure_ascii=False,
        )

    def journal_fields(self) -> list[str]:
        """The host journal entry: the message, at `logger`'s default priority (notice)."""
        return files.journal_lines({"MESSAGE": self.journal_message(), "PRIORITY": "5"})

    def journal_message(self) -> str:
        return (
            f"deploy-guard override: run {self.run_id} by {self.override.by}: "
            f"{self.override.reason}"
        )


def write_audit(record: OverrideRecord, state_directory: Path) -> Path:
    """Append the record to audit.jsonl (created 0600).

    Raises:
        OverrideNotRecorded: the file cannot be written; the override is then not honoured.
    """
    path = state_directory / AUDIT_FILE
    try:
        private_directory(state_directory, up_to=state_directory.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as audit:
            audit.write(record.audit_line() + "\n")
    except OSError as exc:
        raise OverrideNotRecorded(
            f"cannot record the override in {path}: {exc.strerror}; nothing was deployed"
        ) from exc
    return path


def journal_override(
    record: OverrideRecord, hosts: Sequence[str], connect: Callable[[str], Transport]
) -> list[str]:
    """Log the override in each host's journal (`journalctl -t deploy-guard`); the warnings
    for hosts where that failed (a host we cannot reach is already in the audit record)."""
    warnings = []
    for host in hosts:
        try:
            transport = connect(host)
            try:
                files.log_in_journal(transport, record.journal_fields())
            finally:
                transport.close()
        except DeployGuardError as exc:
            warnings.append(
                f"{host}: could not log the override in its journal: {without_host(exc, host)}"
            )
    return warnings
