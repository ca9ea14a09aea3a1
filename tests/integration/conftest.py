"""Fixtures for integration tests against the systemd-nspawn + sshd testbed.

Every test in this directory is marked `integration`. Where the testbed cannot start (not
root, no systemd-nspawn, no mirror), tests are skipped with the reason, except under CI=true,
where a missing testbed is a failure: CI must never go green by skipping them all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

# `python -m pytest` puts the repository root on sys.path, the plain `pytest` script does not.
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from deploy_guard.config import parse_config  # noqa: E402
from deploy_guard.hosts.targets import connect, resolve_targets  # noqa: E402
from deploy_guard.systemd.client import SystemdClient  # noqa: E402
from tests.testbed import TestbedError  # noqa: E402
from tests.testbed.host import TestHost  # noqa: E402
from tests.testbed.testbed import Testbed  # noqa: E402

INTEGRATION_DIRECTORY = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this directory as `integration`."""
    for item in items:
        if INTEGRATION_DIRECTORY in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def testbed_unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI=true, because the testbed cannot run here."""
    message = f"integration testbed unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """One Testbed (HOME directory, ssh key, cached rootfs) for the whole session."""
    if os.geteuid() != 0:
        testbed_unavailable("the testbed needs root (systemd-nspawn, mount)")
    try:
        session_testbed = Testbed()
    except TestbedError as error:
        testbed_unavailable(str(error))
    with session_testbed:
        yield session_testbed


@pytest.fixture
def host(testbed: Testbed) -> Iterator[TestHost]:
    """A freshly booted host "forge" with the sample backup units, stopped after the test.

    A boot failure here is an error, not a skip: the testbed itself did start.
    """
    forge = testbed.boot("forge")
    try:
        yield forge
    finally:
        forge.stop()


@pytest.fixture
def dg_env(testbed: Testbed) -> dict[str, str]:
    """The environment to run deploy-guard in: HOME is the testbed's, no ssh agent."""
    return testbed.env()


@pytest.fixture
def client(
    testbed: Testbed, host: TestHost, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SystemdClient]:
    """A SystemdClient on an SSH connection to forge, as the engine opens it."""
    for variable, value in testbed.env().items():
        if os.environ.get(variable) != value:
            monkeypatch.setenv(variable, value)
    (target,) = resolve_targets(parse_config({}), ["forge"])
    transport = connect(target, connect_timeout=10)
    try:
        yield SystemdClient(transport)
    finally:
        transport.close()
