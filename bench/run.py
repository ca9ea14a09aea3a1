"""Benchmarks of deploy-guard on the testbed (root): writes docs/benchmarks.md.

    sudo .venv/bin/python -m bench.run [--quick]

What it measures (issue 6): orchestration overhead over the critical path, the same against
a sequential `systemctl start` baseline, scale (1/50/200 units in a stage), fan-out (1/4/8
hosts) and start-up time of `deploy-guard --help`. Numbers, never assertions: these machines
are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'poll_interval = "0.5s"\n'
DURATIONS = {"snapshots": [2.0], "replication": [3.0, 2.0], "applications": [4.0, 2.0, 1.0]}
PREFIX = {"snapshots": "bench-snap", "replication": "bench-repl", "applications": "bench-app"}


def unit_text(seconds: float) -> str:
    return f"[Service]\nType=oneshot\nExecStart=/bin/sleep {seconds}\n"


def install(host: TestHost, units: dict[str, float]) -> None:
    for name, seconds in units.items():
        host.install_unit(name, unit_text(seconds))
    host.daemon_reload()


def config_file(directory: Path, stages: dict[str, list[str]]) -> Path:
    text = CONFIG
    for stage, patterns in stages.items():
        text += f'\n[[stages]]\nname = "{stage}"\ntimeout = "10m"\nunits = {json.dumps(patterns)}\n'
    path = directory / "bench.toml"
    path.write_text(text)
    return path


def guard_seconds(testbed: Testbed, hosts: list[str], config: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    env = {**testbed.env(), "XDG_STATE_HOME": str(testbed.directory / "state")}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "deploy_guard", "run", *hosts, "--json", "-q", "--config",
         str(config), "--parallel", str(len(hosts))],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    report = json.loads(completed.stdout)
    if completed.returncode != 0:
        raise SystemExit(f"guard failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return elapsed, report


def sequential_seconds(host: TestHost, units: list[str]) -> float:
    """The original design's way: one blocking `systemctl start` after another."""
    started = time.monotonic()
    host.ssh("; ".join(f"systemctl start {unit}" for unit in units), timeout=900)
    return time.monotonic() - started


def overhead(testbed: Testbed, host: TestHost, directory: Path) -> dict[str, float]:
    units = {
        f"{PREFIX[stage]}-{index}.service": seconds
        for stage, durations in DURATIONS.items()
        for index, seconds in enumerate(durations)
    }
    install(host, units)
    config = config_file(directory, {stage: [f"{PREFIX[stage]}-*.service"] for stage in DURATIONS})
    critical = sum(max(durations) for durations in DURATIONS.values())
    fixed = fixed_seconds(testbed, host, directory)
    wall, _report = guard_seconds(testbed, [host.name], config)
    baseline = sequential_seconds(host, list(units))
    per_stage = (wall - critical - fixed) / len(DURATIONS)
    return {"wall": wall, "critical": critical, "fixed": fixed, "per_stage": per_stage,
            "sequential": baseline, "ratio": baseline / wall}  # fmt: skip


def fixed_seconds(testbed: Testbed, host: TestHost, directory: Path) -> float:
    """Start-up, SSH login, systemd check and discovery: a run whose one stage matches
    nothing (median of 3)."""
    config = directory / "fixed.toml"
    config.write_text(CONFIG + '[[stages]]\nname = "none"\ntimeout = "1m"\n'
                      'units = ["bench-none-*.service"]\n')  # fmt: skip
    return statistics.median(guard_seconds(testbed, [host.name], config)[0] for _ in range(3))


def scale(testbed: Testbed, host: TestHost, directory: Path, count: int) -> float:
    units = {f"bench-scale{count}-{i}.service": 2.0 for i in range(count)}
    install(host, units)
    config = config_file(directory, {"applications": [f"bench-scale{count}-*.service"]})
    wall, _report = guard_seconds(testbed, [host.name], config)
    return wall - 2.0


def fanout(testbed: Testbed, directory: Path, count: int) -> float:
    names = [f"fan{count}x{i}" for i in range(count)]
    hosts = [testbed.boot(name, sample_units=False) for name in names]
    try:
        for host in hosts:
            install(host, {"bench-fan.service": 3.0})
        config = config_file(directory, {"applications": ["bench-fan.service"]})
        wall, _report = guard_seconds(testbed, names, config)
        return wall
    finally:
        for host in hosts:
            host.stop()


def startup() -> float:
    command = [str(ROOT / ".venv/bin/deploy-guard"), "--help"]
    samples = []
    for _ in range(10):
        started = time.monotonic()
        subprocess.run(command, capture_output=True, check=True)
        samples.append(time.monotonic() - started)
    return statistics.median(samples)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}; hosts: Debian 12 containers (systemd 252) "
            "on loopback")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip 200 units and 8 hosts")
    arguments = parser.parse_args()
    with Testbed() as testbed:
        directory = testbed.directory
        host = testbed.boot("benchhost", sample_units=False)
        over = overhead(testbed, host, directory)
        counts = (1, 50) if arguments.quick else (1, 50, 200)
        scaled = {count: scale(testbed, host, directory, count) for count in counts}
        host.stop()
        fans = (1, 4) if arguments.quick else (1, 4, 8)
        fanned = {count: fanout(testbed, directory, count) for count in fans}
    start = startup()
    write_report(over, scaled, fanned, start)


def write_report(over: dict[str, float], scaled: dict[int, float], fanned: dict[int, float],
                 start: float) -> None:  # fmt: skip
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}. Reproduce (as root): "
        "`.venv/bin/python -m bench.run`. Numbers, not tests: the machine is shared and noisy.",
        "",
        "| what | measured | target |",
        "|---|---|---|",
        f"| fixed cost of a run: Python start-up, SSH login, systemd check, discovery "
        f"(a run with nothing to do) | {over['fixed']:.2f} s | |",
        f"| orchestration overhead: (wall {over['wall']:.2f} s - critical path "
        f"{over['critical']:.1f} s - fixed cost) / 3 stages | "
        f"{over['per_stage']:.2f} s per stage | <= 0.5 s per stage |",
        f"| sequential baseline (blocking starts, same units) | {over['sequential']:.2f} s, "
        f"{over['ratio']:.2f}x the guard's wall time | |",
    ]
    for count, extra in scaled.items():
        lines.append(f"| scale: {count} units of 2 s in one stage | {extra - over['fixed']:.2f} s "
                     "beyond the fixed cost | < 1 s |")  # fmt: skip
    one = fanned.get(1, 0.0)
    for count, wall in fanned.items():
        lines.append(f"| fan-out: {count} hosts, one 3 s unit each | {wall:.2f} s "
                     f"({wall / one:.2f}x one host) | <= 1.2x |")  # fmt: skip
    lines.append(f"| `deploy-guard --help` (median of 10) | {start * 1000:.0f} ms | < 150 ms |")
    (ROOT / "docs/benchmarks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
