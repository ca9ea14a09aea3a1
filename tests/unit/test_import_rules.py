"""The import rules (pyproject.toml, [tool.importlinter]) can fail: `lint-imports` runs on a
copy of the package with one forbidden import added, and must name the broken contract.

`make lint` runs the same contracts on the real tree; these tests prove that a green run there
means something (a contract that cannot break would pass silently).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

CLICK = "Only the CLI imports click"
PARAMIKO = "Only the SSH transport imports paramiko"
GROUND_LAYERS = "The ground modules import downward only: events, then model, then the rest"
GROUND_VALUES = "The ground modules (values only) import no module that does I/O or decides"
SYSTEMD = "The systemd and transport packages import no engine-level module"
PROCESSES = "Only transport.process and the SSH transport start processes or open sockets"
ROLES = "The role packages import downward only (cli first, transport last)"
VALUES = "config, kinds, manifest, artifact (values) import no role package"
DECIDERS = "The deciders (verdict, freshness, gate) talk to no host"
ALL = (CLICK, PARAMIKO, GROUND_LAYERS, GROUND_VALUES, SYSTEMD, PROCESSES, ROLES, VALUES, DECIDERS)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and its pyproject.toml in a fresh directory, analysed instead of the
    installed one (PYTHONPATH comes before the editable install's finder)."""
    shutil.copytree(
        ROOT / "deploy_guard",
        tmp_path / "deploy_guard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(directory: Path) -> tuple[int, dict[str, str]]:
    """Exit status and each contract's verdict ("KEPT" or "BROKEN") by its name."""
    env = {**os.environ, "PYTHONPATH": str(directory)}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    verdicts = {}
    for line in result.stdout.splitlines():
        for name in ALL:
            if line.startswith(f"{name} ") and line.split()[-1] in ("KEPT", "BROKEN"):
                verdicts[name] = line.split()[-1]
    assert set(verdicts) == set(ALL), result.stdout + result.stderr
    return result.returncode, verdicts


def add_line(copy: Path, module: str, line: str) -> None:
    path = copy / "deploy_guard" / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_package_keeps_every_import_rule(copy: Path) -> None:
    status, verdicts = lint_imports(copy)

    assert status == 0
    assert set(verdicts.values()) == {"KEPT"}


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("model.py", "import click", {CLICK}),
        ("guard/engine.py", "from click import echo", {CLICK}),
        ("systemd/parse.py", "import paramiko", {PARAMIKO}),
        ("hosts/targets.py", "import paramiko", {PARAMIKO}),
        # The loop this rule was written against: model -> preflight -> stage -> events -> model.
        (
            "model.py",
            "from deploy_guard.guard import preflight",
            {GROUND_LAYERS, GROUND_VALUES, DECIDERS},
        ),
        ("errors.py", "from deploy_guard.model import Outcome", {GROUND_LAYERS}),
        ("units.py", "from deploy_guard.clock import Clock", {GROUND_LAYERS}),
        ("clock.py", "from deploy_guard.systemd import parse", {GROUND_VALUES}),
        # config reads durations and units: a second way back into the ground.
        ("clock.py", "from deploy_guard.config import Config", {GROUND_LAYERS, GROUND_VALUES}),
        ("systemd/client.py", "from deploy_guard.guard import stage", {SYSTEMD, ROLES}),
        ("transport/base.py", "from deploy_guard.config import Config", {SYSTEMD}),
        # One local process runner: nothing else starts a process or opens a socket.
        ("deploy/hook.py", "import subprocess", {PROCESSES}),
        ("hosts/inventory.py", "from subprocess import run", {PROCESSES}),
        ("transport/sshconfig.py", "import socket", {PROCESSES}),
        # The roles, top to bottom: cli, workflow, observe, deploy, hosts/init/render, guard,
        # systemd, transport.
        ("workflow.py", "from deploy_guard.cli import options", {ROLES}),
        ("observe/run.py", "from deploy_guard import workflow", {ROLES}),
        ("deploy/gate.py", "from deploy_guard.observe import report", {ROLES, DECIDERS}),
        ("guard/engine.py", "from deploy_guard.deploy import tools", {ROLES}),
        ("render.py", "from deploy_guard.hosts import selection", {ROLES}),
        ("systemd/parse.py", "from deploy_guard.guard import verdict", {SYSTEMD, ROLES}),
        ("config/base.py", "from deploy_guard.systemd import parse", {VALUES}),
        # model reads manifest and artifact: through it, every decider would reach the host.
        (
            "manifest.py",
            "from deploy_guard.guard import discovery",
            {VALUES, GROUND_VALUES, DECIDERS},
        ),
        (
            "artifact/base.py",
            "from deploy_guard.transport import base",
            {VALUES, GROUND_VALUES, DECIDERS},
        ),
        ("guard/verdict.py", "from deploy_guard.systemd.client import SystemdClient", {DECIDERS}),
        ("deploy/gate.py", "from deploy_guard.systemd import files", {DECIDERS}),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy: Path, module: str, line: str, broken: set[str]
) -> None:
    add_line(copy, module, line)

    status, verdicts = lint_imports(copy)

    assert status == 1
    assert {name for name, verdict in verdicts.items() if verdict == "BROKEN"} == broken
