"""Post-deploy verification (`apply` only): is the host healthy after the deploy, and if not,
roll it back.

On each deployed host: wait for a reboot when one is expected (a new boot id, so that no check
passes against the old boot), wait for `systemctl is-system-running` to settle, compare the
failed units with the pre-flight record (new failures mean the deploy broke something), and
run the `[[health]]` checks with retries and a deadline (morph-style). Every wait is bounded
and time comes from an injected clock. The decisions are pure functions; the rest asks the
host through the transport, each argument quoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from deploy_guard.clock import Clock
from deploy_guard.config import (
    NIXOS_ROLLBACK,
    HealthCheck,
    VerifyConfig,
)
from deploy_guard.deploy.health import HttpGet, error_reason, fetch_url, run_health_check
from deploy_guard.errors import (
    CommandTimeout,
    ConnectionLost,
    DeployGuardError,
    HostUnreachable,
)
from deploy_guard.model import (
    DeployOutcome,
    FailedUnit,
    HealthResult,
    HostVerification,
    PreflightReport,
    RollbackResult,
    RollbackStep,
    VerifyReport,
)
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import only_systemd_lines
from deploy_guard.transport.base import Transport

log = logging.getLogger(__name__)

# `systemctl is-system-running` while booting or activating; anything else has settled.
UNSETTLED: Final = ("initializing", "starting")
HEALTHY_STATES: Final = ("running", "degraded")  # degraded is judged by the unit comparison
ROLLBACK_OUTPUT_LINES: Final = 20


@dataclass(frozen=True, slots=True)
class VerifySettings:
    """`[verify]` as the engine uses it (plus the top-level `log_lines`)."""

    settle_timeout: float = 300.0
    expect_reboot: bool = False
    reboot_timeout: float = 600.0
    rollback: bool = False
    rollback_commands: tuple[tuple[str, ...], ...] = NIXOS_ROLLBACK
    rollback_timeout: float = 600.0
    poll_interval: float = 2.0
    log_lines: int = 20

    @classmethod
    def from_config(
        cls, config: VerifyConfig, *, log_lines: int = 20, rollback: bool = False
    ) -> VerifySettings:
        """``rollback``: --rollback-on-failure (it can only switch rollback on)."""
        return cls(
            settle_timeout=config.settle_timeout,
            expect_reboot=config.expect_reboot,
            reboot_timeout=config.reboot_timeout,
            rollback=config.rollback or rollback,
            rollback_commands=tuple(tuple(argv) for argv in config.rollback_commands),
            rollback_timeout=config.rollback_timeout,
            log_lines=log_lines,
        )


# -- pure decisions ---------------------------------------------------------------------------


def boot_problem(expect_reboot: bool, old_boot_id: str | None, boot_id: str) -> str | None:
    """Why the boot id says the checks must not run yet (or at all), or None."""
    if not expect_reboot:
        return None
    if old_boot_id is None:
        return "cannot tell whether the host rebooted: no boot id was recorded before the deploy"
    if boot_id == old_boot_id:
        return f"the host did not reboot (boot id still {boot_id})"
    return None


def state_problem(state: str | None, settled: bool, waited: float) -> str | None:
    """Why the system state after the deploy is not healthy, or None."""
    if state is None:
        return "cannot read the system state"
    if not settled:
        return f"the host did not settle within {waited:g}s: still {state}"
    if state not in HEALTHY_STATES:
        return f"system state after the deploy: {state or 'nothing'}"
    return None


def compare_failed(
    before: Sequence[str] | None, now: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(new failures, recovered units). Without a pre-deploy record every failure is new:
    fail closed rather than excuse a failure nobody saw before."""
    if before is None:
        return tuple(sorted(now)), ()
    earlier, current = set(before), set(now)
    return tuple(sorted(current - earlier)), tuple(sorted(earlier - current))


def _wait(clock: Clock, deadline: float, interval: float) -> bool:
    """Sleep one interval unless the deadline has passed; False when it has."""
    if clock.monotonic() >= deadline:
        return False
    clock.sleep(max(0.0, min(interval, deadline - clock.monotonic())))
    return True


def wait_for_boot(
    client: SystemdClient, old_boot_id: str | None, settings: VerifySettings, clock: Clock
) -> tuple[str | None, str | None]:
    """(boot id, problem): with a reboot expected, poll (bounded) until the boot id is new,
    through the connection dropping and the host coming back."""
    timeout = settings.reboot_timeout if settings.expect_reboot else settings.settle_timeout
    deadline = clock.monotonic() + timeout
    boot_id, error = None, "no answer"
    while True:
        try:
            boot_id = client.boot_id()
        except DeployGuardError as exc:  # rebooting: refused, lost, timed out
            boot_id, error = None, error_reason(exc)
        if boot_id is not None:
            problem = boot_problem(settings.expect_reboot, old_boot_id, boot_id)
            if problem is None or old_boot_id is None:
                return boot_id, problem
        if not _wait(clock, deadline, settings.poll_interval):
            break
    if boot_id is None:
        return None, f"the host is unreachable {timeout:g}s after the deploy: {error}"
    return boot_id, boot_problem(settings.expect_reboot, old_boot_id, boot_id)


