"""Durations as operators write them: "90s", "5m", "1h30m", or a number of seconds."""

from __future__ import annotations

import math
import re
from typing import Final

_PART: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float, *, allow_zero: bool = False) -> float:
    """Seconds in ``text`` (zero only with ``allow_zero``, e.g. `--max-age 0s`).

    Raises:
        ValueError: ``text`` is not a positive duration like "90s", "5m", "1h30m".
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)
        else:
            parts = _PART.findall(value)
            if not parts or _PART.sub("", value).strip():
                raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 5m, 1h or 1h30m")
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    # TOML can spell nan and inf as bare floats; neither is a deadline.
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{text!r}: a duration must be a finite number greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 5m, 1h30m, 2m05s."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    if seconds < 10 and seconds != whole:
        return f"{seconds:.1f}s"
    return f"{secs}s"
