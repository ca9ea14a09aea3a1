"""Configuration: built-in defaults, validation with key paths, and where the file is found."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from deploy_guard.config import (
    CONFIG_ENV,
    Config,
    find_config_file,
    load_config,
    parse_config,
)
from deploy_guard.errors import ConfigError, ExitCode
from deploy_guard.units import first_match


def config_from(text: str) -> Config:
    return parse_config(tomllib.loads(text))


def errors_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.errors


def stage(**fields: Any) -> dict[str, Any]:
    return {"name": "backups", "timeout": "5m", "units": ["restic-backups-*.service"]} | fields


# -- defaults ------------------------------------------------------------------------------


def test_default_stages_are_snapshots_then_replication_then_applications() -> None:
    stages = Config().stages

    assert [(s.name, s.critical, s.timeout) for s in stages] == [
        ("snapshots", True, 300.0),
        ("replication", False, 1800.0),
        ("applications", False, 3600.0),
    ]
    assert all(s.max_parallel is None and not s.allow_empty for s in stages)


def test_empty_file_gives_the_defaults() -> None:
    config = config_from("")

    assert config == Config()
    assert config.parallel == 32
    assert config.poll_interval == 0.5
    assert config.stop_grace == 15.0
    assert config.log_lines == 20


def default_stage_for(unit: str) -> str | None:
    """The first default stage whose patterns take ``unit`` and whose excludes do not."""
    for stage in Config().stages:
        if first_match(unit, tuple(stage.units)) and not first_match(unit, tuple(stage.exclude)):
            return stage.name
    return None


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        # The NixOS module unit names (FIELD-NOTES table).
        ("sanoid.service", "snapshots"),
        ("syncoid-tank-data.service", "replication"),
        ("syncoid-tank-data-replication-info.service", None),
        ("syncoid-nas-target-reachability.service", None),
        ("restic-backups-home.service", "applications"),
        ("restic-backup-etc.service", "applications"),  # hand-written module naming
        ("pgbackrest-main-full.service", "applications"),
        ("pgbackrest-main-stanza-create.service", None),
        ("borgbackup-job-home.service", "applications"),
        ("borgbackup-repo-home.service", None),  # server-side helper, not a backup
        ("postgresqlBackup.service", "applications"),
        ("postgresqlBackup-app.service", "applications"),
        ("mysql-backup.service", "applications"),
        ("btrbk-home.service", "applications"),
        ("restic-backups-home-metrics.service", None),
        ("tarsnap-restore-home.service", None),
        ("nginx.service", None),
    ],
)
def test_default_patterns_take_the_nixos_backup_units_and_leave_their_helpers(
    unit: str, expected: str | None
) -> None:
    assert default_stage_for(unit) == expected


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2h", 7200.0), ("45", 45.0)],
)
def test_stage_timeout_is_a_duration(text: str, seconds: float) -> None:
    config = parse_config({"stages": [stage(timeout=text)]})

    assert config.stages[0].timeout == seconds


def test_top_level_durations_and_numbers() -> None:
    config = config_from(
        'poll_interval = "250ms"\nstop_grace = "1m"\nconnect_timeout = 5\nparallel = 8\n'
    )

    assert (config.poll_interval, config.stop_grace, config.connect_timeout) == (0.25, 60.0, 5.0)
    assert config.parallel == 8


def test_stages_in_the_file_replace_the_defaults() -> None:
    config = config_from(
        '[[stages]]\nname = "only"\ntimeout = "10m"\nunits = ["restic-backups-*.service"]\n'
    )

    assert [s.name for s in config.stages] == ["only"]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        pytest.param({"paralel": 2}, "paralel", id="top-level-typo"),
        pytest.param({"stages": [stage(timout="5m")]}, "stages.0.timout", id="stage-key"),
        pytest.param({"hosts": {"web1": {"sshh": "x"}}}, "hosts.web1.sshh", id="host-key"),
        pytest.param(
            {"stages": [stage()], "hosts": {"web1": {"stages": {"backups": {"timeuot": 1}}}}},
            "hosts.web1.stages.backups.timeuot",
            id="override-key",
        ),
    ],
)
def test_unknown_key_is_reported_with_its_key_path(data: dict[str, Any], path: str) -> None:
    assert errors_of(data) == (f"{path}: unknown key",)


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "parallel": 0,
        "poll_interval": "soon",
        "stages": [stage(timeout="0s"), stage(name="bad name", units=["a;b.service"])],
    }

    errors = errors_of(data)

    assert len(errors) == 5, errors
    paths = [error.partition(":")[0] for error in errors]
    assert sorted(paths) == sorted(
        ["parallel", "poll_interval", "stages.0.timeout", "stages.1.name", "stages.1.units"]
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "restic;reboot.service",
        "restic backups.service",
        "$(reboot).service",
        "../../etc/passwd",
        "a/b.service",
        "`id`.service",
        "-x.service",
        "",
        "evil\n.service",
    ],
)
@pytest.mark.parametrize("field", ["units", "exclude"])
def test_unsafe_unit_pattern_is_rejected(pattern: str, field: str) -> None:
    errors = errors_of({"stages": [stage(**{field: [pattern]})]})

    assert len(errors) == 1
    assert errors[0].startswith(f"stages.0.{field}: ")


@pytest.mark.parametrize("field", ["units", "extra_units", "exclude"])
def test_unsafe_pattern_in_a_host_override_is_rejected(field: str) -> None:
    data = {
        "stages": [stage()],
        "hosts": {"web1": {"stages": {"backups": {field: ["x.service; reboot"]}}}},
    }

    errors = errors_of(data)

    assert len(errors) == 1
    assert errors[0].startswith(f"hosts.web1.stages.backups.{field}: ")


def test_host_override_of_an_unknown_stage_is_rejected() -> None:
    data = {"hosts": {"web1": {"stages": {"snapshot": {"timeout": "1m"}}}}}

    assert errors_of(data) == ("hosts.web1.stages.snapshot: no stage named 'snapshot'",)


def test_unknown_stage_override_is_reported_with_the_other_errors() -> None:
    data = {"paralel": 2, "hosts": {"web1": {"stages": {"snapshot": {"timeout": "1m"}}}}}

    errors = errors_of(data)

    assert "paralel: unknown key" in errors
    assert "hosts.web1.stages.snapshot: no stage named 'snapshot'" in errors


def test_repeated_stage_names_are_rejected() -> None:
    errors = errors_of({"stages": [stage(), stage()]})

    assert len(errors) == 1
    assert "backups" in errors[0]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"stages": [stage(timeout=True)]}, "stages.0.timeout"),
        ({"stages": [stage(timeout=-5)]}, "stages.0.timeout"),
        ({"stages": [stage(max_parallel=0)]}, "stages.0.max_parallel"),
        ({"stages": [stage(name="")]}, "stages.0.name"),
        ({"log_lines": 5000}, "log_lines"),
        ({"hosts": {"web1": {"become": "doas"}}}, "hosts.web1.become"),
    ],
)
def test_invalid_value_is_reported_with_its_key_path(data: dict[str, Any], path: str) -> None:
    errors = errors_of(data)

    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: ")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_toml_timeout_is_rejected(value: str) -> None:
    with pytest.raises(ConfigError):
        config_from(f'[[stages]]\nname = "a"\ntimeout = {value}\nunits = ["a.service"]\n')


def test_config_error_message_names_the_file_and_every_problem(tmp_path: Path) -> None:
    error = ConfigError(tmp_path / "deploy-guard.toml", ["parallel: too small", "x: unknown key"])

    assert str(error) == (
        f"{tmp_path / 'deploy-guard.toml'}: 2 problems:\n"
        "  - parallel: too small\n"
        "  - x: unknown key"
    )
    assert error.exit_code is ExitCode.CONFIG


# -- finding and loading the file ------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/repo (a git checkout) / sub / dir, and a home directory; nothing above tmp counts."""
    (tmp_path / ".git").mkdir()  # stop the upward search before it leaves tmp_path
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "sub" / "dir").mkdir(parents=True)
    (tmp_path / "home" / ".config" / "deploy-guard").mkdir(parents=True)
    return tmp_path


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_explicit_file_wins_over_everything(tree: Path) -> None:
    explicit = write(tree / "explicit.toml")
    write(tree / "repo" / "deploy-guard.toml")
    env = {CONFIG_ENV: str(write(tree / "from-env.toml")), "HOME": str(tree / "home")}

    assert find_config_file(explicit, tree / "repo", env) == explicit


