"""Destination parsing, `ssh -G` parsing (table tests) and `resolve` against the real ssh."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy_guard.errors import ConfigError
from deploy_guard.transport.sshconfig import (
    Destination,
    LocalContext,
    SshTarget,
    expand_path,
    expand_proxy_command,
    parse_destination,
    parse_ssh_g,
    resolve,
)

LOCAL = LocalContext(user="alice", home=Path("/home/alice"), hostname="ws.example.org", uid=1000)


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("web", Destination("web")),
        ("root@web", Destination("web", user="root")),
        ("root@web:2222", Destination("web", user="root", port=2222)),
        ("web:22", Destination("web", port=22)),
        ("ops@corp@web", Destination("web", user="ops@corp")),
        ("10.0.0.5:2201", Destination("10.0.0.5", port=2201)),
        ("::1", Destination("::1")),
        ("fe80::1", Destination("fe80::1")),
        ("[::1]:2201", Destination("::1", port=2201)),
        ("root@[2001:db8::1]", Destination("2001:db8::1", user="root")),
        ("ssh://web", Destination("web")),
        ("ssh://root@web:2222", Destination("web", user="root", port=2222)),
        ("ssh://root@[::1]:2201/", Destination("::1", user="root", port=2201)),
        ("  web  ", Destination("web")),
    ],
)
def test_destination_is_split_into_user_host_and_port(
    destination: str, expected: Destination
) -> None:
    assert parse_destination(destination) == expected


@pytest.mark.parametrize(
    "destination",
    [
        "",
        "root@",
        "web:",
        "web:0",
        "web:65536",
        "web:ssh",
        "[::1]x",
        "-oProxyCommand=touch /tmp/pwned",
        "-lroot@web",
        "we b",
        "web\nevil",
        "ssh://web:99999",
        "ssh://web/path",
    ],
)
def test_bad_destination_is_a_config_error(destination: str) -> None:
    with pytest.raises(ConfigError, match="bad SSH destination"):
        parse_destination(destination)


MINIMAL = "host web\nuser deploy\nhostname 10.0.0.5\nport 2222\n"


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        (MINIMAL, "alias", "web"),
        (MINIMAL, "hostname", "10.0.0.5"),
        (MINIMAL, "port", 2222),
        (MINIMAL, "user", "deploy"),
        (MINIMAL, "identity_files", ()),
        (MINIMAL, "proxy_jump", None),
        (MINIMAL, "connect_timeout", None),
        (MINIMAL + "identitiesonly yes\n", "identities_only", True),
        (MINIMAL + "identitiesonly no\n", "identities_only", False),
        (MINIMAL + "proxyjump bastion,root@jump2:2222\n", "proxy_jump", "bastion,root@jump2:2222"),
        (MINIMAL + "proxyjump none\n", "proxy_jump", None),
        (MINIMAL + "proxycommand nc %h %p\n", "proxy_command", "nc %h %p"),
        (MINIMAL + "hostkeyalias webkey\n", "host_key_alias", "webkey"),
        (MINIMAL + "connecttimeout none\n", "connect_timeout", None),
        (MINIMAL + "connecttimeout 7\n", "connect_timeout", 7.0),
        (MINIMAL + "serveraliveinterval 30\n", "server_alive_interval", 30),
        (MINIMAL + "serveralivecountmax 5\n", "server_alive_count_max", 5),
        (MINIMAL + "stricthostkeychecking accept-new\n", "strict_host_key_checking", "accept-new"),
        (
            MINIMAL + "identityfile ~/.ssh/id_ed25519\nidentityfile /keys/%r@%h:%p\n",
            "identity_files",
            (Path("/home/alice/.ssh/id_ed25519"), Path("/keys/deploy@10.0.0.5:2222")),
        ),
        (
            MINIMAL + "identityfile %d/%u/%n/%l/%L/%i/%%/%k/%z\n",
            "identity_files",
            (Path("/home/alice/alice/web/ws.example.org/ws/1000/%/10.0.0.5/%z"),),
        ),
        (
            MINIMAL + "hostkeyalias webkey\nidentityfile ~/%k\n",
            "identity_files",
            (Path("/home/alice/webkey"),),
        ),
        (
            MINIMAL + "userknownhostsfile ~/.ssh/known_hosts /etc/kh/%h\n",
            "user_known_hosts_files",
            (Path("/home/alice/.ssh/known_hosts"), Path("/etc/kh/10.0.0.5")),
        ),
        (
            MINIMAL + "globalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2\n",
            "global_known_hosts_files",
            (Path("/etc/ssh/ssh_known_hosts"), Path("/etc/ssh/ssh_known_hosts2")),
        ),
        (MINIMAL + "userknownhostsfile none\n", "user_known_hosts_files", ()),
        ("user u\nhostname h\nport 22\n", "alias", "h"),
        ("USER u\nHostName h\nport 22\nhost a\n", "alias", "a"),
    ],
)
def test_ssh_g_output_becomes_a_target(text: str, field: str, expected: object) -> None:
    assert getattr(parse_ssh_g(text, local=LOCAL), field) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "user u\nport 22\n",
        "hostname h\nport 22\n",
        "user u\nhostname h\nport twenty\n",
        MINIMAL + "connecttimeout soon\n",
    ],
)
def test_incomplete_or_bad_ssh_g_output_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="ssh -G"):
        parse_ssh_g(text, local=LOCAL)


def test_percent_c_is_openssh_connection_hash() -> None:
    # `ssh -G -o ControlPath=%C -l u -p 99 hh` on host "vm" (OpenSSH 9.2) printed this hash.
    local = LocalContext(user="root", home=Path("/root"), hostname="vm", uid=0)
    target = parse_ssh_g("user u\nhostname hh\nport 99\nidentityfile %C\n", local=local)
    assert target.identity_files == (Path("b12248f6c7ac510569aa42b36741b5d7cd8c96b8"),)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("~", "/home/alice"),
        ("~/.ssh/id", "/home/alice/.ssh/id"),
        ("~bob/.ssh/id", "~bob/.ssh/id"),
        ("/a/%%h", "/a/%h"),
        ("/a/%u", "/a/alice"),
    ],
)
def test_paths_expand_tilde_and_tokens(path: str, expected: str) -> None:
    tokens = {"%": "%", "d": "/home/alice", "u": "alice", "h": "web"}
    assert expand_path(path, tokens) == Path(expected)


def test_proxy_command_tokens_are_expanded() -> None:
    target = SshTarget(alias="web", hostname="10.0.0.5", port=2222, user="deploy")
    command = "ssh -W %h:%p -l %r bastion # %n 100%%"
    assert expand_proxy_command(command, target) == (
        "ssh -W 10.0.0.5:2222 -l deploy bastion # web 100%"
    )


needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client")


@pytest.fixture
def ssh_config(tmp_path: Path) -> Path:
    """A config that uses Include and Match, as ``ssh -F`` reads it."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "web.conf").write_text(
        "Host web\n  HostName 10.0.0.5\n  Port 2202\n  ProxyJump bastion\n"
    )
    (tmp_path / "flag").write_text("")
    config = tmp_path / "config"
    config.write_text(
        f"Include {tmp_path}/conf.d/*.conf\n"
        "Host web\n  User deploy\n  IdentityFile ~/.ssh/web_%r\n  IdentitiesOnly yes\n"
        "Match originalhost db* user admin\n  HostName db.internal\n  ConnectTimeout 4\n"
        f'Match host db.internal exec "test -e {tmp_path}/flag"\n  Port 5022\n'
        f"Host *\n  UserKnownHostsFile {tmp_path}/known_hosts\n"
        "  GlobalKnownHostsFile /dev/null\n  User nobody\n"
    )
    return config


