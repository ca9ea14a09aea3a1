"""The least-privilege guard user of the NixOS module, on the testbed's real polkit.

The rule installed here is rendered from the very template the module ships
(nix/polkit-rule.js.in), the way nix/module.nix renders it: the user name and the unit list
as JSON. polkitd on the testbed (Debian 12, polkitd 122) runs duktape, like NixOS's. The
D-Bus policy (nix/dbus-policy.conf.in) is the module's too: systemd's own bus policy does
not let an unprivileged user send EnqueueUnitJob, which `systemctl start --show-transaction`
uses, so without it dbus-daemon refuses every start before polkit is asked.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pytest

from deploy_guard.manifest import MANIFEST_PATH
from tests.integration.guard import Guarded, guard, write_config
from tests.testbed.host import SSH_OPTIONS, TestHost
from tests.testbed.samples import BACKUP_UNITS
from tests.testbed.testbed import Testbed

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[2]
POLKIT_TEMPLATE: Final = REPOSITORY_ROOT / "nix" / "polkit-rule.js.in"
GUARD_USER: Final = "deploy-guard"
GUARD_HOME: Final = "/var/lib/deploy-guard"
RULE_PATH: Final = "/etc/polkit-1/rules.d/60-deploy-guard.rules"
DBUS_TEMPLATE: Final = REPOSITORY_ROOT / "nix" / "dbus-policy.conf.in"
DBUS_POLICY_PATH: Final = "/etc/dbus-1/system.d/deploy-guard.conf"


def render_dbus_policy(template: str, user: str) -> str:
    """The D-Bus policy as nix/module.nix renders it."""
    return template.replace("@user@", user)


def render_polkit_rule(template: str, user: str, units: Sequence[str]) -> str:
    """The rule as nix/module.nix renders it: builtins.toJSON of the user and the units."""
    return template.replace("@user@", json.dumps(user)).replace(
        "@units@", json.dumps(list(units), separators=(",", ":"))
    )


def guard_ssh_config(testbed: Testbed, directory: Path) -> Path:
    """A HOME whose ~/.ssh/config logs in to every testbed host as the guard user."""
    ssh_directory = directory / ".ssh"
    ssh_directory.mkdir(parents=True, exist_ok=True)
    config = testbed.ssh_config_path.read_text().replace("User root", f"User {GUARD_USER}")
    path = ssh_directory / "config"
    path.write_text(config)
    path.chmod(0o600)
    return path


def as_guard(config: Path, host: TestHost, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command on the host as the guard user, over SSH."""
    return subprocess.run(
        ["ssh", "-F", str(config), *SSH_OPTIONS, host.name, command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def install_guard_user(testbed: Testbed, host: TestHost, units: Sequence[str]) -> None:
    """What the module does on NixOS, done by hand on the Debian host: the user, its key,
    the systemd-journal group, the shipped polkit rule and D-Bus policy."""
    public_key = testbed.identity_path.with_suffix(".pub").read_text().strip()
    host.ssh(
        f"useradd --system --create-home --home-dir {GUARD_HOME} --shell /bin/bash "
        f"--user-group --groups systemd-journal {GUARD_USER}"
    )
    host.write_file(f"{GUARD_HOME}/.ssh/authorized_keys", public_key + "\n", mode=0o600)
    host.ssh(f"chown -R {GUARD_USER}: {GUARD_HOME}/.ssh && chmod 700 {GUARD_HOME}/.ssh")
    rule = render_polkit_rule(POLKIT_TEMPLATE.read_text(), GUARD_USER, units)
    host.write_file(RULE_PATH, rule)
    host.write_file(DBUS_POLICY_PATH, render_dbus_policy(DBUS_TEMPLATE.read_text(), GUARD_USER))
    host.ssh("systemctl reload dbus.service && systemctl restart polkit.service")
    log = host.ssh("journalctl -b -q -o cat -u polkit.service").stdout
    assert "Error" not in log, log  # duktape refused the rule (syntax, ES6, ...)


@pytest.fixture
def guard_config(testbed: Testbed, host: TestHost, tmp_path: Path) -> Path:
    install_guard_user(testbed, host, BACKUP_UNITS)
    return guard_ssh_config(testbed, tmp_path / "home")


def test_polkit_rule_template_is_es5_for_duktape() -> None:
    template = POLKIT_TEMPLATE.read_text()
    code = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("//"))
    for construct in ("let ", "const ", "=>", ".includes(", "`", "class "):
        assert construct not in code, f"{construct!r} is not ES5"
    assert template.count("@user@") == 1
    assert template.count("@units@") == 1


def test_guard_user_may_start_an_inventory_unit(guard_config: Path, host: TestHost) -> None:
    result = as_guard(guard_config, host, "id -un; systemctl --no-ask-password start "
                      "restic-backups-home.service")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == GUARD_USER
    state = host.ssh("systemctl show -p Result --value restic-backups-home.service").stdout
    assert state.strip() == "success"


def test_guard_user_may_stop_and_kill_an_inventory_unit(guard_config: Path, host: TestHost) -> None:
    host.install_unit("sanoid.service", "[Service]\nType=simple\nExecStart=/bin/sleep 600\n")
    host.daemon_reload()
    host.ssh("systemctl start sanoid.service")
    killed = as_guard(guard_config, host, "systemctl --no-ask-password kill --signal=SIGKILL "
                      "sanoid.service")  # fmt: skip
    assert killed.returncode == 0, killed.stderr
    host.ssh("systemctl start sanoid.service")
    stopped = as_guard(guard_config, host, "systemctl --no-ask-password stop sanoid.service")
    assert stopped.returncode == 0, stopped.stderr
    assert host.ssh("systemctl is-active sanoid.service", check=False).stdout.strip() != "active"


@pytest.mark.parametrize(
    ("command", "unit"),
    [
        ("stop", "ssh.service"),
        ("restart", "ssh.service"),
        ("start", "syncoid-tank-data-replication-info.service"),  # a unit outside the inventory
        ("restart", "restic-backups-etc.service"),  # an inventory unit, but not a granted verb
        ("start", "ssh.service"),
    ],
)
def test_guard_user_is_denied_everything_else(
    guard_config: Path, host: TestHost, command: str, unit: str
) -> None:
    before = host.ssh(f"systemctl show -p InvocationID --value {unit}").stdout
    result = as_guard(guard_config, host, f"systemctl --no-ask-password {command} {unit}")
    assert result.returncode != 0
    assert "Access denied" in result.stderr
    assert host.ssh(f"systemctl show -p InvocationID --value {unit}").stdout == before
    assert host.ssh("systemctl is-active ssh.service").stdout.strip() == "active"


def test_guard_user_cannot_erase_a_failed_run(guard_config: Path, host: TestHost) -> None:
    """reset-failed is not granted: it would wipe systemd's record of a failed backup."""
    host.install_unit(
        "pgbackrest-main-full.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n"
    )
    host.daemon_reload()
    host.ssh("systemctl start pgbackrest-main-full.service", check=False)
    result = as_guard(guard_config, host, "systemctl --no-ask-password reset-failed "
                      "pgbackrest-main-full.service")  # fmt: skip
    assert result.returncode != 0
    assert "Access denied" in result.stderr
    state = host.ssh("systemctl is-failed pgbackrest-main-full.service", check=False).stdout
    assert state.strip() == "failed"


def test_guard_user_reads_the_journal(guard_config: Path, host: TestHost) -> None:
    host.ssh("systemctl start restic-backups-etc.service")
    result = as_guard(guard_config, host, "journalctl -q -o cat _PID=1 "
                      "UNIT=restic-backups-etc.service")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Deactivated successfully" in result.stdout


def sample_manifest() -> dict[str, Any]:
    """The manifest the module would write for the testbed's sample units."""
    by_stage: dict[str, list[str]] = {"snapshots": [], "replication": [], "applications": []}
    for unit in BACKUP_UNITS:
        stage = "snapshots" if unit == "sanoid.service" else (
            "replication" if unit.startswith("syncoid-") else "applications")  # fmt: skip
        by_stage[stage].append(unit)
    stages = [{"name": name, "units": units, "timeout": None} for name, units in by_stage.items()]
    return {"schema_version": 1, "stages": stages}


@pytest.mark.parametrize("with_manifest", [False, True], ids=["patterns", "manifest"])
def test_full_guard_succeeds_as_the_guard_user(
    guard_config: Path, host: TestHost, dg_env: dict[str, str], tmp_path: Path,
    with_manifest: bool,
) -> None:  # fmt: skip
    if with_manifest:
        host.write_file(MANIFEST_PATH, json.dumps(sample_manifest()))
    environment = {**dg_env, "HOME": str(guard_config.parent.parent)}
    result = guard(environment, "run", "forge", config=write_config(tmp_path))
    assert result.code == 0, result.stderr
    units = result.units()
    assert set(units) == set(BACKUP_UNITS)
    assert all(unit["outcome"] == "succeeded" for unit in units.values()), units
    logins = host.ssh("journalctl -b -q -o cat _COMM=sshd | grep 'Accepted publickey for'").stdout
    assert f"Accepted publickey for {GUARD_USER}" in logins


def test_guard_user_may_enqueue_inventory_jobs_only(guard_config: Path, host: TestHost) -> None:
    """EnqueueUnitJob reaches systemd, which still asks polkit for each unit."""
    started = as_guard(guard_config, host, "systemctl --no-ask-password start --no-block "
                       "--show-transaction restic-backups-etc.service")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "Enqueued anchor job" in started.stdout + started.stderr
    refused = as_guard(guard_config, host, "systemctl --no-ask-password start --no-block "
                       "--show-transaction syncoid-tank-data-replication-info.service")  # fmt: skip
    assert refused.returncode != 0
    assert "Access denied" in refused.stderr


def test_without_the_dbus_policy_the_bus_refuses_the_guards_start(
    guard_config: Path, host: TestHost
) -> None:
    """Why the module ships nix/dbus-policy.conf.in: the same user and polkit rule, without
    it, are refused by dbus-daemon (systemd 252's org.freedesktop.systemd1.conf)."""
    host.ssh(f"rm {DBUS_POLICY_PATH} && systemctl reload dbus.service")
    refused = as_guard(guard_config, host, "systemctl --no-ask-password start --no-block "
                       "--show-transaction restic-backups-etc.service")  # fmt: skip
    assert refused.returncode != 0
    assert "Access denied" in refused.stderr
    rejected = host.ssh("journalctl -b -q -o cat -u dbus.service").stdout
    assert 'member="EnqueueUnitJob"' in rejected
    # StartUnit (plain `systemctl start`) is in systemd's bus policy: polkit decides.
    started = as_guard(guard_config, host, "systemctl --no-ask-password start --no-block "
                       "restic-backups-etc.service")  # fmt: skip
    assert started.returncode == 0, started.stderr


def test_manifest_unit_unknown_to_systemd_fails_naming_it(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = {
        "schema_version": 1,
        "stages": [
            {"name": "snapshots", "units": ["sanoid.service"], "timeout": None},
            {"name": "replication", "units": [], "timeout": None},
            {
                "name": "applications",
                "units": ["restic-backups-home.service", "restic-backups-dropped.service"],
                "timeout": None,
            },
        ],
    }
    host.write_file(MANIFEST_PATH, json.dumps(manifest))
    result: Guarded = guard(dg_env, "run", "forge", config=write_config(tmp_path))
    # The contract only: the run fails, and says which unit. (How: a failed unit or
    # a failed pre-flight check, is the engine's business.)
    assert result.code in (1, 2), result.stderr
    assert "restic-backups-dropped.service" in result.stderr
    assert result.report is not None
    dropped = [unit for unit in result.units().values()
               if unit["unit"] == "restic-backups-dropped.service"]  # fmt: skip
    assert dropped, result.report
    assert dropped[0]["outcome"] != "succeeded"
    assert "restic-backups-dropped.service" in (dropped[0]["reason"] or "") + json.dumps(
        result.host()
    )
    # The manifest, not the patterns, decided: the other sample units were not planned.
    assert set(result.units()) == {"sanoid.service", "restic-backups-home.service",
                                   "restic-backups-dropped.service"}  # fmt: skip
