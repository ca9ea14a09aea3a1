"""Unit names and patterns (what may reach a remote command) and durations as operators write
them."""

from __future__ import annotations

import pytest

from deploy_guard.durations import format_duration, parse_duration
from deploy_guard.units import first_match, is_template, is_valid_unit_name, pattern_problem

LONGEST = "a" * 247 + ".service"  # 255 characters, systemd's limit


@pytest.mark.parametrize(
    "name",
    [
        "sanoid.service",
        "restic-backups-home.service",
        "postgresqlBackup-app.service",
        "syncoid-tank_data.2.service",
        "zfs-snapshot-daily.service",
        "getty@tty1.service",
        "foo@.service",  # a template is a valid name (discovery drops it)
        r"syncoid-tank\x2fdata.service",  # systemd-escape output
        "a:b.service",
        LONGEST,
    ],
)
def test_valid_unit_name(name: str) -> None:
    assert is_valid_unit_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".service",
        "sanoid",
        "sanoid.timer",
        "sanoid.service.bak",
        "foo bar.service",
        "foo\n.service",
        "sanoid.service\n",
        "foo\tbar.service",
        "a/b.service",
        "../etc.service",
        "a;reboot.service",
        "$(reboot).service",
        "`id`.service",
        "a|b.service",
        "a'b.service",
        '"a".service',
        "-a.service",
        "--help.service",
        "*.service",
        "sanoid?.service",
        "[ab].service",
        "ünïcode.service",
        "a" * 248 + ".service",
    ],
)
def test_invalid_unit_name(name: str) -> None:
    assert not is_valid_unit_name(name)


@pytest.mark.parametrize(
    "pattern",
    [
        "sanoid.service",
        "syncoid-*.service",
        "restic-backups-?.service",
        "btrbk-[a-z]*.service",
        "btrbk-[!x]*.service",
        "*",
        "postgresqlBackup*.service",
    ],
)
def test_acceptable_pattern(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty pattern"),
        ("-x*.service", "starts with '-'"),
        ("--all", "starts with '-'"),
        ("restic backups.service", "cannot appear in a unit name"),
        ("restic;reboot", "cannot appear in a unit name"),
        ("$(reboot)", "cannot appear in a unit name"),
        ("${HOME}", "cannot appear in a unit name"),
        ("`id`", "cannot appear in a unit name"),
        ("a/b.service", "cannot appear in a unit name"),
        ("../*", "cannot appear in a unit name"),
        ("x\n.service", "cannot appear in a unit name"),
        ("x.service\n", "cannot appear in a unit name"),
        ("a|b", "cannot appear in a unit name"),
        ("a>b", "cannot appear in a unit name"),
        ("~", "cannot appear in a unit name"),
        ("a" * 256, "cannot appear in a unit name"),
    ],
)
def test_unacceptable_pattern_says_why(pattern: str, problem: str) -> None:
    message = pattern_problem(pattern)

    assert message is not None
    assert problem in message


@pytest.mark.parametrize(
    ("name", "template"),
    [("foo@.service", True), ("foo@bar.service", False), ("foo.service", False)],
)
def test_is_template(name: str, template: bool) -> None:
    assert is_template(name) is template


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("syncoid-tank.service", ("sanoid.service", "syncoid-*.service"), "syncoid-*.service"),
        ("syncoid-tank.service", ("syncoid-*.service", "*"), "syncoid-*.service"),
        ("Sanoid.service", ("sanoid.service",), None),  # case-sensitive, like systemctl
        ("sanoid.service", (), None),
        ("restic-backups-home.service", ("restic-backup-*.service",), None),
    ],
)
def test_first_match(name: str, patterns: tuple[str, ...], expected: str | None) -> None:
    assert first_match(name, patterns) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2m30s", 150.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (" 10S ", 10.0),
        (30, 30.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "0", "0s", "-5s", "-5", 0, -1, "5 minutes", "s", "5x", "1h30", "m5", "1e3", "five", True],
)
def test_parse_duration_rejects(text: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_parse_duration_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (45, "45s"),
        (0, "0s"),
        (300, "5m"),
        (125, "2m05s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3660, "1h01m"),
        (2.5, "2.5s"),
        (0.4, "0.4s"),
        (59.6, "1m"),
        (12.4, "12s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 45, 90, 300, 3600, 5400, 7200])
def test_formatted_whole_durations_parse_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
