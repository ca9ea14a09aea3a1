"""Issue 11, "the false greens to close": each case played on real systemd 252 over real SSH,
as an operator would meet it. Every test here failed (reported green, or the wrong outcome)
before the fix it names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_guard.manifest import MANIFEST_PATH
from tests.integration.guard import guard, oneshot, simple, write_config
from tests.integration.test_polkit import GUARD_USER, guard_ssh_config, install_guard_user
from tests.testbed.host import TestHost
from tests.testbed.samples import BACKUP_UNITS
from tests.testbed.testbed import Testbed

RECEIPTS = "/var/lib/deploy-guard/receipts"


def stage(units: str, *, name: str = "applications", critical: bool = False,
          timeout: str = "1m") -> str:  # fmt: skip
    return (f'\n[[stages]]\nname = "{name}"\ncritical = {str(critical).lower()}\n'
            f'timeout = "{timeout}"\nunits = ["{units}"]\n')  # fmt: skip


def with_timer(host: TestHost, unit: str) -> None:
    """A started timer keeps the unit loaded after a successful run (no garbage collection),
    as on a real NixOS host: `show` then still describes its last run."""
    timer = unit.removesuffix(".service") + ".timer"
    host.install_unit(timer, f"[Timer]\nOnCalendar=yearly\nUnit={unit}\n")
    host.daemon_reload()
    host.ssh(f"systemctl start {timer}")


def stop_when_active(host: TestHost, unit: str, verb: str = "stop") -> None:
    """Someone else stops (or signals) ``unit`` as soon as it runs: a transient unit under
    PID 1 on the host, so that it survives this SSH session."""
    # `is-active` says "activating" (exit 3) while a oneshot runs (FIELD-NOTES): ask show.
    action = f"systemctl {verb} {unit}"
    script = (f"for i in $(seq 300); do case $(systemctl show -P ActiveState {unit}) in "
              f"active|activating) sleep 0.5; {action}; exit 0;; esac; sleep 0.1; done; "
              "exit 1")  # fmt: skip
    host.ssh(f"systemd-run --unit=stopper-{unit.removesuffix('.service')} --no-block "
             f"/bin/sh -c '{script}'")  # fmt: skip


# -- case 1: a condition skip of a unit that already ran --------------------------------------


@pytest.mark.parametrize("earlier_exit", [0, 3], ids=["earlier-success", "earlier-failure"])
def test_condition_skip_of_a_unit_that_ran_before_is_skipped_not_its_earlier_run(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path, earlier_exit: int
) -> None:
    unit = "restic-backups-cond.service"
    host.install_unit(unit, oneshot("echo ran; exit $(cat /run/go)",
                                    extra_unit="ConditionPathExists=/run/go"))  # fmt: skip
    with_timer(host, unit)
    host.ssh(f"echo {earlier_exit} > /run/go; systemctl start {unit} || true; rm /run/go")
    earlier = host.ssh(f"systemctl show -P InvocationID {unit}").stdout.strip()
    assert earlier

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, stage(unit)))

    judged = result.units()[unit]
    assert (judged["outcome"], judged["result"]) == ("skipped", "unmet-condition"), judged
    assert judged["invocation_id"] != earlier
    assert result.code == 1


# -- case 2: a run ended by a stop or a signal ------------------------------------------------


@pytest.mark.parametrize("kind", ["simple", "oneshot"])
def test_backup_stopped_from_outside_mid_run_is_cancelled_naming_the_stop(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    unit = "syncoid-stopped.service"
    host.install_unit(unit, simple("sleep 30") if kind == "simple" else oneshot("sleep 30"))
    host.daemon_reload()
    stop_when_active(host, unit)

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, stage(unit)))

    judged = result.units()[unit]
    assert judged["outcome"] == "cancelled", judged
    assert "stopped by stop job" in judged["reason"]
    assert result.code == 1


def test_simple_backup_killed_by_sigterm_without_a_stop_job_is_cancelled(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    # SIGTERM is a clean exit for Type=simple: "Deactivated successfully", Result=success;
    # only ExecMainCode=2 (killed) ExecMainStatus=15 in `show` tells what happened.
    unit = "syncoid-killed.service"
    host.install_unit(unit, simple("sleep 30"))
    with_timer(host, unit)
    stop_when_active(host, unit, verb="kill --signal=SIGTERM")

    result = guard(dg_env, "run", "forge", config=write_config(tmp_path, stage(unit)))

    judged = result.units()[unit]
    assert judged["outcome"] == "cancelled", judged
    assert judged["reason"] == "main process killed by SIGTERM"
    assert result.code == 1


def test_our_own_deadline_stop_is_still_timed_out(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    unit = "syncoid-slow.service"
    host.install_unit(unit, simple("sleep 60"))
    host.daemon_reload()

    result = guard(dg_env, "run", "forge",
                   config=write_config(tmp_path, stage(unit, timeout="3s")))  # fmt: skip

    assert result.units()[unit]["outcome"] == "timed-out"


# -- case 4: an unreadable journal ------------------------------------------------------------


def test_unreadable_journal_is_unknown_never_a_success_from_show_alone(
    testbed: Testbed, host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    # The guard user of the NixOS module, without the systemd-journal group: journalctl
    # exits 1 with "No journal files were opened due to insufficient permissions."
    install_guard_user(testbed, host, BACKUP_UNITS)
    host.ssh(f"gpasswd -d {GUARD_USER} systemd-journal")
    ssh_config = guard_ssh_config(testbed, tmp_path / "home")
    unit = "restic-backups-home.service"  # has a timer: `show` keeps its successful run
    environment = {**dg_env, "HOME": str(ssh_config.parent.parent)}
    config = write_config(tmp_path, stage(unit, critical=True))

    result = guard(environment, "run", "forge", config=config)

    judged = result.units()[unit]
    assert judged["outcome"] == "unknown", judged
    assert "insufficient permissions" in judged["reason"]
    assert result.code == 2
    # The backup did run: only its proof is missing.
    assert host.ssh(f"systemctl show -P ExecMainCode {unit}").stdout.strip() == "1"


# -- case 5: nothing to guard -----------------------------------------------------------------


def test_host_with_no_backup_unit_is_not_green_and_apply_does_not_deploy_it(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, stage("borgbackup-job-*.service"))
    marker = tmp_path / "deployed"

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 1, result.stderr
    assert result.host()["error"] == "no backup unit found on forge"
    assert result.host()["warnings"] == [
        "stage applications: no unit matched borgbackup-job-*.service"
    ]
    applied = guard({**dg_env, "XDG_STATE_HOME": str(tmp_path / "state")}, "apply", "forge",
                    config=config, command=("touch", str(marker)))  # fmt: skip
    assert applied.code == 1, applied.stderr
    assert not marker.exists()


def test_empty_stage_list_is_a_configuration_error(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("stages = []\n")

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 3
    assert "stages = [] guards nothing" in result.stderr


# -- case 6: units the host's manifest requires -----------------------------------------------


def manifest(host: TestHost, units: list[str], **stage_fields: object) -> None:
    stages = [{"name": "applications", "units": units, "timeout": None, **stage_fields}]
    host.write_file(MANIFEST_PATH, json.dumps({"schema_version": 1, "stages": stages}))


def test_masked_unit_required_by_the_manifest_fails_naming_it(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    # The sample unit's file is in /etc/systemd/system, where `systemctl mask` would put its
    # /dev/null link: mask it by hand (list-unit-files then says "masked", show LoadState=masked).
    host.ssh("ln -sf /dev/null /etc/systemd/system/restic-backups-etc.service && "
             "systemctl daemon-reload")  # fmt: skip
    manifest(host, ["restic-backups-home.service", "restic-backups-etc.service"])
    config = write_config(tmp_path, stage("restic-backups-*.service"))

    result = guard(dg_env, "run", "forge", config=config)

    assert result.code == 2, result.stderr
    assert "restic-backups-etc.service (masked)" in result.host()["error"]
    assert result.units()["restic-backups-etc.service"]["outcome"] != "succeeded"


def test_empty_critical_manifest_stage_fails_unless_the_manifest_allows_it(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    manifest(host, [])
    config = write_config(tmp_path, stage("restic-backups-*.service", critical=True))

    refused = guard(dg_env, "run", "forge", config=config)
    manifest(host, [], allow_empty=True)
    allowed = guard(dg_env, "run", "forge", config=config)

    assert refused.code == 2, refused.stderr
    assert refused.stages()["applications"]["outcome"] == "failed"
    assert allowed.stages()["applications"]["outcome"] == "succeeded"
    assert allowed.code == 0, allowed.stderr


# -- case 7: success receipts only for a whole, proven run ------------------------------------


def last_success(host: TestHost) -> dict[str, object] | None:
    found = host.ssh(f"cat {RECEIPTS}/last-success.json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def test_stage_subset_writes_no_success_receipt(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, stage("restic-backups-etc.service")
                          + stage("restic-backups-home.service", name="more"))  # fmt: skip

    subset = guard(dg_env, "run", "forge", "--stage", "applications", config=config)

    assert subset.code == 0, subset.stderr
    assert host.ssh(f"ls {RECEIPTS}").stdout.strip() == f"{subset.report['run_id']}.json"  # type: ignore[index]
    assert last_success(host) is None


def test_success_receipt_time_is_the_end_of_the_oldest_backup_of_the_run(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, stage("restic-backups-*.service"))
    host.ssh("systemctl start restic-backups-home.service")  # its run ends before the guard

    result = guard(dg_env, "run", "forge", "--max-age", "10m", config=config)

    assert result.code == 0, result.stderr
    units = result.units()
    assert units["restic-backups-home.service"]["outcome"] == "fresh"
    receipt = last_success(host)
    assert receipt is not None
    assert receipt["finished_at"] == units["restic-backups-home.service"]["finished_at"]
    assert receipt["guard_finished_at"] == result.report["finished_at"]  # type: ignore[index]


# -- case 8: freshness proves a real run ------------------------------------------------------


def test_backup_stopped_mid_run_is_not_fresh_and_runs_again(
    host: TestHost, dg_env: dict[str, str], tmp_path: Path
) -> None:
    unit = "syncoid-stopped.service"
    host.install_unit(unit, simple("echo run >> /var/lib/stopped.count; sleep 30"))
    host.daemon_reload()
    host.ssh(f"systemctl start {unit}; sleep 1; systemctl stop {unit}")
    config = write_config(tmp_path, stage(unit))
    host.install_unit(unit, simple("echo run >> /var/lib/stopped.count"))
    host.daemon_reload()

    result = guard(dg_env, "run", "forge", "--max-age", "10m", config=config)

    assert result.units()[unit]["outcome"] == "succeeded", result.units()[unit]
    assert host.ssh("cat /var/lib/stopped.count").stdout.count("run") == 2
