"""Connections that break mid-run (through a TCP proxy in front of the host's sshd): the guard
reconnects and reports exactly what an undisturbed run would, or fails closed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.guard import oneshot, write_config
from tests.integration.proxy import Proxy
from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

STAGE = """
[[stages]]
name = "applications"
timeout = "2m"
units = ["restic-backups-slow.service", "restic-backups-home.service"]
"""


@pytest.fixture
def proxied(
    testbed: Testbed, host: TestHost, tmp_path: Path
) -> Iterator[tuple[Proxy, dict[str, str]]]:
    """A HOME whose `forge` goes through the proxy (same host key, via HostKeyAlias)."""
    proxy = Proxy(host.port)
    home = tmp_path / "home"
    shutil.copytree(testbed.home, home, symlinks=True)
    config = (home / ".ssh/config").read_text().replace(str(testbed.home), str(home))
    alias = f"Port {proxy.port}\n    HostKeyAlias [127.0.0.1]:{host.port}"
    config = config.replace(f"Port {host.port}", alias)
    (home / ".ssh/config").write_text(config)
    env = {**testbed.env(), "HOME": str(home), "DEPLOY_GUARD_SSH_CONFIG": str(home / ".ssh/config")}
    host.install_unit("restic-backups-slow.service", oneshot("echo slow start; sleep 8; echo done"))
    host.daemon_reload()
    yield proxy, env
    proxy.close()


Report = dict[str, Any]


def _guard_with(
    env: dict[str, str], config: Path, disturb: Callable[[], None]
) -> tuple[int, Report]:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy_guard", "run", "forge", "--json", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if "started restic-backups-slow.service" in line:
            break
    time.sleep(1)
    disturb()
    stdout, _stderr = process.communicate(timeout=240)
    return process.returncode, json.loads(stdout)


def _units(report: Report) -> dict[str, Report]:
    return {u["unit"]: u for s in report["hosts"][0]["stages"] for u in s["units"]}


def test_cut_connection_is_reconnected_and_the_runs_are_still_proven(
    proxied: tuple[Proxy, dict[str, str]], host: TestHost, tmp_path: Path
) -> None:
    proxy, env = proxied

    code, report = _guard_with(env, write_config(tmp_path, STAGE), proxy.cut)

    assert code == 0
    units = _units(report)
    assert {u["outcome"] for u in units.values()} == {"succeeded"}
    assert report["hosts"][0]["reconnects"] >= 1
    assert proxy.connections >= 2
    slow = units["restic-backups-slow.service"]["invocation_id"]
    assert "done" in host.ssh(f"journalctl -b -q -o cat _SYSTEMD_INVOCATION_ID={slow}").stdout


def test_server_that_stops_answering_is_detected_by_keepalive_and_reconnected(
    proxied: tuple[Proxy, dict[str, str]], tmp_path: Path
) -> None:
    proxy, env = proxied

    code, report = _guard_with(env, write_config(tmp_path, STAGE), proxy.blackhole)

    assert code == 0
    assert {u["outcome"] for u in _units(report).values()} == {"succeeded"}
    assert report["hosts"][0]["reconnects"] >= 1


def test_host_unreachable_past_the_limit_leaves_units_unknown_and_exits_2(
    proxied: tuple[Proxy, dict[str, str]], tmp_path: Path
) -> None:
    proxy, env = proxied

    def unplug() -> None:
        proxy.accepting = False
        proxy.cut()

    config = write_config(tmp_path, 'reconnect_limit = "4s"\n' + STAGE)
    code, report = _guard_with(env, config, unplug)

    assert code == 2
    units = _units(report)
    assert units["restic-backups-slow.service"]["outcome"] == "unknown"
    assert "succeeded" not in {units["restic-backups-slow.service"]["outcome"]}
    assert "unreachable for 4s" in report["hosts"][0]["error"]


def test_two_guards_at_once_both_tell_the_truth_and_no_unit_runs_twice(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    count = "echo run >> /var/lib/{name}.count; sleep 4"
    host.install_unit("restic-backups-twice.service", oneshot(count.format(name="oneshot")))
    host.install_unit("syncoid-twice.service",
                      "[Service]\nType=simple\nExecStart=/bin/sh -c '"
                      + count.format(name="simple") + "'\n")  # fmt: skip
    host.daemon_reload()
    config = write_config(tmp_path, """
[[stages]]
name = "all"
timeout = "1m"
units = ["restic-backups-twice.service", "syncoid-twice.service"]
""")  # fmt: skip
    env = {**dg_env, "DEPLOY_GUARD_SSH_CONFIG": str(Path(dg_env["HOME"]) / ".ssh/config")}
    argv = [sys.executable, "-m", "deploy_guard", "run", "forge", "--json", "--config",
            str(config)]  # fmt: skip
    guards = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True) for _ in range(2)]  # fmt: skip

    reports = [json.loads(guard.communicate(timeout=120)[0]) for guard in guards]

    for report in reports:
        assert report["exit_code"] == 0, json.dumps(report["hosts"][0], indent=1)[:3000]
        assert {u["outcome"] for u in _units(report).values()} == {"succeeded"}
    # Whichever guard came second joined the first one's runs (systemd merges the jobs).
    assert host.ssh("cat /var/lib/oneshot.count").stdout.count("run") == 1
    assert host.ssh("cat /var/lib/simple.count").stdout.count("run") == 1
    first, second = (_units(report) for report in reports)
    for unit in first:
        assert first[unit]["invocation_id"] == second[unit]["invocation_id"]
