"""The one clock the cadences and refreshes read, so tests can set it (to a Saturday, say)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
