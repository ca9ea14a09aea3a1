"""Progress events from the engine to the front ends (live view, log lines)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from deploy_guard.model import HostPlan, HostResult, StagePlan, StageResult, UnitResult


@dataclass(frozen=True, slots=True)
class HostConnecting:
    host: str
    destination: str


@dataclass(frozen=True, slots=True)
class HostPlanned:
    host: str
    plan: HostPlan


@dataclass(frozen=True, slots=True)
class StageStarted:
    host: str
    stage: StagePlan


@dataclass(frozen=True, slots=True)
class UnitStarted:
    host: str
    stage: str
    unit: str
    joined: bool
    started_at: datetime
    deadline: datetime


@dataclass(frozen=True, slots=True)
class UnitStopping:
    """A unit passed its deadline and is being stopped."""

    host: str
    stage: str
    unit: str


@dataclass(frozen=True, slots=True)
class UnitFinished:
    host: str
    stage: str
    result: UnitResult


@dataclass(frozen=True, slots=True)
class StageFinished:
    host: str
    result: StageResult


@dataclass(frozen=True, slots=True)
class HostFinished:
    result: HostResult


@dataclass(frozen=True, slots=True)
class HostWarning:
    """Something worth saying that changes no verdict (e.g. an empty non-critical stage)."""

    host: str
    message: str


Event = (
    HostConnecting
    | HostPlanned
    | StageStarted
    | UnitStarted
    | UnitStopping
    | UnitFinished
    | StageFinished
    | HostFinished
    | HostWarning
)
EventSink = Callable[[Event], None]