def test_environment_variable_comes_before_the_working_directory(tree: Path) -> None:
    from_env = write(tree / "from-env.toml")
    write(tree / "repo" / "deploy-guard.toml")

    found = find_config_file(None, tree / "repo", {CONFIG_ENV: str(from_env)})

    assert found == from_env


@pytest.mark.parametrize("how", ["explicit", "environment"])
def test_named_file_that_does_not_exist_is_an_error(tree: Path, how: str) -> None:
    missing = tree / "missing.toml"
    explicit = missing if how == "explicit" else None
    env = {CONFIG_ENV: str(missing)} if how == "environment" else {}

    with pytest.raises(ConfigError, match="no such file"):
        find_config_file(explicit, tree / "repo", env | {"HOME": str(tree / "home")})


def test_file_in_a_parent_directory_inside_the_repository_is_found(tree: Path) -> None:
    in_root = write(tree / "repo" / "deploy-guard.toml")

    assert find_config_file(None, tree / "repo" / "sub" / "dir", {}) == in_root


def test_nearest_file_wins(tree: Path) -> None:
    write(tree / "repo" / "deploy-guard.toml")
    nearer = write(tree / "repo" / "sub" / "deploy-guard.toml")

    assert find_config_file(None, tree / "repo" / "sub" / "dir", {}) == nearer


