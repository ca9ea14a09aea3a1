"""Pre-flight checks: before stage 1, on every host, make sure the backups can succeed.

Each kind builds an argv (run through the transport, every argument quoted) and a pure
`judge_*` function decides from the answer. A check that cannot be evaluated (a command
missing on the host, output we cannot parse, a lost connection) fails: fail closed.
The host's failed units are always recorded, so that post-deploy verification (`verify`) can
tell the failures a deploy caused from those that were there before.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, assert_never

from deploy_guard.clock import SystemClock
from deploy_guard.config import (
    CommandCheck,
    FreeSpaceCheck,
    PreflightCheck,
    SystemStateCheck,
    TcpCheck,
    UnitCheck,
    UnitsExistCheck,
)
from deploy_guard.errors import DeployGuardError
from deploy_guard.events import Event
from deploy_guard.guard.stage import EngineSettings, StageContext, run_stage

# Re-exported (the `as` form) for engine.py and cli/apply.py until they import it from model.
from deploy_guard.model import CheckResult, Outcome, PreflightReport, StagePlan, UnitResult
from deploy_guard.systemd.client import SystemdClient, boot_id_from
from deploy_guard.systemd.parse import ParseError, UnitState, from_systemd, only_systemd_lines
from deploy_guard.transport.base import CommandResult
from deploy_guard.transport.timed import (
    BACKSTOP,
    EXIT_CANNOT_RUN,
    EXIT_NOT_FOUND,
    EXIT_TIMED_OUT,
    command_problem,
    last_line,
    timed_argv,
)

log = logging.getLogger(__name__)

QUICK_TIMEOUT: Final = 30.0  # df, show, is-system-running, list-units
# bash's /dev/tcp: neither python nor nc is on a minimal NixOS or Debian host. The script is
# a constant; host and port arrive as positional parameters, never inside the script.
TCP_SCRIPT: Final = 'exec 3<>"/dev/tcp/$1/$2"'
REQUIRED_UNITS_CHECK: Final = "required-units"
FAILED_UNITS_CHECK: Final = "failed-units"
# `systemctl is-system-running` states (systemctl(1)).
STATES_BLOCKING: Final = ("stopping", "maintenance")
STATES_BOOTING: Final = ("initializing", "starting")


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """One line of `df -P -B1`."""

    filesystem: str
    size: int
    used: int
    available: int
    mount_point: str

    @property
    def percent_free(self) -> float:
        """Free share as df counts it (reserved blocks are neither used nor available)."""
        usable = self.used + self.available
        return 100.0 * self.available / usable if usable else 0.0


# -- pure: parsing and judging ----------------------------------------------------------------

# The mount point may contain spaces; the numbers are anchored from the right of the filesystem.
_DF_LINE: Final = re.compile(r"^(\S.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+%|-)\s+(/.*)$")


def parse_df(text: str) -> DiskUsage:
    """Parse `df -P -B1 -- PATH`: a header line and one filesystem line.

    Raises:
        ParseError: not exactly one filesystem line of the POSIX format.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith("Filesystem"):
        raise ParseError(f"expected a header and one filesystem line, got {len(lines)} lines")
    match = _DF_LINE.match(lines[1])
    if match is None:
        raise ParseError(f"not a df -P line: {lines[1][:100]!r}")
    name, size, used, available, _capacity, mount_point = match.groups()
    return DiskUsage(name, int(size), int(used), int(available), mount_point)


def format_size(count: float) -> str:
    """Bytes for people: 512 B, 9.8 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def judge_free_space(check: FreeSpaceCheck, usage: DiskUsage) -> CheckResult:
    """Pass when every configured minimum is met."""
    free = f"{format_size(usage.available)} free ({usage.percent_free:.1f}%)"
    where = f"{check.path} (on {usage.mount_point})"
    wanted = []
    if check.min_free is not None and usage.available < check.min_free:
        wanted.append(f"at least {format_size(check.min_free)} ({check.min_free} bytes)")
    if check.min_free_percent is not None and usage.percent_free < check.min_free_percent:
        wanted.append(f"at least {check.min_free_percent:g}%")
    if wanted:
        message = f"{where}: only {free}, {usage.available} bytes; needs {' and '.join(wanted)}"
        return CheckResult(check.name, check.kind, False, message)
    return CheckResult(check.name, check.kind, True, f"{where}: {free}")


def judge_units_exist(name: str, states: Sequence[UnitState], asked: Sequence[str]) -> CheckResult:
    """Pass when systemd knows every unit (LoadState not not-found) and can load it."""
    missing = [
        unit for unit, state in zip(asked, states, strict=True) if state.load_state == "not-found"
    ]
    broken = [
        f"{unit} ({state.load_state})"
        for unit, state in zip(asked, states, strict=True)
        if state.load_state not in ("loaded", "not-found")
    ]
    problems = []
    if missing:
        problems.append(f"missing on the host: {', '.join(missing)}")
    if broken:
        problems.append(f"cannot be loaded: {', '.join(broken)}")
    if problems:
        return CheckResult(name, "units_exist", False, "; ".join(problems))
    return CheckResult(name, "units_exist", True, f"all {len(asked)} units exist")


def _own_output(unit: str, log_tail: Sequence[str]) -> list[str]:
    """The unit's own lines (else all of them), so that the error fits in one message."""
    own = [line for line in log_tail if not from_systemd(unit, line)]
    return own or list(log_tail)


