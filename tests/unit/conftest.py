"""Shared fixtures of the fast unit tests: nothing here touches a network, a host or real time."""

from __future__ import annotations

import pytest

from tests.unit.fakesystemd import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the code under test sleeps."""
    return FakeClock()
