"""The one clock the package reads (`utcnow`), which a test freezes for everything at once with
`frozen_at`; the budget alone counts on its store's clock. The frozen time is a context variable,
not a cache; a thread reads it only when handed `reader()` (docs/design/injectable-clock.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Where this context reads the time from (None: the wall clock); set only by `frozen_at`.
_SOURCE: ContextVar[Callable[[], dt.datetime] | None] = ContextVar("clock_source", default=None)


def utcnow() -> dt.datetime:
    """Now, in UTC (or the time a test has set)."""
    source = _SOURCE.get()
    return source() if source is not None else dt.datetime.now(dt.UTC)


def reader() -> Callable[[], dt.datetime]:
    """This context's clock as a function any thread may call (a test's server thread reads the
    test's frozen time, as it moves)."""
    return _SOURCE.get() or (lambda: dt.datetime.now(dt.UTC))


def today() -> dt.date:
    """Today's date in UTC."""
    return utcnow().date()


@contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[Callable[[dt.datetime], None]]:
    """Freeze the clock at `moment`; the context yields a function that moves it."""
    if moment.tzinfo is None:
        raise ValueError("a frozen moment needs a time zone")
    current = [moment.astimezone(dt.UTC)]

    def move(to: dt.datetime) -> None:
        current[0] = to.astimezone(dt.UTC)

    token = _SOURCE.set(lambda: current[0])
    try:
        yield move
    finally:
        _SOURCE.reset(token)
