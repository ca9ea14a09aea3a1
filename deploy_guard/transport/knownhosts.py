"""OpenSSH known_hosts files: parsing and checking a server's key, before any credential.

Plain text and bytes, no paramiko: keys compare by type and key blob, as in OpenSSH, so that
a truncated or odd line can never match by accident (paramiko zero-pads truncated keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy_guard.errors import HostKeyChanged, HostKeyUnknown
from deploy_guard.transport.sshconfig import SshTarget

log = logging.getLogger(__name__)
# --- known_hosts: plain text and bytes, no paramiko (keys compare by type and blob, as in
# OpenSSH), so that this part can move to a module of its own.


@dataclass(frozen=True, slots=True)
class HostKey:
    """A public host key: its type name and its SSH wire-format blob."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode()
        return f"SHA256:{digest.rstrip('=')}"

    def __str__(self) -> str:
        return f"{self.key_type} key {self.fingerprint}"


@dataclass(frozen=True, slots=True)
class KnownHostEntry:
    """One usable line of a known_hosts file."""

    path: Path
    line_number: int
    patterns: tuple[str, ...]  # names, globs, ``!negations`` or hashed ``|1|salt|hash``
    key: HostKey
    revoked: bool = False

    def matches(self, name: str) -> bool:
        """Whether ``name`` (``host`` or ``[host]:port``) matches, as in OpenSSH."""
        matched = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if _pattern_matches(pattern[1:] if negated else pattern, name.lower()):
                if negated:
                    return False
                matched = True
        return matched


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):  # HMAC-SHA1 of the name, keyed with a salt (HashKnownHosts)
        parts = pattern.split("|")  # "", "1", salt, hash
        try:
            salt, digest = (base64.b64decode(part, validate=True) for part in parts[2:4])
        except ValueError:  # also when there are not exactly two parts
            return False
        mac = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return len(parts) == 4 and hmac.compare_digest(mac, digest)
    # Not fnmatch: '[' must stay literal for "[host]:port" entries.
    glob = "".join({"*": ".*", "?": "."}.get(char, re.escape(char)) for char in pattern.lower())
    return re.fullmatch(glob, name) is not None


@dataclass(frozen=True, slots=True)
class KnownHosts:
    """The entries of several known_hosts files, in the order OpenSSH reads them."""

    files: tuple[Path, ...]
    entries: tuple[KnownHostEntry, ...]

    def for_names(self, names: Sequence[str]) -> list[KnownHostEntry]:
        return [e for e in self.entries if not e.revoked and any(map(e.matches, names))]

    def check(self, host: str, target: SshTarget, key: HostKey) -> None:
        """Accept ``key`` only if a known_hosts entry for ``target`` lists it.

        Raises:
            HostKeyUnknown: no entry for the host, or only entries of other key types.
            HostKeyChanged: an entry of the same type lists another key, or the key is revoked.
        """
        names = host_key_names(target)
        for entry in self.entries:
            if entry.revoked and entry.key == key:
                where = f"{entry.path}:{entry.line_number}"
                raise HostKeyChanged(host, f"the server offered {key}, @revoked in {where}")
        known = self.for_names(names)
        if any(entry.key == key for entry in known):
            return
        for entry in known:
            if entry.key.key_type == key.key_type:
                raise HostKeyChanged(
                    host,
                    f"the host key for {names[0]} has CHANGED: the server offered {key}, but "
                    f"{entry.path}:{entry.line_number} lists {entry.key.fingerprint}. This may be "
                    "a man-in-the-middle attack. If the host was reinstalled, verify the new key, "
                    f"then remove the old one: ssh-keygen -R '{names[0]}' -f {entry.path}",
                )
        other_types = ", ".join(sorted({entry.key.key_type for entry in known}))
        files = ", ".join(map(str, self.files)) or "no known_hosts file"
        port = f"-p {target.port} " if target.port != 22 else ""
        raise HostKeyUnknown(
            host,
            f"{f'only a {other_types} key is' if other_types else 'no key is'} known for "
            f"{names[0]} (in {files}) and the server offered {key}. deploy-guard never trusts "
            "a key on first use: compare that fingerprint with the host's own "
            "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host), then add it with "
            f"`ssh-keyscan {port}{target.hostname} >> ~/.ssh/known_hosts` (check the "
            f"fingerprint of what it wrote) or by connecting once with `ssh {target.alias}`",
        )


def host_key_names(target: SshTarget) -> tuple[str, ...]:
    """The names a host key is looked up under: ``HostKeyAlias`` alone (as OpenSSH does), else
    the ``HostName`` and then the name as given, each as ``[name]:port`` unless port 22."""
    if target.host_key_alias:
        return (target.host_key_alias.lower(),)
    names = [target.hostname, target.alias]
    if target.port != 22:
        names = [f"[{name}]:{target.port}" for name in names]
    return tuple(dict.fromkeys(name.lower() for name in names))


def load_known_hosts(paths: Iterable[Path]) -> KnownHosts:
    """Read known_hosts files line by line; missing files are fine, bad lines are skipped.

    paramiko's own loader fails the whole file on one ``@cert-authority`` line (FIELD-NOTES).
    ``@revoked`` lines are kept, marked revoked; ``@cert-authority`` lines are skipped (we
    cannot verify host certificates) and so are lines that do not parse, each with a debug log.
    """
    files = tuple(dict.fromkeys(paths))
    entries: list[KnownHostEntry] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                log.debug("cannot read %s: %s", path, exc)
            continue
        for line_number, line in enumerate(lines, start=1):
            entry = _parse_known_hosts_line(path, line_number, line)
            entries += [entry] if entry is not None else []
    return KnownHosts(files=files, entries=tuple(entries))


def _parse_known_hosts_line(path: Path, line_number: int, line: str) -> KnownHostEntry | None:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if marker not in (None, "@revoked"):
        log.debug("%s:%d: skipping %s line", path, line_number, marker)
        return None
    try:
        blob = base64.b64decode(fields[2], validate=True)
    except (IndexError, ValueError):
        blob = b""
    parts = _wire_strings(blob)
    # A blob is length-prefixed strings, the first naming the type: anything else is garbage.
    if len(parts) < 2 or parts[0] != fields[1].encode():
        log.debug("%s:%d: skipping line that is not a host key", path, line_number)
        return None
    key = HostKey(fields[1], blob)
    return KnownHostEntry(path, line_number, tuple(fields[0].split(",")), key, marker is not None)


def _wire_strings(blob: bytes) -> list[bytes]:
    """The SSH ``string``/``mpint`` fields of ``blob``; empty if it does not split exactly."""
    parts, offset = [], 0
    while offset + 4 <= len(blob):
        length = int.from_bytes(blob[offset : offset + 4], "big")
        parts.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return parts if offset == len(blob) else []


# --- the SSH connection (paramiko) ---