def wait_until_settled(
    client: SystemdClient, settings: VerifySettings, clock: Clock
) -> tuple[str | None, bool]:
    """(state, settled): poll `is-system-running` until it leaves starting/initializing."""
    deadline = clock.monotonic() + settings.settle_timeout
    state: str | None = None
    while True:
        try:
            state = client.system_state()
        except DeployGuardError as exc:
            log.debug("%s: is-system-running: %s", client.host, exc)
        if state is not None and state not in UNSETTLED:
            return state, True
        if not _wait(clock, deadline, settings.poll_interval):
            return state, False


def _unit_log(client: SystemdClient, unit: str, invocation_id: str, lines: int) -> tuple[str, ...]:
    tail = client.log_tail(invocation_id, lines) if invocation_id else ()
    if only_systemd_lines(unit, tail):
        # No invocation (it never ran: a dependency failed), or its own output was filed
        # without the invocation id (see SystemdClient.unit_journal): the unit's last lines.
        tail = client.unit_journal(unit, lines) or tail
    return tail


def describe_failed_unit(client: SystemdClient, unit: str, lines: int, clock: Clock) -> FailedUnit:
    """The failed run's result and last journal lines; never raises for a host problem."""
    try:
        state = client.show([unit])[0]
        tail = _unit_log(client, unit, state.invocation_id, lines)
        if not tail:  # journald writes asynchronously (FIELD-NOTES)
            clock.sleep(0.5)
            tail = _unit_log(client, unit, state.invocation_id, lines)
    except DeployGuardError as exc:
        return FailedUnit(unit, log_tail=(f"cannot read the unit's log: {error_reason(exc)}",))
    return FailedUnit(unit, state.result or None, state.invocation_id or None, tail)


def unreachable(
    old_boot_id: str | None, health: Sequence[HealthCheck], problems: Sequence[str]
) -> VerifyReport:
    """The report for a host that could not be reached: every check failed, none run."""
    skipped = tuple(
        HealthResult(check.name, check.kind, False, 0, "not run: host unreachable")
        for check in health
    )
    return VerifyReport(None, False, old_boot_id, None, checks=skipped, problems=tuple(problems))


def verify_host(
    client: SystemdClient,
    *,
    before: PreflightReport | None,
    old_boot_id: str | None,
    health: Sequence[HealthCheck],
    settings: VerifySettings,
    clock: Clock,
    http_get: HttpGet = fetch_url,
) -> VerifyReport:
    """Verify one host after its deploy. Never raises for a host problem: an unreachable
    host, a missing reboot or a state that does not settle is one of the report's problems."""
    boot_id, problem = wait_for_boot(client, old_boot_id, settings, clock)
    problems = [problem] if problem else []
    if boot_id is None:  # unreachable: nothing on the host can be checked
        return unreachable(old_boot_id, health, problems)
    state, settled = wait_until_settled(client, settings, clock)
    if problem := state_problem(state, settled, settings.settle_timeout):
        problems.append(problem)
    new: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()
    try:
        before_units = before.failed_units if before is not None else None
        new, recovered = compare_failed(before_units, client.failed_units())
    except DeployGuardError as exc:
        problems.append(f"cannot list the failed units: {error_reason(exc)}")
    failed = tuple(describe_failed_unit(client, unit, settings.log_lines, clock) for unit in new)
    checks = tuple(run_health_check(client, check, clock, http_get) for check in health)
    return VerifyReport(
        state, settled, old_boot_id, boot_id, failed, recovered, checks, tuple(problems)
    )


def rollback(
    client: SystemdClient, commands: Sequence[Sequence[str]], *, timeout: float = 600.0
) -> RollbackResult:
    """Run the rollback commands on the host, in order, each once; stop at the first that
    fails. Not under `timeout(1)`: killing an activation half-way is worse than waiting."""
    steps: list[RollbackStep] = []
    for argv in commands:
        try:
            result = client.transport.run(list(argv), timeout=timeout, check=False)
        except DeployGuardError as exc:  # e.g. the activation restarted the network
            steps.append(
                RollbackStep(tuple(argv), None, error=f"outcome unknown: {error_reason(exc)}")
            )
            break
        output = (result.stdout + result.stderr).splitlines()[-ROLLBACK_OUTPUT_LINES:]
        steps.append(RollbackStep(tuple(argv), result.exit_status, tuple(output)))
        if not result.ok:
            break
    return RollbackResult(tuple(steps))


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """What `verify_deployed_host` needs besides the client (built by the CLI)."""

    before: PreflightReport | None
    health: tuple[HealthCheck, ...]
    settings: VerifySettings
    clock: Clock
    http_get: HttpGet = fetch_url


