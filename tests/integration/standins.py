"""Stand-ins for `nixos-rebuild`, `colmena` and `deploy` (deploy-rs) that record how `apply`
called them instead of deploying anything.

Each stand-in appends one line to the record file per call: a JSON object with ``argv`` (a
JSON array: the program's name, then its arguments) and ``env`` (every ``DEPLOY_GUARD_*``
variable and ``NIX_SSHOPTS``, null when unset). It then exits with the status in
``$STANDIN_EXIT_STATUS``, else the one written by `StandIns.fail_with`, else 0.

    standins = StandIns.install(tmp_path)
    result = guard(standins.env(dg_env), "apply", "forge", "--tool", "colmena", ...)
    assert standins.calls()[-1].argv == ["colmena", "apply", "switch", "--on", "forge"]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

TOOLS: Final = ("nixos-rebuild", "colmena", "deploy")
EXIT_STATUS_VARIABLE: Final = "STANDIN_EXIT_STATUS"

_SCRIPT: Final = """#!{python}
import json, os, sys
from pathlib import Path

env = {{name: value for name, value in os.environ.items() if name.startswith("DEPLOY_GUARD_")}}
env["NIX_SSHOPTS"] = os.environ.get("NIX_SSHOPTS")
line = json.dumps({{"argv": [Path(sys.argv[0]).name, *sys.argv[1:]], "env": env}})
with open({record!r}, "a", encoding="utf-8") as record:
    record.write(line + "\\n")
status = os.environ.get({variable!r})
if status is None and os.path.exists({exit_file!r}):
    status = Path({exit_file!r}).read_text().strip()
sys.exit(int(status or 0))
"""


@dataclass(frozen=True)
class Call:
    """One call of a stand-in."""

    argv: list[str]
    env: dict[str, str | None]


@dataclass(frozen=True)
class StandIns:
    """A directory of stand-in executables, their record file and their exit status file."""

    bin: Path
    record: Path
    exit_file: Path

    @classmethod
    def install(cls, directory: Path) -> StandIns:
        """Write the stand-ins into ``directory``/bin."""
        standins = cls(directory / "bin", directory / "calls.jsonl", directory / "exit-status")
        standins.bin.mkdir(parents=True)
        for tool in TOOLS:
            path = standins.bin / tool
            path.write_text(_SCRIPT.format(
                python=sys.executable, record=str(standins.record),
                exit_file=str(standins.exit_file), variable=EXIT_STATUS_VARIABLE,
            ))  # fmt: skip
            path.chmod(0o755)
        return standins

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the stand-ins first on PATH and no NIX_SSHOPTS of the caller's."""
        env = {key: value for key, value in base.items() if key != "NIX_SSHOPTS"}
        env["PATH"] = f"{self.bin}:{base.get('PATH', '/usr/bin:/bin')}"
        return env

    def fail_with(self, status: int) -> None:
        """Make every later call exit with ``status``."""
        self.exit_file.write_text(f"{status}\n")

    def calls(self) -> list[Call]:
        """Every call so far, in the order they were made."""
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        parsed: list[dict[str, Any]] = [json.loads(line) for line in lines if line.strip()]
        return [Call(entry["argv"], entry["env"]) for entry in parsed]
