"""What every proof kind shares: the artifact value, the check's raw answer, time parsing and
the newest-artifact decision. Pure; nothing here runs a command."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Final

from deploy_guard.durations import format_duration

Params = Mapping[str, Any]


class ArtifactStatus(StrEnum):
    """Whether the backup a unit was meant to make is there (README, "What counts as success")."""

    VERIFIED = "verified"  # the tool's own records show an artifact made by this run
    MISSING = "missing"  # the tool's records show no artifact at all
    STALE = "stale"  # the newest artifact predates this run (or is older than its period)
    UNVERIFIED = "unverified"  # no proof could be made either way


@dataclass(frozen=True, slots=True)
class Artifact:
    """The proof of one unit's backup, as the report shows it."""

    status: ArtifactStatus
    kind: str
    id: str | None = None
    time: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class CheckOutput:
    """What a check command printed on the host (stdout and stderr, and how it exited)."""

    exit_status: int
    stdout: str
    stderr: str = ""


class ProofParseError(ValueError):
    """The tool's answer is not in the format we know: nothing can be proven from it."""


def unverified(kind: str, detail: str) -> Artifact:
    return Artifact(ArtifactStatus.UNVERIFIED, kind, detail=detail)


def tool_failed(kind: str, tool: str, output: CheckOutput) -> Artifact:
    """A listing command that failed proves nothing either way."""
    lines = (output.stderr or output.stdout).strip().splitlines()
    last = f": {lines[-1].strip()}" if lines else ""
    return unverified(kind, f"{tool} exited {output.exit_status}{last}")


_FRACTION: Final = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any, *, local_offset: timezone | None = None) -> datetime:
    """A timestamp as tools print it: epoch seconds, or ISO 8601 (restic prints nanoseconds,
    borg 1.x prints local time without an offset: ``local_offset`` says which).

    Raises:
        ProofParseError: not a time.
    """
    if isinstance(value, bool):
        raise ProofParseError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ProofParseError(f"not a time: {value!r}")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value.strip():
        raise ProofParseError(f"not a time: {value!r}")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProofParseError(f"not a time: {value!r}") from exc
    if parsed.tzinfo is None:
        if local_offset is None:
            raise ProofParseError(f"time without a UTC offset: {value!r}")
        parsed = parsed.replace(tzinfo=local_offset)
    return parsed.astimezone(UTC)


def parse_offset(text: str) -> timezone:
    """`date +%z` output (``+0100``) as a timezone.

    Raises:
        ProofParseError: not an offset.
    """
    match = re.fullmatch(r"([+-])(\d\d)(\d\d)", text.strip())
    if match is None:
        raise ProofParseError(f"not a UTC offset: {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def age_text(seconds: float) -> str:
    """3 days, 5h, 40s: how old something is, in words a reader takes in at once."""
    days = seconds / 86400
    if days >= 2:
        return f"{days:.0f} days"
    return format_duration(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One artifact the tool listed: its id and when it was made (ended, when known)."""

    id: str
    time: datetime


def newest_decision(
    kind: str,
    candidates: Sequence[Candidate],
    started_at: datetime,
    *,
    tool: str,
    what: str,
    where: str = "in the repository",
) -> Artifact:
    """Verified when the newest artifact was made after the run started, stale when it
    predates the run, missing when there is none. ``what`` names it ("snapshot").

    Times from tools with one-second resolution are compared with the run's start rounded
    down to the second, so an artifact made in the run's first second still counts.
    """
    if not candidates:
        return Artifact(
            ArtifactStatus.MISSING,
            kind,
            detail=f"{tool} exited 0 but there is no {what} {where}",
        )
    newest = max(candidates, key=lambda candidate: candidate.time)
    threshold = started_at
    if newest.time.microsecond == 0:
        threshold = started_at.replace(microsecond=0)
    if newest.time >= threshold:
        return Artifact(
            ArtifactStatus.VERIFIED,
            kind,
            newest.id,
            newest.time,
            f"{what} {newest.id} made by this run",
        )
    age = age_text((started_at - newest.time).total_seconds())
    return Artifact(
        ArtifactStatus.STALE,
        kind,
        newest.id,
        newest.time,
        f"{tool} exited 0 but the newest {what} {where} is {age} old "
        f"(taken before this run started)",
    )
