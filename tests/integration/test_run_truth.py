"""`deploy-guard run` against real systemd over real SSH: what it reports is what happened."""

from __future__ import annotations

from pathlib import Path

from tests.integration.guard import guard, oneshot, simple, started_units, write_config
from tests.testbed import BACKUP_UNITS, HELPER_UNITS
from tests.testbed.host import TestHost

ONLY_APPLICATIONS = """
[[stages]]
name = "applications"
timeout = "2m"
units = ["restic-backups-*.service"]
"""


def test_default_stages_run_every_sample_backup_and_prove_each(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    result = guard(dg_env, "run", "forge", config=write_config(tmp_path))

    assert result.code == 0, result.stderr
    units = result.units()
    assert set(units) == set(BACKUP_UNITS)
    assert all(unit["outcome"] == "succeeded" for unit in units.values()), units
    assert [stage["name"] for stage in result.host()["stages"]] == [
        "snapshots", "replication", "applications",
    ]  # fmt: skip
    # Every reported invocation is a real run in the host's journal.
    for unit in units.values():
        # systemd's own messages carry INVOCATION_ID; a unit's output can lack
        # _SYSTEMD_INVOCATION_ID when its process exits within milliseconds (journald).
        invocation = unit["invocation_id"]
        logs = host.ssh(f"journalctl -b -q -o cat _SYSTEMD_INVOCATION_ID={invocation} "
                        f"+ INVOCATION_ID={invocation}")  # fmt: skip
        assert logs.stdout.strip(), unit
    # The restic units really backed up: two snapshots in the repository.
    snapshots = host.ssh(
        "RESTIC_PASSWORD_FILE=/etc/restic/password restic -r /var/lib/restic-repo "
        "snapshots --json --no-lock"
    )
    assert snapshots.stdout.count('"id"') == 2
    assert started_units(host, HELPER_UNITS) == set()


def test_unit_never_loaded_and_without_timer_is_discovered_and_run(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    loaded = host.ssh("systemctl list-units --all --plain --no-legend 'restic-backups-*'").stdout
    assert "restic-backups-etc.service" not in loaded  # no timer, never started: not in memory

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, ONLY_APPLICATIONS))

    assert result.units()["restic-backups-etc.service"]["outcome"] == "succeeded"
    assert result.code == 0, result.stderr


def test_stage_units_run_together_and_simple_units_are_waited_to_the_end(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    record = (
        "mkdir -p /run/c; date +%s.%N > /run/c/{name}.start; sleep 3; "
        "date +%s.%N > /run/c/{name}.end"
    )
    for name in ("c1", "c2"):
        host.install_unit(f"restic-backups-{name}.service", oneshot(record.format(name=name)))
    host.install_unit("restic-backups-c3.service", simple(record.format(name="c3")))
    host.daemon_reload()
    config = write_config(
        tmp_path, ONLY_APPLICATIONS.replace("restic-backups-*", "restic-backups-c*")
    )

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 0, result.stderr
    times = {
        name: (float(host.ssh(f"cat /run/c/{name}.start").stdout),
               float(host.ssh(f"cat /run/c/{name}.end").stdout))
        for name in ("c1", "c2", "c3")
    }  # fmt: skip
    # Every unit started before any of them ended: they ran at the same time.
    assert max(start for start, _ in times.values()) < min(end for _, end in times.values())
    # The Type=simple unit was reported only after its process had finished.
    assert result.units()["restic-backups-c3.service"]["outcome"] == "succeeded"


def test_unit_already_running_is_joined_and_runs_once(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    count = "echo run >> /var/lib/{name}.count; sleep 4"
    host.install_unit("restic-backups-slow.service", oneshot(count.format(name="slow")))
    host.install_unit("syncoid-slow.service", simple(count.format(name="syncoid")))
    host.daemon_reload()
    host.ssh("systemctl start --no-block restic-backups-slow.service syncoid-slow.service")
    host.ssh("for i in $(seq 50); do systemctl is-active -q syncoid-slow.service && "
             "[ $(systemctl show -P ActiveState restic-backups-slow.service) = activating ] "
             "&& exit 0; sleep 0.1; done; exit 1")  # fmt: skip
    config = write_config(tmp_path, """
[[stages]]
name = "all"
timeout = "1m"
units = ["restic-backups-slow.service", "syncoid-slow.service"]
""")  # fmt: skip

    result = guard(dg_env, "run", "forge", config=config)

    units = result.units()
    for name in ("restic-backups-slow.service", "syncoid-slow.service"):
        assert units[name]["outcome"] == "succeeded", units[name]
        assert units[name]["joined"] is True
    assert host.ssh("cat /var/lib/slow.count").stdout.count("run") == 1
    assert host.ssh("cat /var/lib/syncoid.count").stdout.count("run") == 1


def test_units_collected_before_the_first_poll_are_judged_from_the_journal(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit("restic-backups-quick.service", oneshot("exit 0"))
    host.install_unit("restic-backups-quickfail.service", oneshot("exit 3"))
    host.daemon_reload()
    config = write_config(
        tmp_path, ONLY_APPLICATIONS.replace("restic-backups-*", "restic-backups-quick*")
    )

    result = guard(dg_env, "run", "forge", config=config)

    units = result.units()
    quick, failing = (
        units["restic-backups-quick.service"],
        units["restic-backups-quickfail.service"],
    )
    assert quick["outcome"] == "succeeded"
    assert quick["invocation_id"]
    assert failing["outcome"] == "failed"
    assert (failing["result"], failing["exit_status"]) == ("exit-code", 3)
    # systemd forgot the successful run: `show` alone could not have proven it.
    shown = host.ssh("systemctl show -P InvocationID restic-backups-quick.service").stdout.strip()
    assert shown == ""
    assert result.code == 1


def test_unmet_condition_is_skipped_and_never_success(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    host.install_unit(
        "restic-backups-cond.service",
        oneshot("echo ran", extra_unit="ConditionPathExists=/nonexistent"),
    )
    host.daemon_reload()
    config = write_config(
        tmp_path, ONLY_APPLICATIONS.replace("restic-backups-*", "restic-backups-cond*")
    )

    result = guard(dg_env, "run", "forge", config=config)

    unit = result.units()["restic-backups-cond.service"]
    assert unit["outcome"] == "skipped"
    assert unit["result"] == "unmet-condition"
    assert any("ConditionPathExists" in line for line in unit["log_tail"])
    assert result.code == 1


def test_failure_reports_result_status_and_the_log_of_that_run_only(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    flaky = (
        "n=$(cat /var/lib/flaky 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/lib/flaky; "
        "echo flaky run $n; exit 7"
    )
    host.install_unit("restic-backups-flaky.service", oneshot(flaky))
    host.daemon_reload()
    host.ssh("systemctl start restic-backups-flaky.service || true")  # run 1, before the guard
    config = write_config(
        tmp_path, ONLY_APPLICATIONS.replace("restic-backups-*", "restic-backups-flaky*")
    )

    result = guard(dg_env, "run", "forge", config=config)

    unit = result.units()["restic-backups-flaky.service"]
    assert (unit["outcome"], unit["result"], unit["exit_status"]) == ("failed", "exit-code", 7)
    assert "flaky run 2" in unit["log_tail"]
    assert "flaky run 1" not in unit["log_tail"]
    assert "flaky run 2" in result.stderr  # the summary shows it too
