"""`[[health]]` checks after a deploy: a command on the host or an HTTP request, retried
until a deadline (morph-style). Pure retry logic; the probes do the I/O."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Final, assert_never

from deploy_guard.clock import Clock
from deploy_guard.config import (
    CommandHealthCheck,
    HealthCheck,
    HttpHealthCheck,
)
from deploy_guard.errors import (
    DeployGuardError,
)
from deploy_guard.model import HealthResult
from deploy_guard.systemd.client import SystemdClient
from deploy_guard.transport.timed import BACKSTOP, EXIT_NOT_FOUND, command_problem, timed_argv

CURL_TIMED_OUT: Final = 28
CURL_HTTP_ERROR: Final = 22

Probe = Callable[[], tuple[bool, str]]
HttpGet = Callable[[str, float], tuple[bool, str]]


def error_reason(exc: DeployGuardError) -> str:
    return str(getattr(exc, "reason", exc))


def retry_check(check: HealthCheck, probe: Probe, clock: Clock) -> HealthResult:
    """Run ``probe`` until it passes, ``check.attempts`` are used, or the next try would
    start after ``check.deadline`` (counted from the first)."""
    started = clock.monotonic()
    attempt = 0
    while True:
        attempt += 1
        ok, message = probe()
        if ok:
            return HealthResult(check.name, check.kind, True, attempt, message)
        waited = clock.monotonic() - started
        if attempt >= check.attempts or waited + check.interval > check.deadline:
            tries = "1 try" if attempt == 1 else f"{attempt} tries"
            message = f"{message} (failed {tries} in {waited:.0f}s)"
            return HealthResult(check.name, check.kind, False, attempt, message)
        clock.sleep(check.interval)


def judge_curl(
    exit_status: int, stdout: str, stderr: str, url: str, timeout: float
) -> tuple[bool, str]:
    """`curl -fsS -o /dev/null -w %{http_code}` on the host."""
    reason = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
    if exit_status == 0:
        return True, f"HTTP {stdout.strip()} from {url} (from the host)"
    if exit_status == EXIT_NOT_FOUND:
        return False, (
            f'curl is not installed on the host: install it or use from = "workstation" ({reason})'
        )
    if exit_status == CURL_TIMED_OUT:
        return False, f"no answer from {url} within {timeout:g}s (from the host)"
    if exit_status == CURL_HTTP_ERROR:
        return False, f"{url}: HTTP {stdout.strip() or '?'} (from the host)"
    return False, f"{url}: curl exited {exit_status}: {reason}"


# -- I/O --------------------------------------------------------------------------------------


def fetch_url(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url`` from this machine: passes on a status below 400 (redirects followed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400, f"HTTP {response.status} from {url}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return False, f"cannot reach {url}: {exc.reason}"
    except TimeoutError:
        return False, f"no answer from {url} within {timeout:g}s"
    except OSError as exc:
        return False, f"cannot reach {url}: {exc}"


def _command_probe(client: SystemdClient, check: CommandHealthCheck) -> Probe:
    def probe() -> tuple[bool, str]:
        argv = timed_argv(check.argv, check.timeout)
        try:
            result = client.transport.run(argv, timeout=check.timeout + BACKSTOP, check=False)
        except DeployGuardError as exc:
            return False, f"cannot run {check.argv[0]}: {error_reason(exc)}"
        problem = command_problem(result, check.argv[0], check.timeout)
        return (True, f"{check.argv[0]} exited 0") if problem is None else (False, problem)

    return probe


def _http_probe(client: SystemdClient, check: HttpHealthCheck, http_get: HttpGet) -> Probe:
    def probe() -> tuple[bool, str]:
        if check.source == "workstation":
            return http_get(check.url, check.timeout)
        argv = [
            "curl",
            "-fsS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            f"{check.timeout:g}",
            check.url,
        ]
        try:
            result = client.transport.run(argv, timeout=check.timeout + BACKSTOP, check=False)
        except DeployGuardError as exc:
            return False, f"cannot run curl on the host: {error_reason(exc)}"
        return judge_curl(
            result.exit_status, result.stdout, result.stderr, check.url, check.timeout
        )

    return probe


def run_health_check(
    client: SystemdClient, check: HealthCheck, clock: Clock, http_get: HttpGet = fetch_url
) -> HealthResult:
    match check:
        case CommandHealthCheck():
            return retry_check(check, _command_probe(client, check), clock)
        case HttpHealthCheck():
            return retry_check(check, _http_probe(client, check, http_get), clock)
        case _:
            assert_never(check)
