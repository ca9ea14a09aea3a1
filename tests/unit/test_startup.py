"""Start-up cost (issue 15): `deploy-guard --help` and `run --help` must not import the heavy
libraries. Each check runs in a fresh interpreter, so what another test imported is no excuse."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("paramiko", "rich", "pydantic")


def _heavy_modules_after(statement: str) -> list[str]:
    loaded = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"
    code = f"import sys\n{statement}\nprint(*{loaded}, file=sys.stderr)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return completed.stderr.split()


@pytest.mark.parametrize("module", ["deploy_guard.cli", "deploy_guard.cli.guard"])
def test_importing_the_command_line_loads_no_heavy_library(module: str) -> None:
    assert _heavy_modules_after(f"import {module}") == []


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["plan", "--help"]])
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    statement = (
        "from deploy_guard.cli import cli\n"
        f"try:\n    cli.main(args={argv!r}, standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert _heavy_modules_after(statement) == []


def test_the_ssh_transport_does_not_load_invoke() -> None:
    statement = "import deploy_guard.transport.ssh"
    code = f"import sys\n{statement}\nprint('invoke' in sys.modules, file=sys.stderr)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stderr.split() == ["False"]


def test_group_help_loads_neither_logging_nor_shutil() -> None:
    # `deploy-guard --help` is the interpreter, click and the command table: logging is
    # loaded only for --debug, and click's help width is worked out without shutil (which
    # imports bz2 and lzma).
    statement = (
        "from deploy_guard.cli import cli\n"
        "try:\n    cli.main(args=['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    loaded = "sorted({'logging', 'shutil'} & set(sys.modules))"
    code = f"import sys\n{statement}\nprint(*{loaded}, file=sys.stderr)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stderr.split() == []


def test_run_help_does_not_load_the_transport() -> None:
    # cli.common wants only the name of paramiko's logger from it, when a command runs.
    statement = (
        "from deploy_guard.cli import cli\n"
        "try:\n    cli.main(args=['run', '--help'], standalone_mode=False)\n"
        "except SystemExit:\n    pass"
    )
    loaded = "sorted(m for m in sys.modules if m.startswith('deploy_guard.transport'))"
    code = f"import sys\n{statement}\nprint(*{loaded}, file=sys.stderr)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stderr.split() == []


def test_a_command_that_loads_the_config_models_does_not_scan_for_pydantic_plugins() -> None:
    # pydantic looks for plugins in every installed distribution's entry points the first
    # time it builds a model, unless PYDANTIC_DISABLE_PLUGINS says not to; deploy-guard
    # uses none.
    code = (
        "import importlib.metadata as metadata, sys\n"
        "calls = []\n"
        "real = metadata.entry_points\n"
        "metadata.entry_points = lambda *a, **k: (calls.append(k), real(*a, **k))[1]\n"
        "from deploy_guard.cli import main\n"
        "try:\n    main(['schema', 'config'])\nexcept SystemExit:\n    pass\n"
        "print(len(calls), 'deploy_guard.config' in sys.modules, file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert completed.stderr.split() == ["0", "True"]
