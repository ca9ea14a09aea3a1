"""Benchmarks of deploy-guard on the testbed (root): writes docs/benchmarks.md and the plots.

    sudo .venv/bin/python -m bench.run [--quick] [--repeat 3] [--hosts 24]

Every measure of issue 15, side by side in one run for two builds of deploy-guard: "today"
(the code before issue 15, exported from git at BASELINE into a temporary directory) and
"new" (this checkout); plus the original design's script (../shared/seed-orchestrator.sh),
run on the host as its design says, on the same 15 units. Each measure runs --repeat times;
the median and the spread (min-max) are reported. Numbers, never assertions: these machines
are shared and noisy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.testbed.host import TestHost
from tests.testbed.testbed import Testbed

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed-orchestrator.sh"
# The last commit before issue 15 (main when the work started).
BASELINE = "f03bba1"
CONFIG = 'poll_interval = "0.5s"\n'

# The original design's unit set: 1 + 6 + 8 units, critical path 2 + 3 + 5 = 10 s.
SEED_UNITS = {
    "snapshots": {"sanoid.service": 2.0},
    "replication": {f"syncoid-pool{i}.service": s for i, s in enumerate([3, 2, 2, 1, 1, 1])},
    "applications": {
        **{f"restic-backup-r{i}.service": s for i, s in enumerate([5, 3, 2, 1])},
        **{f"pgbackrest-db{i}-full-backup.service": s for i, s in enumerate([4, 2, 1, 1])},
    },
}
SEED_PATTERNS = {
    "snapshots": ["sanoid.service"],
    "replication": ["syncoid-*.service"],
    "applications": ["restic-backup-*.service", "pgbackrest-*-full-backup.service"],
}
CRITICAL_PATH = sum(max(units.values()) for units in SEED_UNITS.values())


@dataclass
class Sample:
    wall: float
    first_start: float | None = None  # command start -> first unit started (host clock)
    start_spread: float | None = None  # first -> last unit started
    # Stage boundaries: the next stage's first start minus this stage's last end (host
    # clock, from the report): detection plus the round trips between two stages.
    boundary: float | None = None
    max_rss_mib: float | None = None


@dataclass
class Measure:
    samples: list[Sample] = field(default_factory=list)

    def values(self, pick: Callable[[Sample], float | None]) -> list[float]:
        return [value for s in self.samples if (value := pick(s)) is not None]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def unit_text(seconds: float) -> str:
    return f"[Service]\nType=oneshot\nExecStart=/bin/sleep {seconds}\n"


def install(host: TestHost, units: dict[str, float], *, timers: bool = False) -> None:
    for name, seconds in units.items():
        host.install_unit(name, unit_text(seconds))
        if timers:  # the seed script finds units with list-units: they must be loaded
            timer = name.removesuffix(".service") + ".timer"
            host.install_unit(timer, "[Timer]\nOnCalendar=2099-01-01\n")
    host.daemon_reload()
    if timers:
        names = [name.removesuffix(".service") + ".timer" for name in units]
        host.ssh("systemctl start " + " ".join(names))


def config_file(directory: Path, name: str, stages: dict[str, list[str]],
                allow_empty: bool = False, proof: bool = True) -> Path:  # fmt: skip
    text = CONFIG if proof else CONFIG + "\n[proof]\nenabled = false\n"
    for stage, patterns in stages.items():
        text += f'\n[[stages]]\nname = "{stage}"\ntimeout = "10m"\nunits = {json.dumps(patterns)}\n'
        # The fixed-cost run guards nothing on purpose: without this it fails (issue 11, case 5).
        text += "allow_empty = true\n" if allow_empty else ""
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Build:
    name: str
    tree: Path  # a directory holding the deploy_guard package

    def argv(self, *args: str) -> list[str]:
        # -P: not the current directory first on sys.path, only PYTHONPATH (the build).
        return [sys.executable, "-P", "-m", "deploy_guard", *args]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PYTHONPATH": str(self.tree)}


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def guard(testbed: Testbed, build: Build, hosts: list[str], config: Path,
          parallel: int | None = None) -> Sample:  # fmt: skip
    env = {**build.env(testbed.env()), "XDG_STATE_HOME": str(testbed.directory / "state")}
    args = ["run", *hosts, "--json", "-q", "--config", str(config)]
    args += ["--parallel", str(parallel)] if parallel else []
    started_wall, started = time.time(), time.monotonic()
    process = subprocess.Popen(build.argv(*args), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=build.tree)  # fmt: skip
    stdout, stderr = process.communicate()
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{build.name}: guard failed ({process.returncode}): {stderr[-3000:]}")
    report = json.loads(stdout)
    gaps = []
    for host in report["hosts"]:
        stages = [s["units"] for s in host["stages"] if s["units"]]
        for this, following in itertools.pairwise(stages):
            ends = [parse_time(u["finished_at"]) for u in this if u["finished_at"]]
            starts_next = [parse_time(u["started_at"]) for u in following if u["started_at"]]
            if ends and starts_next:
                gaps.append(min(starts_next) - max(ends))
    starts = [
        parse_time(unit["started_at"])
        for host in report["hosts"]
        for stage in host["stages"]
        for unit in stage["units"]
        if unit["started_at"]
    ]
    return Sample(
        elapsed,
        first_start=min(starts) - started_wall if starts else None,
        start_spread=max(starts) - min(starts) if starts else None,
        boundary=statistics.mean(gaps) if gaps else None,
    )


def guard_rss(testbed: Testbed, build: Build, hosts: list[str], config: Path) -> Sample:
    """Like `guard`, with the peak memory of the deploy-guard process (wait4)."""
    env = {**build.env(testbed.env()), "XDG_STATE_HOME": str(testbed.directory / "state")}
    args = ["run", *hosts, "--json", "-q", "--config", str(config)]
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(build.argv(*args), env=env, stdout=out,
                                   stderr=subprocess.DEVNULL, cwd=build.tree)  # fmt: skip
        _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.monotonic() - started
        out.seek(0)
        report = json.loads(out.read())
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{build.name}: guard failed: {json.dumps(report)[-2000:]}")
    return Sample(elapsed, max_rss_mib=usage.ru_maxrss / 1024)


def repeat(times: int, measure: Callable[[], Sample]) -> Measure:
    return Measure([measure() for _ in range(times)])


@contextmanager
def exported(commit: str) -> Iterator[Path]:
    """The deploy_guard package at ``commit``, so that edits during a run change nothing."""
    with tempfile.TemporaryDirectory(prefix=f"dg-{commit}-") as directory:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "deploy_guard"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        yield Path(directory)


def seed_seconds(host: TestHost) -> float:
    """The original design's script, run on the host as root (as its design says)."""
    host.write_file("/root/seed-orchestrator.sh", SEED.read_text(), mode=0o755)
    started = time.monotonic()
    result = host.ssh("/root/seed-orchestrator.sh", check=False, timeout=900)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"seed script failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def startup(build: Build, *args: str, times: int = 10) -> list[float]:
    samples = []
    env = build.env(dict(os.environ))
    for _ in range(times):
        started = time.monotonic()
        subprocess.run(build.argv(*args), env=env, capture_output=True, check=True,
                       cwd=build.tree)  # fmt: skip
        samples.append(time.monotonic() - started)
    return samples


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load} at the end; hosts: "
            "Debian 12 containers (systemd 252) on loopback")  # fmt: skip


