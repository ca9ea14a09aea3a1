"""The recordings of real systemd that the unit tests replay (tests/fixtures/systemd-252/) still
describe the systemd on the testbed: a few scenarios are played again and their shapes compared.

A failure names the scenario, the step and the field that changed (a newer systemd, a changed
message): re-record (tests/fixtures/systemd-252/README.md) and look at what the change means.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.testbed.host import TestHost
from tests.testbed.recording import shape_differences
from tests.testbed.scenarios import FIXTURE_DIRECTORY, play
from tests.testbed.testbed import Testbed

# One of each kind: a oneshot that fails, a condition skip after a run (issue 11 case 1), a
# simple unit stopped from outside (case 2), and what start/show say about units that cannot run.
DRIFT_SCENARIOS = (
    "oneshot-failure",
    "condition-skip-after-success",
    "simple-stopped",
    "start-errors",
)


@pytest.fixture(scope="module")
def recorder(testbed: Testbed) -> Iterator[TestHost]:
    """A host without the sample units, like the one `python -m tests.testbed record` boots."""
    host = testbed.boot("recorder", sample_units=False)
    try:
        yield host
    finally:
        host.stop()


@pytest.mark.parametrize("name", DRIFT_SCENARIOS)
def test_live_systemd_answers_in_the_recorded_shapes(recorder: TestHost, name: str) -> None:
    recorded = json.loads((FIXTURE_DIRECTORY / f"{name}.json").read_text())

    live = play(recorder, name)

    differences = shape_differences(recorded, live)
    assert differences == [], f"recorded on {recorded['systemd']!r}, live {live['systemd']!r}"
