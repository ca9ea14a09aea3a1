"""`apply`: the gate between the guard and the deploy, the override record, the deploy run.

`decide_gate` is pure. `record_override` and `run_deploy` do the I/O; the CLI calls them in
order: guard -> gate -> (record) -> deploy -> report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from deploy_guard.deploy.tools import DeployPlan
from deploy_guard.errors import DeployGuardError, ExitCode, without_host
from deploy_guard.model import DeployStep, Override, RunReport
from deploy_guard.statefiles import private_directory
from deploy_guard.transport.base import Transport, quote_argv

log = logging.getLogger(__name__)

AUDIT_FILE: Final = "audit.jsonl"
# After Ctrl-C, how long a deploy command may take to stop before it is killed.
DEPLOY_STOP_GRACE: Final = 30.0


class OverrideNotRecorded(DeployGuardError):
    """The override could not be written down, so it is not honoured."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Which hosts to deploy after the guard, and why."""

    deploy: tuple[str, ...]
    skipped: tuple[str, ...]
    refused: bool
    overridden: bool
    exit_code: ExitCode  # the code apply ends with unless the deploy itself fails


def decide_gate(report: RunReport, *, keep_going: bool, override: str | None) -> GateDecision:
    """Open the gate only for hosts whose guard exited 0, unless overridden on the record."""
    passed = tuple(host.host for host in report.hosts if host.exit_code is ExitCode.OK)
    failed = tuple(host.host for host in report.hosts if host.exit_code is not ExitCode.OK)
    worst = max((host.exit_code for host in report.hosts), default=ExitCode.CRITICAL)
    if not report.hosts:  # nothing was guarded: nothing is proven
        return GateDecision((), (), True, False, ExitCode.CRITICAL)
    if report.exit_code is ExitCode.INTERRUPTED:  # never deploy after Ctrl-C, override or not
        return GateDecision((), failed, True, False, ExitCode.INTERRUPTED)
    if not failed:
        return GateDecision(passed, (), False, False, ExitCode.OK)
    if override:
        everyone = tuple(host.host for host in report.hosts)  # in the order they were guarded
        return GateDecision(everyone, (), False, True, ExitCode.OK)
    if keep_going and passed:
        return GateDecision(passed, failed, False, False, max(worst, ExitCode.PARTIAL))
    return GateDecision((), failed, True, False, worst)


def guard_failures(report: RunReport) -> list[dict[str, str | None]]:
    """What failed, for the audit record: host errors and every unit that did not succeed."""
    failures: list[dict[str, str | None]] = []
    for host in report.hosts:
        if host.error:
            failures.append({"host": host.host, "error": host.error})
        for stage in host.stages:
            for unit in stage.units:
                if not unit.outcome.is_success:
                    failures.append(
                        {"host": host.host, "stage": stage.name, "unit": unit.unit,
                         "outcome": unit.outcome.value, "reason": unit.reason}
                    )  # fmt: skip
    return failures


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
    failures: list[dict[str, str | None]]
    commands: tuple[tuple[str, ...], ...]

    def audit_line(self) -> str:
        return json.dumps({
            "at": self.override.at.isoformat().replace("+00:00", "Z"),
            "user": self.override.by,
            "hosts": list(self.hosts),
            "reason": self.override.reason,
            "run_id": self.run_id,
            "failures": self.failures,
            "command": [list(argv) for argv in self.commands],
        }, ensure_ascii=False)  # fmt: skip

    def journal_message(self) -> str:
        return (f"deploy-guard override: run {self.run_id} by {self.override.by}: "
                f"{self.override.reason}")  # fmt: skip


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
        raise OverrideNotRecorded(f"cannot record the override in {path}: {exc.strerror}; "
                                  "nothing was deployed") from exc  # fmt: skip
    return path


