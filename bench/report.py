"""Turn bench/results.json (written by `python -m bench.run`) into docs/benchmarks.md and
the plots docs/bench-units.svg and docs/bench-hosts.svg (matplotlib: `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CRITICAL_PATH = 10.0  # the seed set: 2 + 3 + 5 s
STAGES = 3

Data = dict[str, Any]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def walls(data: Data, build: str, key: str, field: str = "wall") -> list[float]:
    samples = data["results"].get(build, {}).get(key, [])
    return [s[field] for s in samples if s.get(field) is not None]


def span(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "not measured"
    low, high = min(values) * scale, max(values) * scale
    return f"{med(values) * scale:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


class Rows:
    def __init__(self, data: Data) -> None:
        self.data = data
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def fixed(self, build: str) -> float:
        return med(walls(self.data, build, "fixed"))

    def per_stage(self, build: str) -> list[float]:
        fixed = self.fixed(build)
        return [(w - CRITICAL_PATH - fixed) / STAGES for w in walls(self.data, build, "seed set")]

    def beyond(self, build: str, key: str, longest: float = 2.0) -> list[float]:
        fixed = self.fixed(build)
        return [w - longest - fixed for w in walls(self.data, build, key)]

    def ratio(self, build: str, key: str) -> list[float]:
        one = med(walls(self.data, build, "1 hosts"))
        return [w / one for w in walls(self.data, build, key)]

    def add(
        self,
        what: str,
        issue: str,
        target: float,
        unit: str,
        values: dict[str, list[float]],
        *,
        scale: float = 1.0,
        digits: int = 2,
    ) -> None:
        new = med(values["new"]) * scale
        met = "not measured" if math.isnan(new) else ("yes" if new <= target else "**no**")
        if new < 0:
            met = "not measurable in this run (the fixed cost varied more than this)"
        cells = [span(values.get(b, []), scale, digits) for b in ("today", "new")]
        cells = [c if c == "not measured" else c + unit for c in cells]
        self.rows.append((what, issue, *cells,
                          f"<= {target:g}{unit}", met))  # fmt: skip


def build_rows(data: Data) -> Rows:
    rows = Rows(data)
    both = ("today", "new")
    rows.add(
        "overhead per stage boundary: next stage's first start - this stage's last end "
        "(host clock, from the seed-set report; 2 boundaries)",
        "0.26 s per stage (as below)",
        0.05,
        " s",
        {b: walls(data, b, "seed set", "boundary") for b in both},
    )
    rows.add(
        "the same without artifact proofs (`[proof] enabled = false`; proofs came with "
        "issue 16, after today's code, so new only)",
        "",
        0.05,
        " s",
        {"new": walls(data, "new", "seed set, no proof", "boundary")},
    )
    rows.add(
        "overhead per stage beyond its longest unit, the old definition: (seed-set wall - "
        "10 s critical path - fixed cost) / 3",
        "0.26 s",
        0.05,
        " s",
        {b: rows.per_stage(b) for b in both},
    )
    rows.add(
        "start of the command to the first unit started (one host, loopback)",
        "~1.0 s",
        0.4,
        " s",
        {b: walls(data, b, "seed set", "first_start") for b in both},
    )
    rows.add(
        "200 units of 2 s in one stage, beyond the longest unit and the fixed cost",
        "3.38 s",
        0.5,
        " s",
        {b: rows.beyond(b, "200 units") for b in both},
    )
    rows.add(
        "200 units: first to last unit started (one `start` call)",
        "not measured",
        0.5,
        " s",
        {b: walls(data, b, "200 units", "start_spread") for b in both},
    )
    rows.add(
        "1000 units of 2 s in one stage, beyond the longest unit and the fixed cost "
        "(one sample per build)",
        "not measured",
        2.0,
        " s",
        {b: rows.beyond(b, "1000 units") for b in both},
    )
    rows.add(
        "1000 units: peak memory of deploy-guard",
        "not measured",
        200,
        " MiB",
        {b: walls(data, b, "1000 units", "max_rss_mib") for b in both},
        digits=0,
    )
    rows.add(
        "8 hosts / 1 host wall time, default settings",
        "2.0x",
        1.05,
        "x",
        {b: rows.ratio(b, "8 hosts") for b in both},
    )
    rows.add(
        "8 hosts / 1 host with `--parallel 8`",
        "1.19x",
        1.05,
        "x",
        {b: rows.ratio(b, "8 hosts p8") for b in both},
    )
    big = max((int(k) for k in data.get("reached", {}) if int(k) > 8), default=24)
    reached = data.get("reached", {}).get(str(big), big)
    rows.add(
        f"{reached} hosts / 1 host (as many containers as fit; {big} asked)",
        "not measured",
        1.15,
        "x",
        {b: rows.ratio(b, f"{big} hosts") for b in both},
    )
    rows.add(
        "`deploy-guard --help` (median of 10)",
        "92 ms",
        80,
        " ms",
        {b: walls(data, b, "help") for b in both},
        scale=1000,
        digits=0,
    )
    rows.add(
        "`deploy-guard run --help` (median of 10)",
        "~380 ms",
        150,
        " ms",
        {b: walls(data, b, "run help") for b in both},
        scale=1000,
        digits=0,
    )
    rows.add(
        "the seed set (1 + 6 + 8 units, critical path 10 s): deploy-guard wall time",
        "seed 40.9 s",
        10.5,
        " s",
        {b: walls(data, b, "seed set") for b in both},
    )
    return rows


def plot(data: Data) -> list[str]:
    try:
        import matplotlib  # noqa: PLC0415 (the bench extra)

        matplotlib.use("svg")
        from matplotlib import pyplot  # noqa: PLC0415
    except ImportError:
        return ["(plots skipped: matplotlib is not installed; `pip install -e '.[bench]'`)"]
    made = []
    for name, keys, label in (
        ("units", ["1 units", "50 units", "200 units", "1000 units"], "units in one stage"),
        ("hosts", ["1 hosts", "4 hosts", "8 hosts", *(f"{k} hosts" for k in
                   data.get("reached", {}) if int(k) > 8)], "hosts (default --parallel)"),
    ):  # fmt: skip
        figure, axes = pyplot.subplots(figsize=(6, 4))
        for build in ("today", "new"):
            reached = data.get("reached", {})  # hosts asked -> booted
            points = [
                (int(reached.get(k.split()[0], k.split()[0])), med(walls(data, build, k)))
                for k in keys
            ]
            points = [(x, y) for x, y in points if not math.isnan(y)]
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", label=build)
        axes.set_xlabel(label)
        axes.set_ylabel("wall time, s (median)")
        axes.set_title(f"deploy-guard run: wall time vs {label}")
        if name == "units":
            axes.set_xscale("log")
        axes.legend()
        axes.grid(alpha=0.3)
        path = ROOT / "docs" / f"bench-{name}.svg"
        figure.tight_layout()
        figure.savefig(path)
        pyplot.close(figure)
        made.append(f"![wall time vs {label}]({path.name})")
    return made


# The prose after the table (what changed, why targets were missed) is written by hand in
# docs/benchmarks.md, from this line on; a new run replaces only what comes before it.
PROSE_START = "## What changed"


def hand_written(path: Path) -> str:
    """The hand-written part of ``path``, kept across runs; empty for a new file."""
    text = path.read_text() if path.exists() else ""
    at = text.find(PROSE_START)
    return "" if at < 0 else "\n" + text[at:]


def main() -> None:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    out = ROOT / "docs" / "benchmarks.md"
    rows = build_rows(data)
    seed = data.get("seed", [])
    new_seed = walls(data, "new", "seed set")
    ratio = med(seed) / med(new_seed) if seed and new_seed else math.nan
    lines = [
        "# Benchmarks",
        "",
        f"Measured {data['started']} on {data['machine']}; each measure {data['times']} times, "
        "the two builds interleaved. Reproduce (as root): `.venv/bin/python -m bench.run && "
        ".venv/bin/python -m bench.report`. Numbers, not tests.",
        "",
        "**today** is the code before issue 15 (commit f03bba1), **new** this branch at "
        f"{data.get('head', 'HEAD')}, both exported by the bench and run with `python -P -m "
        "deploy_guard` against the same containers in the same run. Cells: median "
        "(min-max). The issue's column is what docs/benchmarks.md said before.",
        *(
            f"Re-measured later ({p['only']}): {p['started']}, {p['machine']}, new at {p['head']}."
            for p in data.get("partial", [])
        ),
        "",
        "| measure | issue says today | today, this run | new, this run | target | met |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows.rows),
        f"| the original design's script on the seed set, run on the host "
        f"(`seed-orchestrator.sh`) | 40.9 s | {span(seed)} s | | | |",
        f"| seed script / deploy-guard (new) | | | {ratio:.2f}x | | |",
        "",
        "Commands (each with `PYTHONPATH=<build>`, HOME and DEPLOY_GUARD_SSH_CONFIG from the "
        "testbed): "
        + "; ".join(f"{key}: `deploy-guard {cmd}`" for key, cmd in data["commands"].items()),
        "",
        *plot(data),
        hand_written(out),
    ]
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
