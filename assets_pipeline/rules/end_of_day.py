"""What an end-of-day plan can give, and when. Pure: every function takes the time it asks about.

On a plan without snapshots the newest price is the close of the last session whose day bar is
published: once D's session has closed (the market's calendar) and the vendor has had `delay` to
publish it. A stored close that new is as fresh as the plan allows; an older one is stale; and
until the next session closes there is nothing new to fetch."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quotes import iso_utc
from assets_pipeline.rules.taxonomy import AssetType

#: How long after a session's close its day bar is taken to be published, by default.
DEFAULT_PUBLICATION_DELAY = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class NewestBar:
    """The newest day bar a market's end-of-day plan serves at one instant."""

    day: dt.date | None  # None: no session closed in the last fortnight (never, in practice)
    close: dt.datetime | None  # its session's close: the bar's data time
    next_close: dt.datetime  # when the next bar's session closes
    delay: dt.timedelta

    @property
    def next_due(self) -> dt.datetime:
        """When the next bar can be fetched: its close plus the publication delay."""
        return self.next_close + self.delay

    def holds(self, data_time: dt.datetime | None) -> bool:
        """Is a stored price of `data_time` as new as the plan allows?"""
        return data_time is not None and (self.close is None or data_time >= self.close)

    def describe(self) -> str:
        if self.day is None:
            return "end-of-day plan: no session closed in the last two weeks"
        return (
            f"end-of-day plan: newest data is the close of {self.day.isoformat()};"
            f" the next bar can be fetched after {iso_utc(self.next_due)[:16]}Z"
        )


def newest_bar(
    hours: MarketHours,
    asset_type: AssetType,
    now: dt.datetime,
    delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY,
) -> NewestBar:
    """The newest bar published by `now` (its session closed at least `delay` ago)."""
    day = hours.last_bar_day(asset_type, now, delay)
    close = hours.bar_close(asset_type, day) if day is not None else None
    return NewestBar(day, close, hours.next_bar_close(asset_type, now - delay), delay)


def bar_due(
    hours: MarketHours,
    asset_type: AssetType,
    stored: dt.datetime | None,
    now: dt.datetime,
    delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY,
) -> bool:
    """Can a call bring a newer bar than the stored one? Only once a newer session's bar is
    published: between two closes an end-of-day plan has nothing new, and a call is waste."""
    return not newest_bar(hours, asset_type, now, delay).holds(stored)
