"""Boot a demo host and leave it running: `python -m tests.testbed up NAME`, then `down`.
Record what real systemd says in each scenario: `python -m tests.testbed record [SCENARIO...]`
(tests/fixtures/systemd-252/README.md).

Used by `make demo`. Run from the repository root, as root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from tests.testbed.errors import TestbedError
from tests.testbed.scenarios import FIXTURE_DIRECTORY, SCENARIOS, play, write_fixture
from tests.testbed.system import CACHE_DIRECTORY
from tests.testbed.testbed import STATE_FILE_NAME, Testbed, stop_recorded_hosts

DEFAULT_STATE_DIRECTORY: Final = CACHE_DIRECTORY / "demo"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run up or down; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="boot one host with the sample units")
    up_parser.add_argument("name", help="host name and ssh alias, e.g. forge")
    down_parser = commands.add_parser("down", help="stop the host booted by up")
    record_parser = commands.add_parser("record", help="play scenarios, save the fixtures")
    record_parser.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    record_parser.add_argument(
        "--output", type=Path, default=FIXTURE_DIRECTORY, help="fixture directory"
    )
    for command_parser in (up_parser, down_parser):
        command_parser.add_argument(
            "--state",
            type=Path,
            default=DEFAULT_STATE_DIRECTORY,
            help=f"directory for the state file and HOME (default {DEFAULT_STATE_DIRECTORY})",
        )
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "record":
            return record(arguments.scenarios, arguments.output)
        if arguments.command == "up":
            return up(arguments.name, arguments.state)
        return down(arguments.state)
    except TestbedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def up(name: str, state_directory: Path) -> int:
    """Boot NAME and print how to reach it; its state goes to state_directory."""
    if (state_directory / STATE_FILE_NAME).exists():
        print(f"error: {state_directory} is in use; run `down` first", file=sys.stderr)
        return 1
    testbed = Testbed(state_directory.resolve(), detached=True)
    try:
        host = testbed.boot(name)
    except BaseException:
        testbed.close()
        raise
    print(f"HOME={testbed.home}")
    print(f"ssh alias: {name} (port {host.port})")
    print(f"try: ssh -F {testbed.ssh_config_path} {name} systemctl list-timers")
    print(
        f"     HOME={testbed.home} DEPLOY_GUARD_SSH_CONFIG={testbed.ssh_config_path} "
        f"deploy-guard run {name}"
    )
    print(f"stop: python -m tests.testbed down --state {state_directory}")
    return 0


def record(names: list[str], output: Path) -> int:
    """Boot a bare host, play each scenario on it and write its fixture."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        print(f"error: unknown scenarios: {', '.join(unknown)}", file=sys.stderr)
        print(f"known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    with Testbed() as testbed:
        host = testbed.boot("recorder", sample_units=False)
        for name in names or list(SCENARIOS):
            path = write_fixture(play(host, name), output)
            print(f"recorded {name}: {path}")
    return 0


def down(state_directory: Path) -> int:
    """Stop what `up` started in state_directory."""
    if not (state_directory / STATE_FILE_NAME).exists():
        print(f"nothing is running from {state_directory}", file=sys.stderr)
        return 0
    stop_recorded_hosts(state_directory)
    print(f"stopped; removed {state_directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
