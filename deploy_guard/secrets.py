"""Masking secrets in text that leaves the host: log tails in reports, receipts and
notifications, and debug logs of remote command lines (issue 14).

Pure. Backup tools print their repository URL on failure (restic: ``Fatal: unable to open
repository at s3:https://KEY:SECRET@host/bucket``), and scripts echo their environment; neither
may end up in a report, a webhook body or a host's receipt.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "***"

# `scheme://user:password@host`, also behind restic's backend prefix (`s3:https://...`,
# `rest:https://...`): the user information, up to the last `@` before the host, is masked.
_URL_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]+(?::[^\s@'\"]*)?@")
# `NAME=value` where NAME contains one of the words (RESTIC_PASSWORD=, AWS_SECRET_ACCESS_KEY=,
# token=, passwd=...), and `NAME: value` / `"NAME": "value"` where NAME ends with one (so that
# `restic-backups-key.service: Failed ...` from systemd stays readable). The value runs to the
# next space, or is a quoted string.
_WORDS: Final = r"(?:password|passwd|secret|token|key)"
_VALUE: Final = r"""("[^"]*"|'[^']*'|[^\s,;&'"]+)"""
_ASSIGNMENT: Final = re.compile(rf"(?i)(\b[a-z0-9_.-]*{_WORDS}[a-z0-9_.-]*)(\s*=\s*){_VALUE}")
_COLON: Final = re.compile(rf"""(?i)(\b[a-z0-9_]*{_WORDS}["']?)(\s*:\s*){_VALUE}""")


def _mask_value(match: re.Match[str]) -> str:
    if match.group(3) == MASK:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{MASK}"


def mask_secrets(text: str) -> str:
    """``text`` with URL user information and secret-looking assignments replaced by ``***``.

    >>> mask_secrets("open s3:https://AKIA:abc@s3.example.org/b failed")
    'open s3:https://***@s3.example.org/b failed'
    >>> mask_secrets("RESTIC_PASSWORD=hunter2 restic backup")
    'RESTIC_PASSWORD=*** restic backup'
    """
    text = _URL_USERINFO.sub(lambda match: f"{match.group(1)}{MASK}@", text)
    text = _ASSIGNMENT.sub(_mask_value, text)
    return _COLON.sub(_mask_value, text)
