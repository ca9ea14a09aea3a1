"""Unit names and patterns: validation and matching, pure.

Nothing from a config file or a host reaches a remote command unless it passed these checks,
and every argument is quoted on top of that (transport.base.quote_argv).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Final

# systemd's unit-name alphabet (systemd.unit(5): "ASCII letters, digits, ':', '-', '_', '.',
# and '\'"), with at most 255 characters. We only drive services.
_UNIT_NAME: Final = re.compile(r"[A-Za-z0-9:_.\\@-]{1,247}\.service")
# Patterns additionally allow the glob characters understood by systemctl and fnmatch.
_PATTERN: Final = re.compile(r"[A-Za-z0-9:_.\\@*?\[\]!-]{1,255}")
MAX_NAME_LENGTH: Final = 255


def is_valid_unit_name(name: str) -> bool:
    """Whether ``name`` is a plain service unit name (no glob, no shell metacharacter)."""
    return _UNIT_NAME.fullmatch(name) is not None and not name.startswith("-")


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not an acceptable unit glob, or None when it is."""
    if not pattern:
        return "empty pattern"
    if _PATTERN.fullmatch(pattern) is None:
        return (
            f"{pattern!r} has characters that cannot appear in a unit name "
            "(allowed: letters, digits, : _ . \\ @ - and the globs * ? [ ])"
        )
    if pattern.startswith("-"):
        return f"{pattern!r} starts with '-'"
    return None


def is_template(name: str) -> bool:
    """``foo@.service`` is a template: it cannot be started without an instance."""
    return name.endswith("@.service")


def first_match(name: str, patterns: tuple[str, ...]) -> str | None:
    """The first pattern that matches ``name`` (case-sensitive, like systemctl)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None
