"""scripts/install-deps.sh: one list of what a fresh Debian machine lacks, used by both
`.ci/run` and `make demo`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[2]
SCRIPT: Final = REPOSITORY_ROOT / "scripts" / "install-deps.sh"


def check(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "--check"], capture_output=True, text=True,
                          check=False, timeout=60, env={**os.environ, "PATH": path})  # fmt: skip


def test_a_machine_without_the_tools_is_told_every_package_it_lacks(tmp_path: Path) -> None:
    # Only a shell and the basics on PATH: what a fresh machine has, minus everything else.
    bin_directory = tmp_path / "bin"
    bin_directory.mkdir()
    for tool in ("bash", "sh", "id", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_directory / tool).symlink_to(found)

    completed = check(str(bin_directory))

    assert completed.returncode == 1
    missing = completed.stdout.removeprefix("missing: ").split()
    assert {"systemd-container", "openssh-client", "restic", "nix-bin", "jq", "shellcheck",
            "make", "git", "python3-venv"} <= set(missing)  # fmt: skip


def test_this_machine_lacks_nothing() -> None:
    completed = check(os.environ["PATH"])

    if completed.returncode != 0 and os.environ.get("CI") != "true":
        pytest.skip(f"this machine lacks what CI installs ({completed.stdout.strip()}); "
                    "scripts/install-deps.sh installs it")  # fmt: skip
    assert completed.returncode == 0, completed.stdout
    assert completed.stdout == ""


def test_ci_and_the_demo_both_use_it() -> None:
    assert "scripts/install-deps.sh\n" in (REPOSITORY_ROOT / ".ci" / "run").read_text()
    assert "scripts/install-deps.sh\n" in (REPOSITORY_ROOT / "scripts" / "demo.sh").read_text()
    assert "scripts/demo.sh" in (REPOSITORY_ROOT / "Makefile").read_text()
