"""How to reach an SSH destination, resolved exactly as OpenSSH would (no paramiko here).

paramiko's own `SSHConfig` silently ignores ``Include``, treats unknown ``Match`` criteria as
matching and acts on none of ProxyJump, UserKnownHostsFile or IdentitiesOnly (FIELD-NOTES,
"paramiko 5.x"). So we ask OpenSSH itself: ``ssh -G`` prints the fully resolved configuration
(Include, Match, defaults) as lowercase ``key value`` lines, which `parse_ssh_g` turns into an
`SshTarget`. Without an ``ssh`` binary we fall back to OpenSSH's defaults and read no config.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import pwd
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit

from deploy_guard.errors import ConfigError
from deploy_guard.transport import process

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 22
SSH_G_TIMEOUT: Final = 20.0  # `Match exec` runs commands; don't hang forever on one
DEFAULT_IDENTITY_FILES: Final = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
DEFAULT_USER_KNOWN_HOSTS: Final = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS: Final = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")

_TOKEN = re.compile(r"%(.)")
_T = TypeVar("_T", str, int)


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Everything needed to open an SSH connection to one destination."""

    alias: str  # the name as given (``Host`` patterns match it; ``%n``)
    hostname: str  # what to connect to, after ``HostName``
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    identities_only: bool = False
    user_known_hosts_files: tuple[Path, ...] = ()
    global_known_hosts_files: tuple[Path, ...] = ()
    proxy_jump: str | None = None  # ``[user@]host[:port]``, comma-separated hops, first hop first
    proxy_command: str | None = None  # with ``%h %p %r %n`` still unexpanded
    host_key_alias: str | None = None
    # Recorded for reference only: deploy-guard never accepts an unknown host key.
    strict_host_key_checking: str = "ask"
    connect_timeout: float | None = None
    server_alive_interval: int = 0
    server_alive_count_max: int = 3
    config_file: Path | None = None  # ``ssh -F``; jump hosts are resolved with the same file


@dataclass(frozen=True, slots=True)
class Destination:
    """A parsed ``[user@]host[:port]`` or ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class LocalContext:
    """The local facts that OpenSSH's ``~`` and ``%`` tokens expand to."""

    user: str
    home: Path  # the passwd home, like ssh: OpenSSH ignores $HOME
    hostname: str
    uid: int


def local_context() -> LocalContext:
    """The current user's `LocalContext` (reads the passwd database and the host name)."""
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        user, home = entry.pw_name, Path(entry.pw_dir)
    except KeyError:
        user, home = getpass.getuser(), Path.home()
    return LocalContext(user=user, home=home, hostname=process.local_hostname(), uid=uid)


def parse_destination(destination: str) -> Destination:
    """Split ``[user@]host[:port]``, ``[user@][v6addr]:port`` or an ``ssh://`` URI.

    A bare IPv6 address (two or more colons, no brackets) has no port part.

    Raises:
        ConfigError: empty host, a bad port, or a name that ssh would take for an option.
    """
    text = destination.strip()
    if text.startswith("ssh://"):
        return _parse_uri(destination, text)
    user, _, hostport = text.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise _bad_destination(destination, "expected ':PORT' after ']'")
            port = _parse_port(destination, rest[1:])
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        port = _parse_port(destination, port_text)
    return _checked(destination, Destination(host=host, user=user or None, port=port))


def split_port(destination: str) -> tuple[str, int | None]:
    """``user@host:2222`` -> (``user@host``, 2222); ``[::1]:22`` -> (``[::1]``, 22): the port
    as `parse_destination` reads it, cut off. Without one (or for an ``ssh://`` URI, which
    ssh reads whole, or a destination that does not parse) the destination comes back whole.
    """
    try:
        port = parse_destination(destination).port
    except ConfigError:
        return destination, None
    if port is None or destination.strip().startswith("ssh://"):
        return destination, None
    return destination.strip()[: destination.strip().rindex(":")], port


def _parse_uri(destination: str, text: str) -> Destination:
    parts = urlsplit(text)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _bad_destination(destination, "an ssh:// destination has no path or query")
    try:
        port = parts.port
    except ValueError as exc:
        raise _bad_destination(destination, str(exc)) from exc
    user = unquote(parts.username) if parts.username else None
    return _checked(destination, Destination(host=parts.hostname or "", user=user, port=port))


