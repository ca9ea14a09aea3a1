"""Running the installed deploy-guard command against testbed hosts, and reading hosts back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.testbed.host import TestHost

# Fast polling and a short SIGTERM->SIGKILL delay keep the suite quick; behaviour is the same.
FAST_SETTINGS = 'poll_interval = "0.3s"\nstop_grace = "2s"\n'


@dataclass(frozen=True)
class Guarded:
    """What one deploy-guard invocation left behind."""

    code: int
    report: dict[str, Any] | None
    stderr: str

    def units(self, host: str = "forge") -> dict[str, dict[str, Any]]:
        """Every unit of ``host`` in the report, by name."""
        assert self.report is not None, self.stderr
        (entry,) = [h for h in self.report["hosts"] if h["host"] == host]
        return {unit["unit"]: unit for stage in entry["stages"] for unit in stage["units"]}

    def stages(self, host: str = "forge") -> dict[str, dict[str, Any]]:
        assert self.report is not None, self.stderr
        (entry,) = [h for h in self.report["hosts"] if h["host"] == host]
        return {stage["name"]: stage for stage in entry["stages"]}

    def host(self, host: str = "forge") -> dict[str, Any]:
        assert self.report is not None, self.stderr
        (entry,) = [h for h in self.report["hosts"] if h["host"] == host]
        return entry


def write_config(directory: Path, body: str = "") -> Path:
    """A config file with fast settings plus ``body``."""
    path = directory / "deploy-guard.toml"
    path.write_text(FAST_SETTINGS + body)
    return path


def guard(env: dict[str, str], *args: str, config: Path | None = None,
          command: Sequence[str] = (), timeout: float = 300) -> Guarded:  # fmt: skip
    """Run `deploy-guard ARGS --json [--config CONFIG] [-- COMMAND]` as a user would, and
    parse the report on stdout (options come before `--`, or they would join the command)."""
    argv = [sys.executable, "-m", "deploy_guard", *args, "--json"]
    # OpenSSH reads ~/.ssh/config from the passwd home, not $HOME: point ssh at the test
    # HOME's config explicitly, as a user with a non-default config file would.
    env = {**env, "DEPLOY_GUARD_SSH_CONFIG": str(Path(env["HOME"]) / ".ssh" / "config")}
    if config is not None:
        argv += ["--config", str(config)]
    if command:
        argv += ["--", *command]
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    report = json.loads(completed.stdout) if completed.stdout.strip() else None
    return Guarded(completed.returncode, report, completed.stderr)


def started_units(host: TestHost, units: tuple[str, ...]) -> set[str]:
    """Which of ``units`` systemd started in this boot (its own journal messages)."""
    matches = " ".join(f"UNIT={unit}" for unit in units)
    result = host.ssh(
        f"journalctl -b -q -o json --output-fields=UNIT _PID=1 JOB_TYPE=start {matches}"
    )
    return {json.loads(line)["UNIT"] for line in result.stdout.splitlines() if line.strip()}


_COUNT_LOGINS = r"""
set -- $SSH_CLIENT; own=" port $2 "
for attempt in $(seq 50); do
    logs=$(journalctl -b -q -o cat _COMM=sshd | grep 'Accepted publickey')
    case "$logs" in *"$own"*) break ;; esac
    sleep 0.1  # journald writes asynchronously; wait until this very login is recorded
done
printf '%s\n' "$logs" | grep -vc "$own" || true
"""


def accepted_logins(host: TestHost) -> int:
    """How many SSH logins sshd accepted in this boot before this query's own.

    Each call is itself a login, so between two calls ``after - before - 1`` logins came
    from elsewhere (deploy-guard).
    """
    return int(host.ssh(_COUNT_LOGINS).stdout.strip() or 0)


def oneshot(command: str, extra_unit: str = "", extra_service: str = "") -> str:
    """A Type=oneshot unit running ``command`` with sh."""
    command = command.replace("%", "%%")  # systemd specifiers
    return (
        f"[Unit]\n{extra_unit}\n[Service]\nType=oneshot\n{extra_service}\n"
        f"ExecStart=/bin/sh -c '{command}'\n"
    )


def simple(command: str) -> str:
    """A Type=simple unit running ``command`` with sh (like sanoid and syncoid on NixOS)."""
    command = command.replace("%", "%%")  # systemd specifiers
    return f"[Service]\nType=simple\nExecStart=/bin/sh -c '{command}'\n"


def long_backup(host: TestHost, directory: Path) -> Path:
    """A 30 s backup unit alone in its stage (to interrupt a guard while it runs); the config."""
    host.install_unit("restic-backups-long.service", oneshot("sleep 30"))
    host.daemon_reload()
    return write_config(directory, """
[[stages]]
name = "applications"
timeout = "1m"
units = ["restic-backups-long.service"]
""")  # fmt: skip
