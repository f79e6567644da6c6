"""A backfill's days, each on its own: the day's bar count, first and last bar, bar size.

A single run may cover two years; what it records per (symbol, day) is that day's alone, so a
Saturday without trading reads 0 bars, never the run's total.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assets_pipeline.rules.quotes import iso_utc

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DayHistory:
    """One symbol's bars on one UTC day, as stored."""

    symbol: str
    day: dt.date
    bars: int
    bar_seconds: int
    first_bar: dt.datetime | None = None
    last_bar: dt.datetime | None = None

    def metadata(self) -> dict[str, Any]:
        """What the day's partition records: its own bars, never the run's."""
        return {
            "bars": self.bars,
            "bar_seconds": self.bar_seconds,
            "first_bar": iso_utc(self.first_bar) if self.first_bar else None,
            "last_bar": iso_utc(self.last_bar) if self.last_bar else None,
        }


def by_day(
    symbol: str, bars: pd.DataFrame, days: Sequence[dt.date], bar_seconds: int
) -> list[DayHistory]:
    """Each of `days`, oldest first, with the bars of `bars` that start on it (UTC)."""
    starts: dict[dt.date, list[dt.datetime]] = {day: [] for day in days}
    for start in bars["bar_start"] if not bars.empty else ():
        moment = start.to_pydatetime() if hasattr(start, "to_pydatetime") else start
        day = moment.astimezone(dt.UTC).date()
        if day in starts:
            starts[day].append(moment)
    return [
        DayHistory(
            symbol,
            day,
            len(found),
            bar_seconds,
            min(found) if found else None,
            max(found) if found else None,
        )
        for day, found in sorted(starts.items())
    ]
