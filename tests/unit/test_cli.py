"""The command line as a user types it (issue 14): --on, -V, options before the command,
--limit, --json everywhere, completion, help texts and the manual page.

The commands run as a child process, the way a shell runs them; none of these reaches a
host (selections that fail, or commands that stop before connecting).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from deploy_guard import __version__
from deploy_guard.cli import cli
from deploy_guard.cli.complete import host_candidates
from deploy_guard.cli.manpage import escape, render

CONFIG = """\
[hosts.forge]
ssh = "root@forge.example.org"
tags = ["db", "prod"]

[hosts.web-1]
tags = ["web", "prod"]

[[stages]]
name = "snapshots"
units = ["sanoid.service"]
timeout = "10m"

[[stages]]
name = "offsite"
units = ["restic-backups-*.service"]
timeout = "2h"
"""


def installed_command() -> list[str]:
    """The console script next to this Python (the venv's), else ``python -m deploy_guard``."""
    script = Path(sys.executable).with_name("deploy-guard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deploy_guard"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with deploy-guard.toml, and HOME and the state below it."""
    (tmp_path / "deploy-guard.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "home").mkdir()
    return tmp_path


def deploy_guard(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir / "home"),
        "XDG_STATE_HOME": str(workdir / "state"),
        "XDG_CONFIG_HOME": str(workdir / "xdg"),
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        **(env or {}),
    }
    return subprocess.run(
        [*installed_command(), *args], cwd=workdir, env=environment, capture_output=True,
        text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


# -- conventions of the neighbours ---------------------------------------------------------


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flag_prints_the_version(workdir: Path, flag: str) -> None:
    result = deploy_guard(workdir, flag)

    assert result.returncode == 0
    assert result.stdout.strip() == f"deploy-guard, version {__version__}"


@pytest.mark.parametrize("command", ["plan", "run", "apply", "status"])
def test_on_selects_hosts_like_the_positional_argument(workdir: Path, command: str) -> None:
    by_option = deploy_guard(workdir, command, "--on", "@nosuchtag")
    positional = deploy_guard(workdir, command, "@nosuchtag")

    assert by_option.returncode == positional.returncode == 3
    assert "no host has the tag '@nosuchtag' (known tags: @db, @prod, @web)" in by_option.stderr
    assert by_option.stderr == positional.stderr


def test_on_and_positional_hosts_are_selected_together(workdir: Path) -> None:
    result = deploy_guard(workdir, "plan", "forge", "--on", "@nosuchtag,@alsonot")

    assert result.returncode == 3
    assert "'@nosuchtag'" in result.stderr
    assert "'@alsonot'" in result.stderr


def test_options_before_the_command_apply_to_it(workdir: Path) -> None:
    other = workdir / "elsewhere.toml"
    other.write_text('[hosts.db-9]\ntags = ["vault"]\n', encoding="utf-8")

    result = deploy_guard(workdir, "--config", str(other), "-q", "plan", "@nosuchtag")

    assert result.returncode == 3
    assert "known tags: @vault" in result.stderr  # read the --config given before `plan`


def test_json_before_the_command_prints_json(workdir: Path) -> None:
    manifest = workdir / "manifest.json"
    manifest.write_text("{}", encoding="utf-8")

    result = deploy_guard(workdir, "--json", "schema", "manifest", "--check", str(manifest))

    assert result.returncode == 3
    assert json.loads(result.stdout)["valid"] is False


@pytest.mark.parametrize("command", ["plan", "run", "apply", "status"])
def test_limit_is_another_name_for_parallel(workdir: Path, command: str) -> None:
    accepted = deploy_guard(workdir, command, "--limit", "2", "@nosuchtag")
    refused = deploy_guard(workdir, command, "--limit", "0", "@nosuchtag")

    assert accepted.returncode == 3
    assert "no host has the tag" in accepted.stderr
    assert refused.returncode == 3
    assert "'--parallel' / '--limit'" in refused.stderr


def test_schema_manifest_check_prints_a_json_result(workdir: Path) -> None:
    manifest = workdir / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": 1, "stages": [
        {"name": "snapshots", "units": ["sanoid.service"]}]}), encoding="utf-8")  # fmt: skip

    result = deploy_guard(workdir, "schema", "manifest", "--check", str(manifest), "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["stages"] == [{"name": "snapshots", "units": ["sanoid.service"]}]


def test_hook_install_prints_where_it_installed_as_json(workdir: Path) -> None:
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)

    result = deploy_guard(workdir, "hook", "install", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["installed"] == str(workdir / ".git" / "hooks" / "pre-push")


def test_a_host_name_with_a_label_over_63_characters_is_a_usage_error(workdir: Path) -> None:
    name = "a" * 64 + ".example.org"

    result = deploy_guard(workdir, "plan", "--on", name)

    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: {name} is not a valid host name: a label of it is 64 characters long; "
        "DNS allows 63"
    )


# -- completion ----------------------------------------------------------------------------


def complete_bash(workdir: Path, *words: str) -> list[str]:
    """What bash completion offers for the last of ``words`` (click's protocol: a
    ``type,value`` line per candidate)."""
    words_line = " ".join(["deploy-guard", *words])
    result = deploy_guard(workdir, env={
        "_DEPLOY_GUARD_COMPLETE": "bash_complete", "COMP_WORDS": words_line,
        "COMP_CWORD": str(len(words)),
    })  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_bash_completion_offers_host_names_and_tags(workdir: Path) -> None:
    assert complete_bash(workdir, "run", "") == ["forge", "web-1", "@db", "@prod", "@web"]
    assert complete_bash(workdir, "plan", "--on", "@p") == ["@prod"]
    assert complete_bash(workdir, "apply", "forge,w") == ["forge,web-1"]
    assert complete_bash(workdir, "--config", "deploy-guard.toml", "status", "f") == ["forge"]


def test_bash_completion_offers_stage_names_commands_and_options(workdir: Path) -> None:
    assert complete_bash(workdir, "run", "--stage", "") == ["snapshots", "offsite"]
    assert complete_bash(workdir, "h") == ["hook", "history"]
    assert "--limit" in complete_bash(workdir, "run", "--l")


def test_completion_without_a_configuration_offers_no_host(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()

    assert complete_bash(tmp_path, "run", "") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell_uses_the_entry_point(workdir: Path, shell: str) -> None:
    result = deploy_guard(workdir, env={"_DEPLOY_GUARD_COMPLETE": f"{shell}_source"})

    assert result.returncode == 0
    assert "_DEPLOY_GUARD_COMPLETE" in result.stdout


def test_host_candidates_complete_the_last_item_of_a_comma_list() -> None:
    hosts = {"forge": ("db",), "web-1": ("web",), "web-2": ()}

    assert [item.value for item in host_candidates(hosts, "forge,web")] == [
        "forge,web-1",
        "forge,web-2",
    ]
    assert [item.value for item in host_candidates(hosts, "forge,@w")] == ["forge,@web"]
    assert [item.value for item in host_candidates(hosts, "")] == [
        "forge",
        "web-1",
        "web-2",
        "@db",
        "@web",
    ]


# -- help and the manual -------------------------------------------------------------------


def every_command() -> list[tuple[str, click.Command, click.Context]]:
    found = []

    def walk(group: click.Group, context: click.Context) -> None:
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None
            child = click.Context(command, info_name=name, parent=context)
            found.append((child.command_path, command, child))
            if isinstance(command, click.Group):
                walk(command, child)

    walk(cli, click.Context(cli, info_name="deploy-guard"))
    return found


@pytest.mark.parametrize("path", [path for path, _command, _context in every_command()])
def test_every_command_help_ends_with_real_examples(path: str) -> None:
    command = next(found for name, found, _ in every_command() if name == path)

    epilog = command.epilog or ""
    examples = [line.strip() for line in epilog.splitlines()[2:]]
    assert epilog.startswith("\b\nExamples:\n"), path
    assert 2 <= len(examples) <= 3, examples
    assert all("deploy-guard" in line or "git push" in line for line in examples), examples


def test_no_short_help_is_cut_off() -> None:
    for path, command, _context in every_command():
        assert not command.get_short_help_str().endswith("..."), path


def test_top_level_help_lists_every_exit_code(workdir: Path) -> None:
    result = deploy_guard(workdir, "--help")

    for code in ("0", "1", "2", "3", "4", "5", "130"):
        assert f"\n    {code} " in result.stdout, code


def test_status_max_age_help_says_what_it_does_for_status(workdir: Path) -> None:
    result = deploy_guard(workdir, "status", "--help")

    text = " ".join(result.stdout.split())
    assert ("--max-age DURATION Exit 1 unless every unit's last run succeeded within DURATION "
            "(runs nothing).") in text  # fmt: skip
    assert "Skip units" not in text


def test_manual_page_documents_every_command_and_option() -> None:
    page = render()

    assert page.startswith('.TH DEPLOY\\-GUARD 1 "" "deploy-guard ')
    for path, command, context in every_command():
        if isinstance(command, click.Group):
            continue
        assert f'.SS "{escape(path)} ' in page, path
        for parameter in command.get_params(context):
            if isinstance(parameter, click.Option):
                assert escape(parameter.opts[-1]) in page, (path, parameter.opts)
    assert "130" in page.split('.SH "EXIT STATUS"')[1]


def test_manual_page_module_prints_a_page_groff_accepts(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "deploy_guard.cli.manpage"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert result.stdout == render()
    groff = shutil.which("groff")
    if groff is not None:  # the build has no groff; a workstation usually does
        checked = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=result.stdout,
                                 capture_output=True, text=True, check=False)  # fmt: skip
        assert checked.returncode == 0
        assert checked.stderr == ""