def _parse_port(destination: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _bad_destination(destination, f"bad port {text!r}")
    return int(text)


def _checked(destination: str, parsed: Destination) -> Destination:
    # A host or user starting with '-' would reach `ssh -G` as an option (-oProxyCommand=...).
    for value in (parsed.host, parsed.user or ""):
        if value.startswith("-") or any(char.isspace() or ord(char) < 32 for char in value):
            raise _bad_destination(destination, f"{value!r} is not a valid host or user name")
    if not parsed.host:
        raise _bad_destination(destination, "no host name")
    return parsed


def host_name_problem(host: str) -> str | None:
    """Why ``host`` cannot be looked up in DNS (a label over 63 characters, a name over 253,
    an empty label), or None. IP addresses pass. Python's resolver fails such names with
    ``UnicodeError: encoding with 'idna' codec failed`` (issue 14)."""
    if ":" in host or not host or host.replace(".", "").isdigit():
        return None
    name = host.removesuffix(".")
    if len(name) > 253:
        return f"the name is {len(name)} characters long; DNS allows 253"
    for label in name.split("."):
        if not label:
            return "it has an empty label (two dots in a row)"
        if len(label) > 63:
            return f"a label of it is {len(label)} characters long; DNS allows 63"
    return None


def _bad_destination(destination: str, why: str) -> ConfigError:
    return ConfigError(None, [f"bad SSH destination {destination!r}: {why}"])


def resolve(
    destination: str,
    *,
    port: int | None = None,
    user: str | None = None,
    config_file: Path | None = None,
) -> SshTarget:
    """Resolve ``destination`` the way ``ssh`` would, via ``ssh -G`` when ssh is installed.

    ``port`` and ``user`` override the config like ``ssh -p``/``-l``; they must agree with a
    port or user written into ``destination``. ``config_file`` is ``ssh -F``.

    Raises:
        ConfigError: a bad destination, or ``ssh -G`` rejected the configuration.
    """
    parsed = parse_destination(destination)
    port = _merge(destination, "port", parsed.port, port)
    user = _merge(destination, "user", parsed.user, user)
    ssh = shutil.which("ssh")
    if ssh is None:
        return _defaults(parsed.host, port=port, user=user, config_file=config_file)
    argv = [ssh, "-G", "-T"]
    if config_file is not None:
        argv += ["-F", str(config_file)]
    if port is not None:
        argv += ["-p", str(port)]
    if user is not None:
        argv += ["-l", user]
    argv += ["--", parsed.host]
    try:
        completed = process.run(argv, process.Run(timeout=SSH_G_TIMEOUT))
    except process.ProcessTimeout as exc:
        message = f"`ssh -G {parsed.host}` took longer than {SSH_G_TIMEOUT:g}s (a Match exec?)"
        raise ConfigError(config_file, [message]) from exc
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines() or [f"exit status {completed.returncode}"]
        raise ConfigError(
            config_file, [f"ssh rejected the configuration: {line}" for line in lines]
        )
    return replace(parse_ssh_g(completed.stdout), config_file=config_file)


def _merge(destination: str, what: str, embedded: _T | None, given: _T | None) -> _T | None:
    if embedded is not None and given is not None and embedded != given:
        message = f"{destination!r} names {what} {embedded}, but {what} {given} was also given"
        raise ConfigError(None, [message])
    return given if given is not None else embedded


def _defaults(
    host: str, *, port: int | None, user: str | None, config_file: Path | None
) -> SshTarget:
    """OpenSSH's defaults, for a workstation without ``ssh`` (no config file is read)."""
    if config_file is not None:
        raise ConfigError(config_file, ["ssh is not installed, so this file cannot be read"])
    local = local_context()
    if (local.home / ".ssh" / "config").exists():
        log.warning("ssh is not installed: ignoring %s/.ssh/config for %s", local.home, host)
    user = user or local.user
    port = port or DEFAULT_PORT
    tokens = _tokens(local, alias=host, hostname=host, port=port, user=user, jump="")
    return SshTarget(
        alias=host,
        hostname=host,
        port=port,
        user=user,
        identity_files=tuple(expand_path(path, tokens) for path in DEFAULT_IDENTITY_FILES),
        user_known_hosts_files=tuple(expand_path(p, tokens) for p in DEFAULT_USER_KNOWN_HOSTS),
        global_known_hosts_files=tuple(Path(path) for path in DEFAULT_GLOBAL_KNOWN_HOSTS),
    )


def parse_ssh_g(text: str, *, local: LocalContext | None = None) -> SshTarget:
    """Turn ``ssh -G`` output into an `SshTarget`, expanding ``~`` and ``%`` tokens in paths.

    Raises:
        ConfigError: the output lacks ``hostname``, ``port`` or ``user``, or has a bad number.
    """
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value.strip())
    missing = [key for key in ("hostname", "port", "user") if not values.get(key)]
    if missing:
        raise ConfigError(None, [f"`ssh -G` printed no {', '.join(missing)}"])
    first = {key: items[0] for key, items in values.items()}
    hostname, user = first["hostname"], first["user"]
    port = _integer(first, "port", DEFAULT_PORT)
    alias = first.get("host", hostname)
    proxy_jump = _optional(first.get("proxyjump"))
    local = local or local_context()
    tokens = _tokens(local, alias=alias, hostname=hostname, port=port, user=user, jump=proxy_jump)
    tokens["k"] = _optional(first.get("hostkeyalias")) or hostname
    return SshTarget(
        alias=alias,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(expand_path(path, tokens) for path in values.get("identityfile", [])),
        identities_only=first.get("identitiesonly", "no") in ("yes", "true"),
        user_known_hosts_files=_path_list(first.get("userknownhostsfile"), tokens),
        global_known_hosts_files=_path_list(first.get("globalknownhostsfile"), tokens),
        proxy_jump=proxy_jump,
        proxy_command=_optional(first.get("proxycommand")),
        host_key_alias=_optional(first.get("hostkeyalias")),
        strict_host_key_checking=first.get("stricthostkeychecking", "ask"),
        connect_timeout=_number(first, "connecttimeout"),
        server_alive_interval=_integer(first, "serveraliveinterval", 0),
        server_alive_count_max=_integer(first, "serveralivecountmax", 3),
    )


