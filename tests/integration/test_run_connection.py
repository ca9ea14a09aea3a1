"""SSH problems are clear one-line errors, and nothing is started on the host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.guard import accepted_logins, guard, started_units, write_config
from tests.testbed import BACKUP_UNITS
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed


def _copy_home(
    testbed: Testbed, tmp_path: Path, env: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    shutil.copytree(testbed.home, home, symlinks=True)
    config = (home / ".ssh/config").read_text().replace(str(testbed.home), str(home))
    (home / ".ssh/config").write_text(config)
    return home, {**env, "HOME": str(home)}


def _new_key(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().split()[1]


def _break_known_hosts(home: Path, tmp_path: Path, how: str) -> None:
    known = home / ".ssh/known_hosts"
    lines = known.read_text().splitlines()
    if how == "unknown":
        known.write_text("")
    else:
        other = _new_key(tmp_path / "other")
        known.write_text(
            "\n".join(f"{line.split()[0]} ssh-ed25519 {other}" for line in lines) + "\n"
        )


@pytest.mark.parametrize(
    ("how", "message"),
    [("unknown", "no key is known"), ("changed", "has CHANGED")],
)
def test_host_key_problems_stop_before_any_credential_or_unit(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path, how: str, message: str
) -> None:
    home, env = _copy_home(testbed, tmp_path, dg_env)
    _break_known_hosts(home, tmp_path, how)
    logins_before = accepted_logins(host)

    result = guard(env, "run", "forge", config=write_config(tmp_path))

    assert result.code == 2
    error = result.host()["error"]
    assert message in error, error
    assert message in result.stderr
    assert accepted_logins(host) - logins_before - 1 == 0  # no login by deploy-guard
    assert started_units(host, BACKUP_UNITS) == set()


def test_authentication_failure_is_reported_and_starts_nothing(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    home, env = _copy_home(testbed, tmp_path, dg_env)
    identity = home / ".ssh/id_ed25519"
    identity.unlink()
    identity.with_suffix(".pub").unlink()
    _new_key(identity)

    result = guard(env, "run", "forge", config=write_config(tmp_path))

    assert result.code == 2
    assert "rejected every key" in result.host()["error"]
    assert started_units(host, BACKUP_UNITS) == set()


def test_unreachable_host_is_a_critical_failure_with_a_clear_message(
    testbed: Testbed, dg_env: dict[str, str], tmp_path: Path
) -> None:
    result = guard(dg_env, "run", "root@127.0.0.1:1", config=write_config(tmp_path))

    assert result.code == 2
    error = result.host("root@127.0.0.1:1")["error"]
    assert "127.0.0.1" in error, error
    assert "\n" not in error


def test_one_ssh_connection_per_host_for_a_whole_run(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    before = accepted_logins(host)
    # Receipts and the journal entry are written after the verdict, on a connection of their own.
    no_receipts = "[receipts]\nenabled = false\njournal = false\n"

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, no_receipts))

    assert result.code == 0, result.stderr
    assert accepted_logins(host) - before - 1 == 1


def test_bad_configuration_exits_3_before_connecting(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, '[[stages]]\nname = "x"\ntimeout = "soon"\nunits = ["a;b"]\n')
    before = accepted_logins(host)

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 3
    assert "line 5: stages[x].timeout" in result.stderr  # after the two FAST_SETTINGS lines
    assert "line 6: stages[x].units" in result.stderr
    assert str(config) in result.stderr
    assert accepted_logins(host) - before - 1 == 0
