"""SSH destination strings as users write them, without paramiko or ssh."""

from __future__ import annotations

import re


def split_port(destination: str) -> tuple[str, int | None]:
    """``user@host:2222`` -> (``user@host``, 2222); ``[::1]:22`` -> (``[::1]``, 22)."""
    match = re.fullmatch(r"(.*?)(?::(\d{1,5}))?", destination)
    assert match is not None  # the pattern matches every string
    base, port = match.group(1), match.group(2)
    if port is None or (base.count(":") > 0 and not base.endswith("]")):
        return destination, None  # a bare IPv6 address has colons of its own
    return base, int(port)