def _optional(value: str | None) -> str | None:
    return None if value is None or value in ("", "none") else value


def _number(first: Mapping[str, str], key: str) -> float | None:
    value = _optional(first.get(key))
    try:
        return None if value is None else float(value)
    except ValueError as exc:
        raise ConfigError(None, [f"`ssh -G` printed a bad {key}: {value!r}"]) from exc


def _integer(first: Mapping[str, str], key: str, default: int) -> int:
    value = _number(first, key)
    return default if value is None else int(value)


def _path_list(value: str | None, tokens: Mapping[str, str]) -> tuple[Path, ...]:
    # ssh -G joins these with spaces and does not quote: a path containing a space is lost.
    value = _optional(value)
    return tuple(expand_path(part, tokens) for part in value.split()) if value else ()


def _tokens(
    local: LocalContext, *, alias: str, hostname: str, port: int, user: str, jump: str | None
) -> dict[str, str]:
    """The ``%`` tokens of ssh_config(5) "TOKENS" that make sense for file names."""
    short_hostname = local.hostname.split(".")[0]
    # OpenSSH 9.2 hashes %l%h%p%r for %C (checked against its ControlPath expansion).
    connection = f"{local.hostname}{hostname}{port}{user}"
    return {
        "%": "%",
        "C": hashlib.sha1(connection.encode(), usedforsecurity=False).hexdigest(),
        "d": str(local.home),
        "h": hostname,
        "i": str(local.uid),
        "j": jump or "",
        "k": hostname,
        "L": short_hostname,
        "l": local.hostname,
        "n": alias,
        "p": str(port),
        "r": user,
        "u": local.user,
    }


def expand_path(path: str, tokens: Mapping[str, str]) -> Path:
    """``~`` and ``%x`` tokens expanded as OpenSSH does (unknown tokens are left as they are)."""
    if path == "~" or path.startswith("~/"):
        path = tokens["d"] + path[1:]
    return Path(_TOKEN.sub(lambda match: tokens.get(match.group(1), match.group(0)), path))


def expand_proxy_command(command: str, target: SshTarget) -> str:
    """``ProxyCommand`` with ``%h %p %r %n %%`` expanded (ssh does this just before running it)."""
    tokens = {"%": "%", "h": target.hostname, "p": str(target.port), "r": target.user}
    tokens["n"] = target.alias
    return _TOKEN.sub(lambda match: tokens.get(match.group(1), match.group(0)), command)
