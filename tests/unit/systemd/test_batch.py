"""Several commands in one round trip (issue 15): `SystemdClient.batch` runs a fixed `sh`
script whose data are positional parameters only, and each command's result comes back as
if it had run alone."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from deploy_guard.systemd.client import SystemdClient
from deploy_guard.systemd.parse import ParseError, parse_batch
from deploy_guard.transport.base import CommandResult
from deploy_guard.transport.local import LocalTransport


class CountingLocal(LocalTransport):
    """The real local shell, with every round trip counted."""

    def __init__(self) -> None:
        super().__init__("local")
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, timeout: float, check: bool) -> CommandResult:
        self.calls.append(tuple(argv))
        return super().run(argv, timeout=timeout, check=check)


def test_commands_of_a_batch_run_in_one_round_trip_each_with_its_own_result() -> None:
    transport = CountingLocal()
    hostile = ["$(touch /tmp/deploy-guard-pwned)", '"; exit 9; "', "a\nb", "`id`", "*"]

    results = SystemdClient(transport).batch([
        ["printf", "%s|", *hostile],
        ["sh", "-c", "echo out; echo err >&2; printf no-newline; exit 3"],
        ["cat", "--", "/nonexistent/deploy-guard"],
    ])  # fmt: skip

    assert len(transport.calls) == 1
    assert [r.exit_status for r in results] == [0, 3, 1]
    assert results[0].stdout == "|".join(hostile) + "|"
    assert (results[1].stdout, results[1].stderr) == ("out\nno-newline", "err\n")
    assert "No such file" in results[2].stderr
    assert results[2].argv == ("cat", "--", "/nonexistent/deploy-guard")


def test_a_transport_without_a_shell_gets_the_commands_one_by_one() -> None:
    transport = CountingLocal()
    transport.runs_sh = False  # type: ignore[misc]

    results = SystemdClient(transport).batch([["echo", "a"], ["echo", "b"]])

    assert [r.stdout for r in results] == ["a\n", "b\n"]
    assert len(transport.calls) == 2


def test_batch_output_cut_short_is_an_error_not_a_result() -> None:
    marker = "@@m@@"
    whole = f"{marker} 0\nout\n{marker}\nerr\n{marker}\n{marker} 1\n\n{marker}\n\n{marker}\n"

    assert parse_batch(whole, marker, 2) == [(0, "out", "err"), (1, "", "")]
    with pytest.raises(ParseError):
        parse_batch(whole[: whole.rindex(marker)], marker, 2)
    with pytest.raises(ParseError):
        parse_batch(whole, marker, 3)
    with pytest.raises(ParseError):
        parse_batch("garbage\n", marker, 1)
