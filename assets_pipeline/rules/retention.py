"""How long the growing tables keep their rows: the retention, read from `30d` or `36h`. Pure.

What each table keeps whatever its age (undelivered events, the newest row of each symbol and of
each kind of batch) is `persistence/retention.py`'s; this module only reads the age.
"""

from __future__ import annotations

import datetime as dt
import re

from assets_pipeline.rules.excerpts import excerpt

#: The retention when nothing says otherwise (`ASSETS_RETENTION_DAYS`).
DEFAULT_RETENTION_DAYS = 30.0
#: The longest retention: a hundred years (a timedelta holds no more than 999,999,999 days, and
#: the cutoff must stay a date after year 1).
MAX_RETENTION_DAYS = 36_500
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h)\s*$")
_UNIT = {"d": dt.timedelta(days=1), "h": dt.timedelta(hours=1)}


class RetentionError(ValueError):
    """An age that cannot be a retention; the message quotes it and says where it came from."""


def parse_age(value: str, where: str) -> dt.timedelta:
    """`"30d"` -> 30 days, `"36h"` -> 36 hours. A unit is required, so `30` cannot be read as
    30 seconds (or minutes) and prune almost everything."""
    match = _AGE.match(value)
    if not match:
        raise RetentionError(
            f"{where}: {excerpt(value)} is not an age such as 30d or 36h (days or hours)"
        )
    days = float(match.group(1)) * (_UNIT[match.group(2)] / _UNIT["d"])
    if not 0 < days <= MAX_RETENTION_DAYS:
        raise RetentionError(
            f"{where}: {excerpt(value)} must be longer than zero and at most"
            f" {MAX_RETENTION_DAYS:,}d"
        )
    return dt.timedelta(days=days)


def format_age(age: dt.timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours % 24 == 0 else f"{hours:g}h"