@needs_ssh
def test_resolve_follows_include_and_host_blocks(ssh_config: Path) -> None:
    target = resolve("web", config_file=ssh_config)
    assert (target.hostname, target.port, target.user) == ("10.0.0.5", 2202, "deploy")
    assert target.proxy_jump == "bastion"
    assert target.identities_only
    assert target.identity_files[0].name == "web_deploy"
    assert target.user_known_hosts_files == (ssh_config.parent / "known_hosts",)
    assert target.global_known_hosts_files == (Path("/dev/null"),)
    assert target.config_file == ssh_config


@needs_ssh
def test_resolve_applies_match_blocks_like_ssh(ssh_config: Path) -> None:
    target = resolve("admin@db1", config_file=ssh_config)
    assert (target.alias, target.hostname, target.port) == ("db1", "db.internal", 5022)
    assert target.connect_timeout == 4.0
    (ssh_config.parent / "flag").unlink()  # `Match exec` now fails: no Port 5022
    assert resolve("admin@db1", config_file=ssh_config).port == 22
    assert resolve("ops@db1", config_file=ssh_config).hostname == "db1"


@needs_ssh
def test_resolve_port_and_user_override_the_config(ssh_config: Path) -> None:
    target = resolve("web:2300", user="admin", config_file=ssh_config)
    assert (target.port, target.user) == (2300, "admin")
    target = resolve("ssh://admin@web:2301", port=2301, config_file=ssh_config)
    assert (target.port, target.user) == (2301, "admin")


def test_resolve_refuses_a_port_given_twice_with_different_values(ssh_config: Path) -> None:
    with pytest.raises(ConfigError, match="port 2300, but port 2301"):
        resolve("web:2300", port=2301, config_file=ssh_config)


@needs_ssh
def test_resolve_reports_ssh_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host web\n  NoSuchOption yes\n")
    with pytest.raises(ConfigError, match="Bad configuration option: nosuchoption") as error:
        resolve("web", config_file=config)
    assert error.value.path == config


def test_resolve_without_ssh_uses_openssh_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh binary on it
    target = resolve("ops@web:2201")
    assert (target.alias, target.hostname, target.port, target.user) == ("web", "web", 2201, "ops")
    assert [path.name for path in target.identity_files] == ["id_ed25519", "id_ecdsa", "id_rsa"]
    assert target.user_known_hosts_files[0].parts[-2:] == (".ssh", "known_hosts")
    assert target.global_known_hosts_files[0] == Path("/etc/ssh/ssh_known_hosts")
    assert target.proxy_jump is None
    with pytest.raises(ConfigError, match="ssh is not installed"):
        resolve("web", config_file=tmp_path / "config")
