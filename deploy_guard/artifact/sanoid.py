"""sanoid (`sanoid.service`): every dataset sanoid manages has a snapshot younger than its
most frequent period. sanoid takes no snapshot when one exists for the period (FIELD-NOTES),
so "new" here means "recent enough", not "made by this run"."""

from __future__ import annotations

import configparser
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from deploy_guard.artifact.base import (
    Artifact,
    ArtifactStatus,
    CheckOutput,
    Params,
    age_text,
    tool_failed,
    unverified,
)

KIND: Final = "sanoid"
CONFIG_PATH: Final = "/etc/sanoid/sanoid.conf"
SNAPSHOT_PREFIX: Final = "autosnap_"
# Seconds per period; "frequently" is frequent_period minutes (default 15).
PERIODS: Final = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 31 * 86400,
    "yearly": 366 * 86400,
}
# sanoid.defaults.conf ([template_default]): the counts a dataset has unless it sets its own.
DEFAULTS: Final = {
    "frequently": "0",
    "frequent_period": "15",
    "hourly": "48",
    "daily": "90",
    "weekly": "0",
    "monthly": "6",
    "yearly": "0",
    "autosnap": "yes",
}

_SCRIPT: Final = (
    'date +%s; if [ -n "$1" ]; then echo "--- sanoid.conf"; cat -- "$1" || exit; fi; '
    'echo "--- zfs"; exec zfs list -Hp -t snapshot -o name,creation'
)


def argv(params: Params) -> list[str]:
    """With ``datasets`` (dataset -> period in seconds, from the NixOS module) only the
    snapshots are listed; without, sanoid's configuration file is read too."""
    config = "" if params.get("datasets") else str(params.get("config", CONFIG_PATH))
    return ["sh", "-c", _SCRIPT, "sh", config]


def describe(params: Params) -> str:
    datasets = params.get("datasets")
    which = ", ".join(sorted(datasets)) if datasets else f"each dataset of {CONFIG_PATH}"
    return f"sanoid: {which} has a snapshot younger than its most frequent period"


def direct_params(unit: str, exec_argv: Sequence[str]) -> dict[str, Any]:
    """sanoid's `--configdir DIR` (or `--configdir=DIR`) from ExecStart, else /etc/sanoid."""
    args = list(exec_argv)
    for index, arg in enumerate(args):
        directory = None
        if arg.startswith("--configdir="):
            directory = arg.removeprefix("--configdir=")
        elif arg == "--configdir" and index + 1 < len(args):
            directory = args[index + 1]
        if directory:
            return {"config": directory.rstrip("/") + "/sanoid.conf"}
    return {}


def _is_yes(value: str) -> bool:
    return value.strip().lower() in ("1", "yes", "true", "on")


def periods_from_config(text: str) -> dict[str, int]:
    """dataset -> its most frequent period (seconds), for every dataset sanoid snapshots.

    Follows `use_template` (comma-separated, `template_NAME` sections) over
    `[template_default]` and sanoid's built-in defaults; datasets with autosnap off, or with
    every count 0, are left out.

    Raises:
        configparser.Error: not an INI file.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    base = dict(DEFAULTS)
    if parser.has_section("template_default"):
        base.update(parser["template_default"])
    result = {}
    for section in parser.sections():
        if section.startswith("template_"):
            continue
        values = dict(base)
        for template in parser[section].get("use_template", "").split(","):
            if template.strip() and parser.has_section(f"template_{template.strip()}"):
                values.update(parser[f"template_{template.strip()}"])
        values.update(parser[section])
        if not _is_yes(values.get("autosnap", "yes")):
            continue
        period = most_frequent_period(values)
        if period is not None:
            result[section] = period
    return result


def most_frequent_period(values: Mapping[str, str]) -> int | None:
    """The shortest period whose count is above 0 (seconds), None when all are 0."""
    if values.get("frequently", "0").strip() not in ("", "0"):
        return int(values.get("frequent_period", "15")) * 60
    for name, seconds in PERIODS.items():
        if values.get(name, "0").strip() not in ("", "0"):
            return seconds
    return None


def _sections(stdout: str) -> tuple[str, str | None, str]:
    now, _, rest = stdout.partition("\n")
    config = None
    if rest.startswith("--- sanoid.conf\n"):
        config, _, rest = rest.removeprefix("--- sanoid.conf\n").partition("--- zfs\n")
    else:
        rest = rest.removeprefix("--- zfs\n")
    return now.strip(), config, rest


def judge(output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """Decide from `date +%s`, optionally sanoid.conf, and `zfs list -Hp -t snapshot`."""
    if output.exit_status != 0:
        return tool_failed(KIND, "zfs list", output)
    now_text, config, listing = _sections(output.stdout)
    datasets: Mapping[str, Any] | None = params.get("datasets")
    try:
        now = datetime.fromtimestamp(int(now_text), UTC)
        if not datasets:
            datasets = periods_from_config(config or "")
    except (ValueError, configparser.Error) as exc:
        return unverified(KIND, f"cannot read sanoid's configuration or the host's clock: {exc}")
    if not datasets:
        return unverified(KIND, "sanoid manages no dataset that it snapshots")
    newest: dict[str, tuple[str, datetime]] = {}
    for line in listing.splitlines():
        name, _, creation = line.partition("\t")
        dataset, _, snapshot = name.partition("@")
        if not creation.strip().isdigit():
            return unverified(KIND, f"cannot read zfs's answer: {line!r}")
        created = datetime.fromtimestamp(int(creation), UTC)
        newer = dataset not in newest or created > newest[dataset][1]
        if snapshot.startswith(SNAPSHOT_PREFIX) and dataset in datasets and newer:
            newest[dataset] = (name, created)
    missing = sorted(set(datasets) - set(newest))
    if missing:
        return Artifact(
            ArtifactStatus.MISSING,
            KIND,
            detail=(f"sanoid exited 0 but {', '.join(missing)} has no sanoid snapshot"),
        )
    stale = []
    for dataset, (name, created) in sorted(newest.items()):
        age = (now - created).total_seconds()
        if age >= float(datasets[dataset]):
            stale.append(
                f"{name} is {age_text(age)} old (period {age_text(float(datasets[dataset]))})"
            )
    oldest_name, oldest_time = min(newest.values(), key=lambda item: item[1])
    if stale:
        return Artifact(
            ArtifactStatus.STALE,
            KIND,
            oldest_name,
            oldest_time,
            "sanoid exited 0 but the newest snapshot of " + "; ".join(stale),
        )
    return Artifact(
        ArtifactStatus.VERIFIED,
        KIND,
        oldest_name,
        oldest_time,
        f"{len(newest)} dataset(s) have a snapshot within their period",
    )