def judge_unit(check: UnitCheck, result: UnitResult) -> CheckResult:
    """Pass only on a proven run that succeeded now (a skipped or unknown run is no proof)."""
    joined = " (joined the run already in progress)" if result.joined else ""
    if result.outcome is Outcome.SUCCEEDED:
        message = f"{check.unit} succeeded{joined}, invocation {result.invocation_id}"
        return CheckResult(check.name, check.kind, True, message)
    detail = result.reason or result.result or "no reason recorded"
    message = f"{check.unit} {result.outcome.value}{joined}: {detail}"
    tail = [line for line in result.log_tail if line != result.reason]
    lines = _own_output(check.unit, tail)[-3:]
    if lines:
        message += f"; last log lines: {' | '.join(lines)}"
    return CheckResult(check.name, check.kind, False, message)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# bash: "bash: line 1: connect: Connection refused" then "bash: line 1: /dev/tcp/h/p: ...";
# a name that does not resolve: "bash: line 1: nas.lan: Name or service not known" first.
_BASH_PREFIX: Final = re.compile(r"^bash: (line \d+: )?(connect: )?")


def _bash_reason(stderr: str) -> str:
    """The first thing bash said about the connection, without its prefixes."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return _BASH_PREFIX.sub("", lines[0]) if lines else "no error output"


def judge_tcp(check: TcpCheck, result: CommandResult) -> CheckResult:
    """Pass when bash opened the connection before `timeout` ran out."""
    address = _address(check.host, check.port)
    if result.ok:
        return CheckResult(check.name, check.kind, True, f"connected to {address} from the host")
    if result.exit_status == EXIT_TIMED_OUT:
        message = f"no connection to {address} within {check.timeout:g}s"
    elif result.exit_status in (EXIT_CANNOT_RUN, EXIT_NOT_FOUND):
        message = (
            f"cannot test {address}: `timeout` (coreutils) or `bash` is missing on the "
            f"host: {last_line(result.stderr)}"
        )
    else:
        message = f"cannot connect to {address}: {_bash_reason(result.stderr)}"
    return CheckResult(check.name, check.kind, False, message)


def judge_system_state(
    check: SystemStateCheck, state: str, failed_units: Sequence[str] = ()
) -> CheckResult:
    """`systemctl is-system-running` must not be stopping/maintenance; anything we do not
    recognise (offline, unknown, no answer) fails."""
    if state == "running":
        return CheckResult(check.name, check.kind, True, "system state running")
    if state in STATES_BOOTING:
        return CheckResult(check.name, check.kind, True, f"system state {state} (still booting)")
    if state == "degraded":
        failed = f"{len(failed_units)} failed units: {', '.join(failed_units) or '?'}"
        if check.allow_degraded:
            return CheckResult(check.name, check.kind, True, f"system state degraded ({failed})")
        return CheckResult(check.name, check.kind, False, f"system state degraded ({failed})")
    if state in STATES_BLOCKING:
        message = f"system state {state}: the host is shutting down or in maintenance"
    else:
        message = f"cannot tell the system state: is-system-running printed {state or 'nothing'!r}"
    return CheckResult(check.name, check.kind, False, message)


def judge_command(check: CommandCheck, result: CommandResult) -> CheckResult:
    problem = command_problem(result, check.argv[0], check.timeout)
    if problem is None:
        return CheckResult(check.name, check.kind, True, f"{check.argv[0]} exited 0")
    return CheckResult(check.name, check.kind, False, problem)


# -- I/O: asking the host ---------------------------------------------------------------------


def _run(client: SystemdClient, argv: Sequence[str], timeout: float) -> CommandResult:
    return client.transport.run(argv, timeout=timeout, check=False)


def _free_space(client: SystemdClient, check: FreeSpaceCheck) -> CheckResult:
    result = _run(client, ["df", "-P", "-B1", "--", check.path], QUICK_TIMEOUT)
    if not result.ok:
        reason = last_line(result.stderr) or f"exit status {result.exit_status}"
        return CheckResult(check.name, check.kind, False, f"df {check.path} failed: {reason}")
    try:
        usage = parse_df(result.stdout)
    except ParseError as exc:
        return CheckResult(check.name, check.kind, False, f"cannot read df {check.path}: {exc}")
    return judge_free_space(check, usage)


def _units_exist(client: SystemdClient, name: str, units: Sequence[str]) -> CheckResult:
    units = list(dict.fromkeys(units))
    return judge_units_exist(name, client.show(units), units)


def _unit(
    client: SystemdClient, check: UnitCheck, context: StageContext, start_units: bool
) -> CheckResult:
    if not start_units:  # `plan` starts nothing: only show that the unit is there
        exists = _units_exist(client, check.name, [check.unit])
        note = "; not started (plan starts nothing)"
        return dataclasses.replace(exists, kind=check.kind, message=exists.message + note)
    # The engine's own stage runner: the same proof rules as a backup (journal, invocation id,
    # deadline, stop and SIGKILL), rather than a second, weaker way of watching a unit.
    plan = StagePlan(f"preflight-{check.name}", True, check.timeout, None, False, (check.unit,))
    cursor = client.journal_cursor()
    run = run_stage(context, plan)
    if run.fatal is not None:
        return CheckResult(check.name, check.kind, False, f"lost contact: {run.fatal}")
    result = run.result.units[0]
    if result.outcome is not Outcome.SUCCEEDED and only_systemd_lines(check.unit, result.log_tail):
        tail = client.unit_journal(check.unit, context.settings.log_lines or 20, cursor)
        result = dataclasses.replace(result, log_tail=tail or result.log_tail)
    return judge_unit(check, result)


def _tcp(client: SystemdClient, check: TcpCheck) -> CheckResult:
    argv = timed_argv(
        ["bash", "-c", TCP_SCRIPT, "bash", check.host, str(check.port)], check.timeout
    )
    return judge_tcp(check, _run(client, argv, check.timeout + BACKSTOP))


def _system_state(client: SystemdClient, check: SystemStateCheck) -> CheckResult:
    state = client.system_state()
    failed = client.failed_units() if state == "degraded" else ()
    return judge_system_state(check, state, failed)


def _command(client: SystemdClient, check: CommandCheck) -> CheckResult:
    result = _run(client, timed_argv(check.argv, check.timeout), check.timeout + BACKSTOP)
    return judge_command(check, result)


def _evaluate(
    client: SystemdClient, check: PreflightCheck, context: StageContext, start_units: bool
) -> CheckResult:
    """One check; a host problem while evaluating it fails it (never raises for the host)."""
    try:
        match check:
            case FreeSpaceCheck():
                return _free_space(client, check)
            case UnitsExistCheck():
                return _units_exist(client, check.name, check.units)
            case UnitCheck():
                return _unit(client, check, context, start_units)
            case TcpCheck():
                return _tcp(client, check)
            case SystemStateCheck():
                return _system_state(client, check)
            case CommandCheck():
                return _command(client, check)
            case _:
                assert_never(check)
    except DeployGuardError as exc:
        reason = getattr(exc, "reason", str(exc))
        return CheckResult(check.name, check.kind, False, f"could not be evaluated: {reason}")


def _ignore(_event: Event) -> None:
    """Check units are reported in the pre-flight list, not as stage events."""


def run_preflight(
    client: SystemdClient,
    checks: Sequence[PreflightCheck],
    *,
    required_units: Sequence[str] = (),
    context: StageContext | None = None,
    start_units: bool = True,
) -> PreflightReport:
    """Run ``checks`` (and, with ``required_units``, a units_exist check of them) in order,
    then record the host's failed units and boot id. Never raises for a host problem: a check
    that cannot be evaluated fails, and so does a failed-unit list that cannot be read.

    ``context`` supplies the clock and engine settings for `unit` checks (default: the real
    clock); its event sink is not used. ``start_units=False`` (plan) only checks that a `unit`
    check's unit exists.
    """
    base = context or StageContext(client, SystemClock(), EngineSettings(), _ignore)
    # A check unit must run now: --max-age never makes it `fresh`.
    settings = dataclasses.replace(base.settings, max_age=None)
    quiet = dataclasses.replace(base, client=client, settings=settings, emit=_ignore)
    results: list[CheckResult] = []
    if required_units:
        try:
            results.append(_units_exist(client, REQUIRED_UNITS_CHECK, required_units))
        except DeployGuardError as exc:
            reason = f"could not be evaluated: {getattr(exc, 'reason', exc)}"
            results.append(CheckResult(REQUIRED_UNITS_CHECK, "units_exist", False, reason))
    results += [_evaluate(client, check, quiet, start_units) for check in checks]
    # Recorded after the checks: a check unit that failed just now was not broken by a deploy.
    failed: tuple[str, ...] = ()
    boot: CommandResult | None = None
    try:  # the failed units and the boot id in one round trip
        listed, boot = client.failed_units_and_boot_id()
        failed = client.failed_units_from(listed)
    except DeployGuardError as exc:
        reason = f"cannot list the failed units: {getattr(exc, 'reason', exc)}"
        results.append(CheckResult(FAILED_UNITS_CHECK, "system_state", False, reason))
    boot_id = boot_id_from(boot) if boot is not None else ""
    if not boot_id:
        why = boot.stderr.strip() if boot is not None else "the host did not answer"
        log.warning("%s: cannot read the boot id: %s", client.host, why)
    return PreflightReport(tuple(results), failed, boot_id or None)


def preflight_json(report: PreflightReport) -> list[dict[str, str]]:
    """The report's `preflight` list: each check's name, kind, outcome and message."""
    return [
        {
            "name": check.name,
            "kind": check.kind,
            "outcome": "passed" if check.ok else "failed",
            "message": check.message,
        }
        for check in report.checks
    ]
