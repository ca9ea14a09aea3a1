"""Files and journal entries on a host: reading a file, replacing one atomically, writing an
entry into the host's journal. The one place their argv is built; every call goes through
`Transport.run`, without standard input.

A file travels base64-encoded as an argument of a constant script, in chunks, into a temporary
file in the target's directory that is then renamed over the target (atomic for readers such
as node_exporter and the NixOS module's freshness check).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Final

from deploy_guard.errors import HostProtocolError, TransportError
from deploy_guard.transport.base import CommandResult, Transport

REMOTE_TIMEOUT: Final = 30.0
# One remote command line reaches the host's shell as a single argument, which Linux caps at
# 128 KiB (MAX_ARG_STRLEN): 48 KiB of content is 64 KiB of base64, with room to spare.
CHUNK_BYTES: Final = 48 * 1024
# $1 umask, $2 "new" or "append", $3 base64 chunk, $4 temporary file, $5 target ("" until the
# last chunk). Constant: data only ever arrives as positional parameters.
WRITE_SCRIPT: Final = """umask "$1"
if [ "$2" = new ]; then : > "$4" || exit; fi
printf %s "$3" | base64 -d >> "$4" || exit
if [ -n "$5" ]; then mv -f -T -- "$4" "$5"; fi"""

JOURNAL_IDENTIFIER: Final = "deploy-guard"
# `logger --journald` takes the fields, one KEY=VALUE per line, on its standard input; remote
# commands have none, so the fields travel as arguments of this constant script (util-linux
# logger, on NixOS and Debian alike; the SSH user needs no extra rights to log).
JOURNAL_SCRIPT: Final = (
    f'printf "%s\\n" "SYSLOG_IDENTIFIER={JOURNAL_IDENTIFIER}" "$@" | logger --journald'
)


def read_argv(path: str) -> list[str]:
    return ["cat", "--", path]


def file_text(host: str, result: CommandResult, path: str) -> str | None:
    """What `read_argv` found: the file's text, or None when it does not exist.

    Raises:
        HostProtocolError: it exists but cannot be read.
    """
    if result.ok:
        return result.stdout
    if "No such file" in result.stderr:
        return None
    raise HostProtocolError(host, f"cannot read {path}: {result.stderr.strip()}")


def read_file(transport: Transport, path: PurePosixPath) -> str | None:
    """The file's text, or None when it does not exist.

    Raises:
        HostProtocolError: it exists but cannot be read.
        TransportError: the host could not be asked.
    """
    result = transport.run(read_argv(str(path)), timeout=REMOTE_TIMEOUT, check=False)
    return file_text(transport.host, result, str(path))


def put_file(transport: Transport, path: PurePosixPath, content: bytes, *, private: bool) -> None:
    """Replace ``path`` on the host with ``content`` atomically: mode 0600 when ``private``,
    else 0644.

    Raises:
        TransportError: the file could not be written (the temporary file is removed).
    """
    temporary = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    chunks = [content[i : i + CHUNK_BYTES] for i in range(0, len(content), CHUNK_BYTES)]
    chunks = chunks or [b""]
    try:
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            argv = [
                "sh",
                "-c",
                WRITE_SCRIPT,
                "sh",
                "077" if private else "022",
                "append" if index else "new",
                base64.b64encode(chunk).decode("ascii"),
                str(temporary),
                str(path) if last else "",
            ]
            transport.run(argv, timeout=REMOTE_TIMEOUT, check=True)
    except TransportError:
        with contextlib.suppress(TransportError):  # the connection is gone: the error says why
            transport.run(["rm", "-f", "--", str(temporary)], timeout=REMOTE_TIMEOUT, check=False)
        raise


def make_directory(transport: Transport, path: PurePosixPath, mode: str) -> None:
    """``install -d -m MODE PATH``: the directory exists with ``mode`` afterwards.

    Raises:
        TransportError: it could not be made.
    """
    argv = ["install", "-d", "-m", mode, "--", str(path)]
    transport.run(argv, timeout=REMOTE_TIMEOUT, check=True)


def list_directory(transport: Transport, path: PurePosixPath) -> list[str]:
    """The names in the directory, dot files included.

    Raises:
        TransportError: it could not be listed.
    """
    argv = ["ls", "-1A", "--", str(path)]
    return transport.run(argv, timeout=REMOTE_TIMEOUT, check=True).stdout.splitlines()


def remove_files(transport: Transport, paths: Iterable[PurePosixPath]) -> None:
    """``rm -f`` the files.

    Raises:
        TransportError: they could not be removed.
    """
    argv = ["rm", "-f", "--", *(str(path) for path in paths)]
    transport.run(argv, timeout=REMOTE_TIMEOUT, check=True)


def one_line(text: str) -> str:
    """The journal export format is one field a line."""
    return " ".join(text.split())


def journal_argv(fields: Iterable[str]) -> list[str]:
    """The constant script, then the KEY=VALUE fields as its positional parameters."""
    return ["sh", "-c", JOURNAL_SCRIPT, "sh", *fields]


def journal_lines(fields: Mapping[str, str]) -> list[str]:
    """KEY=VALUE lines, each value on one line."""
    return [f"{key}={one_line(value)}" for key, value in fields.items()]


def log_in_journal(transport: Transport, fields: Sequence[str]) -> None:
    """One entry in the host's journal, tagged `deploy-guard` (`journalctl -t deploy-guard`):
    the KEY=VALUE lines of `journal_lines`.

    Raises:
        TransportError: the entry could not be written.
    """
    transport.run(journal_argv(fields), timeout=REMOTE_TIMEOUT, check=True)
