"""Configuration: built-in defaults, validation with key paths, and where the file is found."""

from __future__ import annotations

import subprocess
import sys
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
    ("data", "path", "meant"),
    [
        pytest.param({"paralel": 2}, "paralel", "parallel", id="top-level-typo"),
        pytest.param(
            {"stages": [stage(timout="5m")]}, "stages[backups].timout", "timeout", id="stage-key"
        ),
        pytest.param({"hosts": {"web1": {"sshh": "x"}}}, "hosts.web1.sshh", "ssh", id="host-key"),
        pytest.param(
            {"stages": [stage()], "hosts": {"web1": {"stages": {"backups": {"timeuot": 1}}}}},
            "hosts.web1.stages.backups.timeuot",
            "timeout",
            id="override-key",
        ),
        pytest.param({"notify": {"urlz": []}}, "notify.urlz", "urls", id="nested-table"),
        pytest.param({"inventory": {"frm": "colmena"}}, "inventory.frm", "from", id="alias"),
    ],
)
def test_unknown_key_is_reported_with_its_key_path_and_the_key_meant(
    data: dict[str, Any], path: str, meant: str
) -> None:
    assert f"{path}: unknown key; did you mean {meant!r}?" in errors_of(data)


def test_unknown_key_like_no_known_key_gets_no_suggestion() -> None:
    assert errors_of({"zzzzzz": 1}) == ("zzzzzz: unknown key",)


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "parallel": 0,
        "poll_interval": "soon",
        "stages": [stage(timeout="0s"), stage(name="bad name", units=["a;b.service"])],
    }

    errors = errors_of(data)

    assert len(errors) == 5, errors
    paths = [error.partition(":")[0] for error in errors]
    # A stage is named by its name; one whose name is itself invalid keeps its name as
    # written, since that is what the operator will search the file for.
    assert sorted(paths) == sorted([
        "parallel", "poll_interval", "stages[backups].timeout", "stages[bad name].name",
        "stages[bad name].units",
    ])  # fmt: skip


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
    assert errors[0].startswith(f"stages[backups].{field}: ")


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

    assert "paralel: unknown key; did you mean 'parallel'?" in errors
    assert "hosts.web1.stages.snapshot: no stage named 'snapshot'" in errors


def test_empty_stage_list_is_a_configuration_error() -> None:
    # Issue 11, case 5: `stages = []` would guard nothing and report success (exit 3).
    with pytest.raises(ConfigError) as caught:
        config_from("stages = []\n")

    assert caught.value.exit_code is ExitCode.CONFIG
    assert "stages = [] guards nothing" in caught.value.errors[0]


def test_repeated_stage_names_are_rejected() -> None:
    errors = errors_of({"stages": [stage(), stage()]})

    assert len(errors) == 1
    assert "backups" in errors[0]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"stages": [stage(timeout=True)]}, "stages[backups].timeout"),
        ({"stages": [stage(timeout=-5)]}, "stages[backups].timeout"),
        ({"stages": [stage(max_parallel=0)]}, "stages[backups].max_parallel"),
        ({"stages": [stage(name="")]}, "stages[0].name"),  # no name to use: the index
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
    assert str(caught.value) == f"{path}: line 1: paralel: unknown key; did you mean 'parallel'?"


CONFIG_WITH_MISTAKES = """\
# comment
parallel = 2

[[stages]]
name = "snapshots"
timeout = "5m"
units = ["sanoid.service"]

[[stages]]
name = "replication"
timeout = "30m"
units = ["syncoid-*.service"]
critical = "yes"
exlude = ["x"]

[hosts.forge]
ssh = "root@forge"
bcome = "sudo"

[hosts.forge.stages.replication]
timeuot = "5m"

[[preflight]]
name = "disk"
kind = "free_space"
path = "/"
min_free = "lots"

[[stages]]
name = "applications"
units = ["restic-backups-*.service"]
"""


def test_file_errors_name_the_line_the_stage_and_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text(CONFIG_WITH_MISTAKES)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.errors == (
        "line 13: stages[replication].critical: Input should be a valid boolean, not 'yes'",
        "line 14: stages[replication].exlude: unknown key; did you mean 'exclude'?",
        "line 18: hosts.forge.bcome: unknown key; did you mean 'become'?",
        "line 21: hosts.forge.stages.replication.timeuot: unknown key; did you mean 'timeout'?",
        "line 27: preflight[disk].min_free: 'lots' is not a size; write e.g. 10GiB, 10G, 500MB "
        "or 4096",
        # A missing key has no line of its own: its table's header.
        "line 29: stages[applications].timeout: Field required",
    )
    assert caught.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(
    ("data", "path"),
    [
        pytest.param({"stages": [stage(critical="yes")]}, "stages[backups].critical", id="bool"),
        pytest.param({"stages": [stage(critical=1)]}, "stages[backups].critical", id="int-bool"),
        pytest.param({"parallel": "4"}, "parallel", id="string-int"),
        pytest.param({"parallel": 4.0}, "parallel", id="float-int"),
        pytest.param({"stages": [stage(units="a.service")]}, "stages[backups].units", id="list"),
        pytest.param({"hosts": {"web1": {"ssh": 22}}}, "hosts.web1.ssh", id="int-string"),
        pytest.param({"receipts": {"journal": "false"}}, "receipts.journal", id="string-false"),
    ],
)
def test_values_are_not_coerced(data: dict[str, Any], path: str) -> None:
    (error,) = errors_of(data)

    assert error.startswith(f"{path}: ")


def test_a_path_is_written_as_a_string() -> None:
    assert config_from('ssh_config = "/etc/ssh/guard_config"').ssh_config == Path(
        "/etc/ssh/guard_config"
    )


def test_file_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_bytes(b"parallel = 2 # caf\xe9 latin-1\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.path == path
    assert caught.value.exit_code == ExitCode.CONFIG
    assert str(caught.value).startswith(f"{path}: not UTF-8 text")


def test_loaded_config_knows_its_file_and_defaults_have_none(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text("parallel = 2\n")

    config, _path = load_config(path)

    assert config.source == path.absolute()
    assert Config().source is None


def test_loaded_file_returns_the_config_and_its_path(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text('parallel = 2\n[hosts.web1]\nssh = "admin@web1:2222"\ntags = ["db"]\n')

    config, found = load_config(path)

    assert found == path
    assert config.parallel == 2
    assert config.hosts["web1"].ssh == "admin@web1:2222"
    assert config.hosts["web1"].tags == ["db"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"parallel = 2 # caf\xe9\n", "not UTF-8 text", id="latin-1"),
        pytest.param(b"[[stages]]\nname = 'x'\ncritical = 'yes'\n", "line 3: stages[x]",
                     id="strict"),
    ],
)  # fmt: skip
def test_command_reports_a_bad_file_with_exit_3_and_no_traceback(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_bytes(content)

    completed = subprocess.run(
        [sys.executable, "-m", "deploy_guard", "plan", "--config", str(path), "forge"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert completed.returncode == ExitCode.CONFIG, completed.stderr
    assert completed.stderr.startswith(f"error: {path}: ")
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_verbose_names_the_configuration_file_loaded(tmp_path: Path) -> None:
    path = tmp_path / "deploy-guard.toml"
    path.write_text('[hosts.ghost]\nssh = "root@127.0.0.1:1"\n')  # nothing listens on port 1

    completed = subprocess.run(
        [sys.executable, "-m", "deploy_guard", "plan", "ghost", "--config", str(path), "-v"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip

    assert f"configuration: {path}" in completed.stderr