def test_search_stops_at_the_repository_root_and_falls_back_to_xdg(tree: Path) -> None:
    write(tree / "deploy-guard.toml")  # above the repository: not ours
    xdg = write(tree / "xdg" / "deploy-guard" / "config.toml")
    env = {"XDG_CONFIG_HOME": str(tree / "xdg"), "HOME": str(tree / "home")}

    assert find_config_file(None, tree / "repo" / "sub", env) == xdg


def test_home_config_is_used_without_xdg_config_home(tree: Path) -> None:
    in_home = write(tree / "home" / ".config" / "deploy-guard" / "config.toml")

    assert find_config_file(None, tree / "repo", {"HOME": str(tree / "home")}) == in_home


def test_no_file_anywhere_means_defaults(tree: Path) -> None:
    env = {"HOME": str(tree / "home"), "XDG_CONFIG_HOME": str(tree / "xdg")}

    assert find_config_file(None, tree / "repo" / "sub", env) is None


def test_empty_environment_variable_is_ignored(tree: Path) -> None:
    in_repo = write(tree / "repo" / "deploy-guard.toml")

    assert find_config_file(None, tree / "repo", {CONFIG_ENV: ""}) == in_repo


def test_toml_syntax_error_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text('[[stages]]\nname = "a\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.path == path
    assert caught.value.errors[0].startswith("TOML syntax error")


def test_invalid_content_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text("paralel = 2\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.path == path
    assert str(caught.value) == f"{path}: paralel: unknown key"


def test_loaded_file_returns_the_config_and_its_path(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text('parallel = 2\n[hosts.web1]\nssh = "admin@web1:2222"\ntags = ["db"]\n')

    config, found = load_config(path)

    assert found == path
    assert config.parallel == 2
    assert config.hosts["web1"].ssh == "admin@web1:2222"
    assert config.hosts["web1"].tags == ["db"]
