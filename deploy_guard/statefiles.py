"""The local state directory's files: created with their final mode, never widened.

Reports and the audit log name hosts, units and override reasons, and log tails can carry
what a backup printed: readable by the user only. A file is created 0600 by `os.open` (no
window in which it exists with the umask's mode before a chmod); a directory is 0700, and an
existing one that others can read is tightened, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DIRECTORY_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def private_directory(path: Path, *, up_to: Path) -> None:
    """Create ``path`` and its missing parents below ``up_to`` (exclusive) with mode 0700;
    tighten any of them that is wider, with a warning.

    Raises:
        OSError: a directory cannot be created or its mode changed.
    """
    chain = [path, *path.parents]
    below = chain[: chain.index(up_to)] if up_to in chain else [path]
    up_to.mkdir(parents=True, exist_ok=True)
    for directory in reversed(below):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, DIRECTORY_MODE)
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        if mode & 0o077:
            os.chmod(directory, DIRECTORY_MODE)
            log.warning(
                "%s was readable by others (mode %04o): tightened to %04o",
                directory,
                mode,
                DIRECTORY_MODE,
            )


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, created 0600 from the start.

    Raises:
        OSError: the file cannot be written.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left behind by a crashed run with our pid
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