def verify_deployed_host(client: SystemdClient, request: VerifyRequest) -> HostVerification:
    """Verify a host whose deploy was attempted; when it fails and rollback is on, roll back
    once and verify again (no reboot expected then). Call only for hosts that were deployed."""
    before = request.before
    old_boot_id = before.boot_id if before is not None else None
    first = verify_host(
        client,
        before=before,
        old_boot_id=old_boot_id,
        health=request.health,
        settings=request.settings,
        clock=request.clock,
        http_get=request.http_get,
    )
    if first.ok or not request.settings.rollback:
        return HostVerification(client.host, first)
    log.warning("%s: verification failed; rolling back", client.host)
    result = rollback(
        client, request.settings.rollback_commands, timeout=request.settings.rollback_timeout
    )
    settings = replace(request.settings, expect_reboot=False)
    second = verify_host(
        client,
        before=before,
        old_boot_id=None,
        health=request.health,
        settings=settings,
        clock=request.clock,
        http_get=request.http_get,
    )
    return HostVerification(client.host, first, result, second)


def _report_json(report: VerifyReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "system_state": report.system_state,
        "settled": report.settled,
        "old_boot_id": report.old_boot_id,
        "boot_id": report.boot_id,
        "rebooted": report.rebooted,
        "new_failed_units": [
            {
                "unit": unit.unit,
                "result": unit.result,
                "invocation_id": unit.invocation_id,
                "log_tail": list(unit.log_tail),
            }
            for unit in report.new_failed_units
        ],
        "recovered_units": list(report.recovered_units),
        "checks": [
            {
                "name": check.name,
                "kind": check.kind,
                "outcome": "passed" if check.ok else "failed",
                "attempts": check.attempts,
                "message": check.message,
            }
            for check in report.checks
        ],
        "problems": list(report.problems),
    }


def verification_json(verification: HostVerification) -> dict[str, object]:
    """A host's `verify` object in the JSON report: the first verification, the rollback
    (null when none ran) and the verification after it."""
    rolled_back = verification.rollback
    return {
        "exit_code": int(verification.exit_code),
        "verify": _report_json(verification.verify),
        "rollback": None
        if rolled_back is None
        else {
            "ok": rolled_back.ok,
            "steps": [
                {
                    "command": list(step.argv),
                    "exit_code": step.exit_status,
                    "output": list(step.output),
                    "error": step.error,
                }
                for step in rolled_back.steps
            ],
        },
        "after_rollback": (
            None
            if verification.after_rollback is None
            else _report_json(verification.after_rollback)
        ),
    }


# Connection problems a rebooting or restarting host causes; anything else (a changed host
# key, rejected credentials, a bad ssh config) will not go away by waiting.
TRANSIENT: Final = (HostUnreachable, ConnectionLost, CommandTimeout)


def attempted_hosts(deploy: DeployOutcome) -> tuple[str, ...]:
    """Hosts whose deploy command ran (whatever its exit code): the only ones to verify, and
    the only ones that may be rolled back."""
    ran = {host for step in deploy.steps if step.exit_code is not None for host in step.hosts}
    return tuple(host for host in deploy.deployed_hosts if host in ran)


def connect_and_verify(
    host: str, connect: Callable[[], Transport], request: VerifyRequest
) -> HostVerification:
    """Open a connection (retrying while the host reboots or restarts sshd, bounded like the
    wait for the reboot), run `verify_deployed_host`, close. Never raises for a host problem."""
    settings, clock = request.settings, request.clock
    wait = settings.reboot_timeout if settings.expect_reboot else settings.settle_timeout
    deadline = clock.monotonic() + wait
    while True:
        try:
            transport = connect()
            break
        except TRANSIENT as exc:
            reason = error_reason(exc)
            if _wait(clock, deadline, settings.poll_interval):
                continue
        except DeployGuardError as exc:
            reason = error_reason(exc)
        old_boot_id = request.before.boot_id if request.before is not None else None
        problem = f"cannot connect after the deploy: {reason}"
        return HostVerification(host, unreachable(old_boot_id, request.health, [problem]))
    try:
        return verify_deployed_host(SystemdClient(transport), request)
    finally:
        transport.close()