def journal_override(
    record: OverrideRecord, hosts: Sequence[str], connect: Callable[[str], Transport]
) -> list[str]:
    """Log the override in each host's journal (`logger -t deploy-guard`); the warnings for
    hosts where that failed (a host we cannot reach is already in the audit record)."""
    warnings = []
    for host in hosts:
        try:
            transport = connect(host)
            try:
                argv = ["logger", "-t", "deploy-guard", "--", record.journal_message()]
                transport.run(argv, timeout=30, check=True)
            finally:
                transport.close()
        except DeployGuardError as exc:
            warnings.append(
                f"{host}: could not log the override in its journal: {without_host(exc, host)}"
            )
    return warnings


def deploy_environment(
    run_id: str, hosts: Sequence[str], report_path: Path | None
) -> dict[str, str]:
    """What the deploy command learns from us (a Taskfile task or script can read these)."""
    env = {"DEPLOY_GUARD_RUN_ID": run_id, "DEPLOY_GUARD_HOSTS": ",".join(hosts)}
    if report_path is not None:
        env["DEPLOY_GUARD_REPORT"] = str(report_path)
    return env


class DeployInterrupted(Exception):
    """Ctrl-C during the deploy; carries what every step did up to then."""

    def __init__(self, steps: tuple[DeployStep, ...]) -> None:
        super().__init__("interrupted during the deploy")
        self.steps = steps


def _run_one(argv: Sequence[str], env: Mapping[str, str], output: IO[str] | None) -> int:
    """Run one deploy command, its output streaming (to ``output`` when --json needs stdout).

    Raises:
        KeyboardInterrupt: after the command ended. The command got the same SIGINT (it is in
            our process group), so it is given the time to stop cleanly (nixos-rebuild in the
            middle of a switch); a second Ctrl-C kills it.
    """
    log.info("deploying: %s", quote_argv(argv))
    try:
        process = subprocess.Popen(list(argv), env={**os.environ, **env}, stdout=output)
    except FileNotFoundError:
        log.error("deploy command not found: %s", argv[0])
        return 127
    except OSError as exc:  # exists but cannot be executed: like the shell's 126
        log.error("cannot execute the deploy command %s: %s", argv[0], exc.strerror)
        return 126
    try:
        return process.wait()
    except KeyboardInterrupt:
        # On a terminal the command got the same SIGINT; make sure it did (a signal sent to
        # deploy-guard alone reaches only us), then give it time to stop cleanly.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=DEPLOY_STOP_GRACE)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):  # a second Ctrl-C, or stuck
            process.kill()
            process.wait()
        raise


def run_deploy(
    plan: DeployPlan, env: Mapping[str, str], output: IO[str] | None = None
) -> tuple[DeployStep, ...]:
    """Run the plan's commands (in order, or together when the plan is parallel). In order,
    the first failure stops the rest: those steps keep exit_code None (not run).

    Raises:
        DeployInterrupted: Ctrl-C; finished steps keep their status, the interrupted ones
            have 130, the ones never started None.
    """
    steps = [DeployStep(command.argv, command.hosts) for command in plan.commands]
    if plan.parallel:
        return _run_parallel(plan, env, output, steps)
    for index, command in enumerate(plan.commands):
        try:
            code = _run_one(command.argv, {**env, **command.env}, output)
        except KeyboardInterrupt:
            steps[index] = DeployStep(command.argv, command.hosts, 130)
            raise DeployInterrupted(tuple(steps)) from None
        steps[index] = DeployStep(command.argv, command.hosts, code)
        if code != 0:
            break
    return tuple(steps)


def _run_parallel(
    plan: DeployPlan, env: Mapping[str, str], output: IO[str] | None, steps: list[DeployStep]
) -> tuple[DeployStep, ...]:
    codes: dict[int, int] = {}

    def one(index: int) -> None:
        command = plan.commands[index]
        codes[index] = _run_one(command.argv, {**env, **command.env}, output)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(steps))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        # The commands got the SIGINT too; wait for them to stop.
        for thread in threads:
            thread.join()
        finished = tuple(
            DeployStep(s.argv, s.hosts, codes.get(i, 130)) for i, s in enumerate(steps)
        )
        raise DeployInterrupted(finished) from None
    return tuple(DeployStep(s.argv, s.hosts, codes[i]) for i, s in enumerate(steps))
