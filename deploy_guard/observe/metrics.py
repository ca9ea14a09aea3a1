"""The Prometheus textfile each host keeps for node_exporter: `deploy_guard.prom`.

Pure: `render` builds the file with prometheus_client from this run's result for one host and
the timestamps kept from the previous file (`parse_previous`); `observe` does the reading and
the atomic write on the host. Last-success timestamps only move on success, so an alert on
their age fires whether the guard fails or stops running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from deploy_guard.model import HostResult, RunReport, UnitResult
from deploy_guard.observe.receipts import oldest_proven_backup

TEXTFILE_NAME: Final = "deploy_guard.prom"

RUN_LAST: Final = "deploy_guard_run_last_timestamp_seconds"
RUN_LAST_SUCCESS: Final = "deploy_guard_run_last_success_timestamp_seconds"
RUN_DURATION: Final = "deploy_guard_run_duration_seconds"
RUN_EXIT_CODE: Final = "deploy_guard_run_exit_code"
UNIT_SUCCESS: Final = "deploy_guard_unit_success"
UNIT_DURATION: Final = "deploy_guard_unit_duration_seconds"
UNIT_LAST_SUCCESS: Final = "deploy_guard_unit_last_success_timestamp_seconds"
UNIT_LABELS: Final = ("stage", "unit")

# (stage, unit) -> seconds since the epoch
UnitTimes = Mapping[tuple[str, str], float]


@dataclass(frozen=True, slots=True)
class PreviousMetrics:
    """What the last file said about successes; 0 and absent both mean "never"."""

    run_last_success: float = 0.0
    unit_last_success: UnitTimes = field(default_factory=dict)


def parse_previous(text: str) -> PreviousMetrics:
    """The last-success timestamps of a `deploy_guard.prom` written earlier.

    Raises:
        ValueError: the text is not in Prometheus' text format.
    """
    # prometheus_client costs ~150 ms to import (as paramiko, FIELD-NOTES): only when used.
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    run_last_success = 0.0
    units: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == RUN_LAST_SUCCESS:
                    run_last_success = float(sample.value)
                elif sample.name == UNIT_LAST_SUCCESS:
                    key = (sample.labels.get("stage", ""), sample.labels.get("unit", ""))
                    units[key] = float(sample.value)
    except (IndexError, KeyError, TypeError) as exc:  # the parser's own are ValueErrors
        raise ValueError(f"not in Prometheus' text format: {exc}") from exc
    return PreviousMetrics(run_last_success, units)


def _unit_last_success(unit: UnitResult, report: RunReport) -> float:
    """When a successful unit's proven run ended (a `fresh` unit's earlier run, too)."""
    return (unit.finished_at or report.finished_at).timestamp()


def _unit_times(host: HostResult, report: RunReport, previous: PreviousMetrics) -> UnitTimes:
    """Last successes: this run's where a unit succeeded; the previous file's where it did
    not; and the previous file's for stages this run did not include (`--stage`). Units
    that left a stage that ran are dropped, so a removed backup does not alert forever."""
    ran_stages = {stage.name for stage in host.stages}
    times = {
        key: value for key, value in previous.unit_last_success.items() if key[0] not in ran_stages
    }
    for stage in host.stages:
        for unit in stage.units:
            key = (stage.name, unit.unit)
            if unit.outcome.is_success:
                times[key] = _unit_last_success(unit, report)
            else:
                times[key] = previous.unit_last_success.get(key, 0.0)
    return times


HELP: Final = {
    RUN_LAST: "When the last guard run on this host ended",
    RUN_LAST_SUCCESS: "When the oldest backup of the last whole proven guard run of this host "
    "ended (0: never)",
    RUN_DURATION: "How long the last guard run took",
    RUN_EXIT_CODE: "This host's exit code in the last run (0 ok, 1 partial, 2 critical)",
    UNIT_SUCCESS: "1 when the unit's run was proven successful in the last run, else 0",
    UNIT_DURATION: "How long the unit's last run took",
    UNIT_LAST_SUCCESS: "When the unit's last proven successful run ended (0: never)",
}


def render(report: RunReport, host: HostResult, previous: PreviousMetrics) -> bytes:
    """The whole `deploy_guard.prom` for ``host`` after ``report`` (a fresh registry, so the
    file holds only deploy-guard's metrics)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: PLC0415

    registry = CollectorRegistry()
    run = {
        name: Gauge(name, HELP[name], registry=registry)
        for name in (RUN_LAST, RUN_LAST_SUCCESS, RUN_DURATION, RUN_EXIT_CODE)
    }
    units = {
        name: Gauge(name, HELP[name], UNIT_LABELS, registry=registry)
        for name in (UNIT_SUCCESS, UNIT_DURATION, UNIT_LAST_SUCCESS)
    }
    finished = report.finished_at.timestamp()
    backups_end = oldest_proven_backup(host)  # a whole proven run only (issue 11, case 7)
    run[RUN_LAST].set(finished)
    run[RUN_LAST_SUCCESS].set(
        backups_end.timestamp() if backups_end is not None else previous.run_last_success
    )
    run[RUN_DURATION].set((report.finished_at - report.started_at).total_seconds())
    run[RUN_EXIT_CODE].set(int(host.exit_code))
    for stage in host.stages:
        for unit in stage.units:
            units[UNIT_SUCCESS].labels(stage.name, unit.unit).set(int(unit.outcome.is_success))
            if unit.started_at is not None and unit.finished_at is not None:
                seconds = (unit.finished_at - unit.started_at).total_seconds()
                units[UNIT_DURATION].labels(stage.name, unit.unit).set(max(seconds, 0.0))
    for (stage_name, unit_name), value in sorted(_unit_times(host, report, previous).items()):
        units[UNIT_LAST_SUCCESS].labels(stage_name, unit_name).set(value)
    return generate_latest(registry)