class Bench:
    def __init__(self, testbed: Testbed, builds: list[Build], times: int) -> None:
        self.testbed, self.builds, self.times = testbed, builds, times
        self.results: dict[str, dict[str, Measure]] = {b.name: {} for b in builds}
        self.seed = Measure()
        self.commands: dict[str, str] = {}
        self.large_times = times

    def record(self, key: str, measure: Callable[[Build], Sample], times: int = 0,
               only: str = "") -> None:  # fmt: skip
        # Interleaved: one sample of each build in turn, so noise hits both alike.
        for _ in range(times or self.times):
            for build in self.builds:
                if only and build.name != only:
                    continue
                sample = measure(build)
                self.results[build.name].setdefault(key, Measure()).samples.append(sample)
                print(f"{key:>14} {build.name:>6}: {sample}", flush=True)

    def one(self, how: Callable[..., Sample], hosts: list[str], config: Path,
            *extra: int) -> Callable[[Build], Sample]:  # fmt: skip
        return lambda build: how(self.testbed, build, hosts, config, *extra)

    def seed_set(self) -> None:
        host = self.testbed.boot("benchseed", sample_units=False)
        try:
            install(host, {u: s for units in SEED_UNITS.values() for u, s in units.items()},
                    timers=True)  # fmt: skip
            directory = self.testbed.directory
            config = config_file(directory, "seed", SEED_PATTERNS)
            self.commands["seed set"] = f"run {host.name} --json -q --config seed.toml"
            empty = config_file(
                directory, "empty", {"none": ["bench-none-*.service"]}, allow_empty=True
            )
            self.record("fixed", lambda b: guard(self.testbed, b, [host.name], empty))
            self.record("seed set", lambda b: guard(self.testbed, b, [host.name], config))
            # Artifact proofs (issue 16, after "today") run on each stage boundary; the same
            # run without them shows what the engine itself costs there. "today" has no
            # [proof] table (its strict config would refuse the key), so "new" only.
            bare = config_file(directory, "seed-noproof", SEED_PATTERNS, proof=False)
            self.commands["seed set, no proof"] = (
                f"run {host.name} --json -q --config seed-noproof.toml"
            )
            self.record(
                "seed set, no proof",
                lambda b: guard(self.testbed, b, [host.name], bare),
                only="new",
            )
            for _ in range(self.times):
                self.seed.samples.append(Sample(seed_seconds(host)))
                print(f"seed script: {self.seed.samples[-1]}", flush=True)
        finally:
            host.stop()

    def scale(self, counts: list[int]) -> None:
        host = self.testbed.boot("benchscale", sample_units=False)
        try:
            for count in counts:
                units = {f"bench-scale{count}-{i}.service": 2.0 for i in range(count)}
                install(host, units)
                stages = {"applications": [f"bench-scale{count}-*.service"]}
                config = config_file(self.testbed.directory, f"scale{count}", stages)
                self.commands[f"{count} units"] = (
                    f"run {host.name} --json -q --config scale{count}.toml"
                )
                how = guard_rss if count >= 1000 else guard
                times = self.large_times if count >= 1000 else 0
                self.record(f"{count} units", self.one(how, [host.name], config), times)
        finally:
            host.stop()

    def fanout(self, counts: list[int]) -> dict[int, int]:
        booted: list[TestHost] = []
        reached: dict[int, int] = {}
        try:
            for count in sorted(counts):
                while len(booted) < count:
                    try:
                        host = self.testbed.boot(f"fan{len(booted)}", sample_units=False)
                    except Exception as exc:  # as many containers as fit
                        print(f"cannot boot host {len(booted) + 1}: {exc}", flush=True)
                        break
                    install(host, {"bench-fan.service": 3.0})
                    booted.append(host)
                names = [host.name for host in booted[:count]]
                reached[count] = len(names)
                config = config_file(self.testbed.directory, "fan", {"apps": ["bench-fan.service"]})
                self.commands[f"{count} hosts"] = (
                    f"run {' '.join(names)} --json -q --config fan.toml  # default --parallel"
                )
                self.record(f"{count} hosts", self.one(guard, names, config))
                if count == 8:
                    self.record("8 hosts p8", self.one(guard, names, config, 8))
        finally:
            for host in booted:
                host.stop()
        return reached

    def startup(self) -> None:
        for build in self.builds:
            for key, args in (("help", ("--help",)), ("run help", ("run", "--help"))):
                self.results[build.name][key] = Measure([Sample(s) for s in startup(build, *args)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer points, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=24, help="the largest fan-out measured")
    parser.add_argument(
        "--large-repeat",
        type=int,
        default=0,
        help="repetitions of the 1000-unit measure (default: --repeat)",
    )
    parser.add_argument("--only", default="", help="comma-separated: seed,scale,fanout,startup")
    arguments = parser.parse_args()
    times = 1 if arguments.quick else arguments.repeat
    only = set(filter(None, arguments.only.split(","))) or {"seed", "scale", "fanout", "startup"}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    with exported(BASELINE) as today, exported(head) as new, Testbed() as testbed:
        builds = [Build("today", today), Build("new", new)]
        bench = Bench(testbed, builds, times)
        bench.large_times = arguments.large_repeat or times
        if "startup" in only:
            bench.startup()
        if "seed" in only:
            bench.seed_set()
        if "scale" in only:
            bench.scale([1, 50, 200] if arguments.quick else [1, 50, 200, 1000])
        reached: dict[int, int] = {}
        if "fanout" in only:
            counts = [1, 8] if arguments.quick else [1, 4, 8, arguments.hosts]
            reached = bench.fanout(counts)
    data = {"started": started, "machine": machine(), "times": times, "reached": reached,
            "argv": sys.argv[1:], "head": head,
            "commands": bench.commands,
            "seed": [s.wall for s in bench.seed.samples],
            "results": {build: {key: [vars(s) for s in m.samples] for key, m in measures.items()}
                        for build, measures in bench.results.items()}}  # fmt: skip
    out = ROOT / "bench" / "results.json"
    if arguments.only and out.exists():  # a partial run replaces only what it measured
        old = json.loads(out.read_text())
        for build, measures in data["results"].items():
            old["results"].setdefault(build, {}).update(measures)
        old["commands"].update(data["commands"])
        old["seed"] = data["seed"] or old["seed"]
        old["reached"] = data["reached"] or old["reached"]
        old.setdefault("partial", []).append(
            {"started": started, "only": arguments.only, "machine": data["machine"],
             "head": head})  # fmt: skip
        data = old
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}; now: python -m bench.report")


if __name__ == "__main__":
    main()
