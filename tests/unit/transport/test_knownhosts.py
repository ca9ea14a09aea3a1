"""known_hosts loading and host key checking of the SSH transport (pure: no network)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from deploy_guard.errors import HostKeyChanged, HostKeyUnknown
from deploy_guard.transport.knownhosts import (
    HostKey,
    KnownHostEntry,
    host_key_names,
    load_known_hosts,
)
from deploy_guard.transport.ssh import _auth_keys
from deploy_guard.transport.sshconfig import SshTarget


def new_key() -> tuple[str, HostKey]:
    """A fresh ed25519 public key: its known_hosts text ("type base64") and as a HostKey."""
    public = Ed25519PrivateKey.generate().public_key()
    text = public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    key_type, data = text.split()
    return text, HostKey(key_type, base64.b64decode(data))


def rsa_key() -> tuple[str, HostKey]:
    key = paramiko.RSAKey.generate(1024)
    return f"{key.get_name()} {key.get_base64()}", HostKey(key.get_name(), key.asbytes())


TARGET = SshTarget(alias="web", hostname="10.0.0.5", port=2222, user="deploy")

GOOD, GOOD_KEY = new_key()
HASHED, HASHED_KEY = new_key()
CA, CA_KEY = new_key()
REVOKED, REVOKED_KEY = new_key()
OTHER, OTHER_KEY = new_key()


@pytest.fixture
def known_hosts(tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    hashed_name = paramiko.HostKeys.hash_host("[10.0.0.5]:2222")
    path.write_text(
        "# a comment\n"
        "\n"
        f"@cert-authority *.example.org {CA}\n"
        f"@revoked * {REVOKED}\n"
        "garbage\n"
        "host ssh-ed25519 !!!not-base64!!!\n"
        "host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"  # truncated key data
        "host no-such-key-type AAAA\n"
        f"|1|bm90LWEtc2FsdA==|broken {OTHER}\n"
        f"[10.0.0.5]:2222,web-alias\t{GOOD}   trailing comment\n"
        f"{hashed_name} {HASHED}\n"
        f"*.example.org,!bad.example.org {OTHER}\n"
    )
    return path


def test_known_hosts_loading_skips_markers_and_garbage_but_keeps_the_rest(
    known_hosts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="deploy_guard.transport.knownhosts")
    loaded = load_known_hosts([known_hosts, known_hosts.parent / "missing"])
    by_line = {entry.line_number: entry for entry in loaded.entries}
    assert sorted(by_line) == [4, 9, 10, 11, 12]
    assert by_line[4].revoked
    assert by_line[4].key == REVOKED_KEY
    assert by_line[10].patterns == ("[10.0.0.5]:2222", "web-alias")
    assert by_line[10].key == GOOD_KEY
    assert by_line[11].matches("[10.0.0.5]:2222")
    assert not by_line[11].matches("10.0.0.5")
    assert not by_line[9].matches("[10.0.0.5]:2222")  # a hash that matches nothing
    assert loaded.files == (known_hosts, known_hosts.parent / "missing")
    assert "skipping @cert-authority line" in caplog.text
    for line_number in (5, 6, 7, 8):
        assert f"{known_hosts}:{line_number}: skipping line that is not a host key" in caplog.text


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ("web", "web", True),
        ("web", "WEB", True),
        ("Web", "web", True),
        ("web", "web2", False),
        ("*.example.org", "a.example.org", True),
        ("*.example.org", "example.org", False),
        ("db?", "db1", True),
        ("*.example.org,!bad.example.org", "bad.example.org", False),
        ("!bad.example.org,*.example.org", "good.example.org", True),
        ("[web]:2222", "[web]:2222", True),
        ("[web]:2222", "w", False),  # brackets are literal, not a character class
        ("[web]:*", "[web]:2222", True),
    ],
)
def test_host_patterns_match_like_openssh(
    tmp_path: Path, patterns: str, name: str, expected: bool
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"{patterns} {GOOD}\n")
    (entry,) = load_known_hosts([path]).entries
    assert entry.matches(name) is expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (TARGET, ("[10.0.0.5]:2222", "[web]:2222")),
        (SshTarget(alias="web", hostname="web", port=22, user="u"), ("web",)),
        (SshTarget(alias="Web", hostname="10.0.0.5", port=22, user="u"), ("10.0.0.5", "web")),
        (SshTarget(alias="web", hostname="::1", port=2201, user="u"), ("[::1]:2201", "[web]:2201")),
        (SshTarget(alias="web", hostname="h", port=2201, user="u", host_key_alias="K"), ("k",)),
    ],
)
def test_host_key_names_follow_openssh(target: SshTarget, expected: tuple[str, ...]) -> None:
    assert host_key_names(target) == expected


def test_fingerprint_is_openssh_sha256_as_paramiko_prints_it() -> None:
    key = paramiko.Ed25519Key(data=GOOD_KEY.blob)
    assert GOOD_KEY.fingerprint == key.fingerprint
    assert str(GOOD_KEY) == f"ssh-ed25519 key {key.fingerprint}"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (paramiko.HostKeys.hash_host("[10.0.0.5]:2222"), True),
        (paramiko.HostKeys.hash_host("10.0.0.5"), False),
        ("|1|bm90LWEtc2FsdA==|broken", False),
        ("|1|onlysalt", False),
        ("|1|a|b|c", False),
    ],
)
def test_hashed_names_match_as_paramiko_hashes_them(pattern: str, expected: bool) -> None:
    entry = KnownHostEntry(Path("kh"), 1, (pattern,), GOOD_KEY)
    assert entry.matches("[10.0.0.5]:2222") is expected


@pytest.mark.parametrize("key", [GOOD_KEY, HASHED_KEY], ids=["plain", "hashed"])
def test_listed_key_is_accepted(known_hosts: Path, key: HostKey) -> None:
    load_known_hosts([known_hosts]).check("web", TARGET, key)


def test_key_under_the_alias_name_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"[web]:2222 {GOOD}\n")
    load_known_hosts([path]).check("web", TARGET, GOOD_KEY)


def test_host_key_alias_replaces_the_host_name(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"webkey {GOOD}\n[10.0.0.5]:2222 {OTHER}\n")
    aliased = SshTarget(
        alias="web", hostname="10.0.0.5", port=2222, user="u", host_key_alias="webkey"
    )
    load_known_hosts([path]).check("web", aliased, GOOD_KEY)
    with pytest.raises(HostKeyChanged):
        load_known_hosts([path]).check("web", aliased, OTHER_KEY)


def test_key_of_a_listed_type_that_differs_is_a_changed_key(known_hosts: Path) -> None:
    _, impostor = new_key()
    with pytest.raises(HostKeyChanged) as changed:
        load_known_hosts([known_hosts]).check("web", TARGET, impostor)
    assert f"{known_hosts}:10" in str(changed.value)
    assert f"the server offered {impostor}" in str(changed.value)
    assert "ssh-keygen -R '[10.0.0.5]:2222'" in str(changed.value)


def test_revoked_key_is_refused_even_where_it_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"[10.0.0.5]:2222 {REVOKED}\n@revoked * {REVOKED}\n")
    with pytest.raises(HostKeyChanged, match="@revoked"):
        load_known_hosts([path]).check("web", TARGET, REVOKED_KEY)


def test_unknown_host_is_refused_with_instructions(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"other-host {GOOD}\n")
    with pytest.raises(HostKeyUnknown) as unknown:
        load_known_hosts([path, tmp_path / "missing"]).check("web", TARGET, GOOD_KEY)
    message = str(unknown.value)
    assert message.startswith("web: no key is known for [10.0.0.5]:2222")
    assert GOOD_KEY.fingerprint in message
    assert "ssh-keyscan -p 2222 10.0.0.5 >> ~/.ssh/known_hosts" in message
    assert "`ssh web`" in message


def test_only_a_key_of_another_type_known_is_refused_as_unknown(tmp_path: Path) -> None:
    text, _ = rsa_key()
    path = tmp_path / "known_hosts"
    path.write_text(f"[10.0.0.5]:2222 {text}\n")
    with pytest.raises(HostKeyUnknown, match="only a ssh-rsa key is known"):
        load_known_hosts([path]).check("web", TARGET, GOOD_KEY)


def test_negated_pattern_excludes_a_host(known_hosts: Path) -> None:
    bad = SshTarget(alias="bad.example.org", hostname="bad.example.org", port=22, user="u")
    with pytest.raises(HostKeyUnknown):
        load_known_hosts([known_hosts]).check("bad", bad, OTHER_KEY)
    good = SshTarget(alias="a.example.org", hostname="a.example.org", port=22, user="u")
    load_known_hosts([known_hosts]).check("a", good, OTHER_KEY)


class FakeAgentKey(paramiko.Ed25519Key):
    comment = "from agent"


class FakeAgent:
    def __init__(self, *keys: paramiko.PKey) -> None:
        self.keys = keys

    def get_keys(self) -> tuple[paramiko.PKey, ...]:
        return self.keys


def agent_key(text: str) -> paramiko.PKey:
    return FakeAgentKey(data=base64.b64decode(text.split()[1]))


def test_identities_only_offers_only_agent_keys_of_identity_files(tmp_path: Path) -> None:
    identity = tmp_path / "id_ed25519"  # a private key we cannot load, but with a .pub
    identity.write_text("not a key\n")
    identity.with_name("id_ed25519.pub").write_text(f"{GOOD} me@host\n")
    matching, other = agent_key(GOOD), agent_key(OTHER)
    target = SshTarget(
        alias="w", hostname="w", port=22, user="u", identity_files=(identity,), identities_only=True
    )
    offered, notes = _auth_keys(target, FakeAgent(matching, other))  # type: ignore[arg-type]
    assert [key for _, key in offered] == [matching]
    assert notes == []  # the agent holds it
    relaxed = SshTarget(alias="w", hostname="w", port=22, user="u", identity_files=(identity,))
    offered, _ = _auth_keys(relaxed, FakeAgent(matching, other))  # type: ignore[arg-type]
    assert [key for _, key in offered] == [matching, other]


def test_identity_file_that_cannot_be_loaded_nor_found_in_the_agent_is_noted(
    tmp_path: Path,
) -> None:
    identity = tmp_path / "id_ed25519"
    identity.write_text("not a key\n")
    target = SshTarget(alias="w", hostname="w", port=22, user="u", identity_files=(identity,))
    offered, notes = _auth_keys(target, FakeAgent(agent_key(OTHER)))  # type: ignore[arg-type]
    assert len(offered) == 1
    assert notes == [f"{identity} is unusable (passphrase-protected and not in ssh-agent?)"]


def test_identity_file_may_name_only_a_public_key_held_by_the_agent(tmp_path: Path) -> None:
    public = tmp_path / "agent_key.pub"
    public.write_text(f"{GOOD} me@host\n")
    matching, other = agent_key(GOOD), agent_key(OTHER)
    for identity_file in (public, tmp_path / "agent_key"):
        target = SshTarget(
            alias="w",
            hostname="w",
            port=22,
            user="u",
            identity_files=(identity_file,),
            identities_only=True,
        )
        offered, notes = _auth_keys(target, FakeAgent(matching, other))  # type: ignore[arg-type]
        assert [key for _, key in offered] == [matching]
        assert notes == []
