"""The one clock the cadences, refreshes, checks and writers read.

Everything that asks "what time is it" in this package calls `utcnow()`, so a test can freeze or
move time for all of it at once (`frozen_at`), on any weekday and at any hour, instead of racing
the wall clock. The budget is the exception on purpose: it counts on its store's own clock, which
every process shares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_source: Callable[[], dt.datetime] | None = None


def utcnow() -> dt.datetime:
    """Now, in UTC (or the time a test has set)."""
    return _source() if _source is not None else dt.datetime.now(dt.UTC)


def today() -> dt.date:
    """Today's date in UTC."""
    return utcnow().date()


def set_source(source: Callable[[], dt.datetime] | None) -> None:
    """Read time from `source` from now on (None: the wall clock again)."""
    global _source
    _source = source


@contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[Callable[[dt.datetime], None]]:
    """Freeze the clock at `moment`; the context yields a function that moves it."""
    if moment.tzinfo is None:
        raise ValueError("a frozen moment needs a time zone")
    current = [moment.astimezone(dt.UTC)]

    def move(to: dt.datetime) -> None:
        current[0] = to.astimezone(dt.UTC)

    previous = _source
    set_source(lambda: current[0])
    try:
        yield move
    finally:
        set_source(previous)
