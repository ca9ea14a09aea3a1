"""Running the deploy (and `build_first`'s build): the plan's commands, in order or together,
their output streaming, Ctrl-C passed on and waited for."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from deploy_guard.deploy.tools import DeployPlan
from deploy_guard.model import DeployStep
from deploy_guard.transport import process
from deploy_guard.transport.base import quote_argv

log = logging.getLogger(__name__)

# After Ctrl-C, how long a deploy command may take to stop before it is killed.
DEPLOY_STOP_GRACE: Final = 30.0


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
        child = process.start(argv, env, process.Streams(stdout=output))
    except process.CannotStart as exc:
        if exc.missing:
            log.error("deploy command not found: %s", argv[0])
        else:  # exists but cannot be executed: like the shell's 126
            log.error("cannot execute the deploy command %s: %s", argv[0], exc.reason)
        return exc.status
    try:
        return child.wait()
    except KeyboardInterrupt:
        # On a terminal the command got the same SIGINT; make sure it did (a signal sent to
        # deploy-guard alone reaches only us), then give it time to stop cleanly.
        process.stop(child, DEPLOY_STOP_GRACE, interrupt=True)
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
