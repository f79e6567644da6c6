"""A backfill's days, each on its own: what a (symbol, day) partition records is that day's."""

from __future__ import annotations

import datetime as dt

from assets_pipeline.history.days import DayHistory, by_day
from assets_pipeline.history.fetch import bars_frame
from assets_pipeline.polygon.parsing import Bar

FRIDAY, SATURDAY, SUNDAY = dt.date(2026, 11, 27), dt.date(2026, 11, 28), dt.date(2026, 11, 29)


def bar(at: dt.datetime) -> Bar:
    return Bar("C:EURUSD", at, 1.0, 1.1, 0.9, 1.05, volume=None, vwap=None, trades=None)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


def test_each_day_counts_only_its_own_bars_and_a_day_without_any_reads_zero():
    # Friday until the forex close, nothing on Saturday, Sunday from the evening open
    bars = [bar(at(FRIDAY, 0)), bar(at(FRIDAY, 21, 55)), bar(at(SUNDAY, 22)), bar(at(SUNDAY, 23))]
    days = by_day("EURUSD", bars_frame("EURUSD", bars, 300), [FRIDAY, SATURDAY, SUNDAY], 300)
    assert days == [
        DayHistory("EURUSD", FRIDAY, 2, 300, at(FRIDAY, 0), at(FRIDAY, 21, 55)),
        DayHistory("EURUSD", SATURDAY, 0, 300, None, None),
        DayHistory("EURUSD", SUNDAY, 2, 300, at(SUNDAY, 22), at(SUNDAY, 23)),
    ]
    assert days[1].metadata() == {
        "bars": 0,
        "bar_seconds": 300,
        "first_bar": None,
        "last_bar": None,
    }
    assert days[0].metadata()["last_bar"] == "2026-11-27T21:55:00.000000Z"


def test_no_bars_at_all_is_every_day_at_zero():
    days = by_day("EURUSD", bars_frame("EURUSD", [], 300), [SATURDAY, SUNDAY], 300)
    assert [(d.day, d.bars) for d in days] == [(SATURDAY, 0), (SUNDAY, 0)]
