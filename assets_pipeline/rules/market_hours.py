"""When each market trades. Pure: every function takes the time it asks about.

Every session is defined in its market's own time zone, so daylight saving is right. Forex and
metals trade from Sunday 17:00 to Friday 17:00 New York: 22:00 UTC in northern winter, 21:00 UTC
while the US is on summer time. Crypto trades all week; indices follow their exchange's session.
All of it is configurable in the symbols file:

    market_hours:
      forex: {timezone: America/New_York, opens: "Sun 17:00", closes: "Fri 17:00"}  # weekly
      index: {timezone: America/New_York, opens: "09:30", closes: "16:00",
              days: [Mon, Tue, Wed, Thu, Fri]}

`timezone` defaults to America/New_York for both; `timezone: UTC` gives fixed UTC hours.
`forex: always` (or `index: always`) treats that market as never closing.
Exchange holidays are not modelled: on a holiday an index looks open, and may be called stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.taxonomy import AssetType

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = dt.timedelta(days=7)


class MarketHoursError(ValueError):
    pass


def _hhmm(text: str, where: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text.strip())
    except ValueError:
        raise MarketHoursError(f"{where}: {excerpt(text)} is not a time such as 22:00") from None


def _day(text: str, where: str) -> int:
    try:
        return DAYS.index(text.strip()[:3].title())
    except ValueError:
        raise MarketHoursError(f"{where}: {excerpt(text)} is not a day such as Sun") from None


@dataclass(frozen=True)
class WeeklySession:
    """Open from one weekday and time to another, both local times in `timezone`.

    Forex: Sun 17:00 -> Fri 17:00 America/New_York. Each week's open and close are built as local
    times and then converted to UTC, so a week in which the clocks change is right too.
    """

    opens_day: int = 6
    opens_at: dt.time = dt.time(17, 0)
    closes_day: int = 4
    closes_at: dt.time = dt.time(17, 0)
    always: bool = False
    timezone: str = "America/New_York"

    def sessions(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        if self.always:
            yield start - WEEK, end + WEEK
            return
        zone = ZoneInfo(self.timezone)
        first = start.astimezone(zone).date()
        monday = first - dt.timedelta(days=first.weekday() + 7)
        last = end.astimezone(zone).date()
        # A close at or before the open in the week (Fri before Sun) is the next week's.
        spill = 7 if (self.closes_day, self.closes_at) <= (self.opens_day, self.opens_at) else 0
        while monday <= last:
            opens = dt.datetime.combine(
                monday + dt.timedelta(days=self.opens_day), self.opens_at, zone
            )
            closes = dt.datetime.combine(
                monday + dt.timedelta(days=self.closes_day + spill), self.closes_at, zone
            )
            yield opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)
            monday += WEEK


@dataclass(frozen=True)
class DailySession:
    """An exchange's regular session on its trading days, in its own time zone."""

    timezone: str = "America/New_York"
    opens_at: dt.time = dt.time(9, 30)
    closes_at: dt.time = dt.time(16, 0)
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    always: bool = False

    def sessions(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        if self.always:
            yield start - WEEK, end + WEEK
            return
        zone = ZoneInfo(self.timezone)
        day = start.astimezone(zone).date() - dt.timedelta(days=1)
        last = end.astimezone(zone).date() + dt.timedelta(days=1)
        while day <= last:
            if day.weekday() in self.days:
                opens = dt.datetime.combine(day, self.opens_at, zone).astimezone(dt.UTC)
                closes = dt.datetime.combine(day, self.closes_at, zone).astimezone(dt.UTC)
                yield opens, closes
            day += dt.timedelta(days=1)


@dataclass(frozen=True)
class MarketHours:
    forex: WeeklySession = field(default_factory=WeeklySession)
    index: DailySession = field(default_factory=DailySession)

    def _sessions(
        self, asset_type: AssetType, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        if asset_type is AssetType.CRYPTO:
            yield start, end
        elif asset_type is AssetType.FOREX:
            yield from self.forex.sessions(start, end)
        else:
            yield from self.index.sessions(start, end)

    def is_open(self, asset_type: AssetType, at: dt.datetime) -> bool:
        if asset_type is AssetType.CRYPTO:
            return True
        return any(o <= at < c for o, c in self._sessions(asset_type, at, at))

    def open_seconds(self, asset_type: AssetType, start: dt.datetime, end: dt.datetime) -> float:
        """How long the market was open between `start` and `end`."""
        if end <= start:
            return 0.0
        total = 0.0
        for opens, closes in self._sessions(asset_type, start, end):
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            total += max(overlap, 0.0)
        return total

    def opened_between(self, asset_type: AssetType, start: dt.datetime, end: dt.datetime) -> bool:
        """Did the market open in (start, end]? (Crypto never 'opens': it never closes.)"""
        if asset_type is AssetType.CRYPTO:
            return False
        return any(start < o <= end for o, _ in self._sessions(asset_type, start, end))


def _zone(spec: dict[str, Any], default: str, here: str) -> str:
    timezone = str(spec.get("timezone", default))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MarketHoursError(f"{here}.timezone: unknown time zone {excerpt(timezone)}") from None
    return timezone


def parse_market_hours(document: Any, where: str) -> MarketHours:
    if document is None:
        return MarketHours()
    if not isinstance(document, dict):
        raise MarketHoursError(f"{where}: 'market_hours' must be a mapping")
    unknown = sorted(set(document) - {"forex", "index"})
    if unknown:
        raise MarketHoursError(f"{where}: market_hours.{unknown[0]}: unknown market")
    forex, index = WeeklySession(), DailySession()
    if document.get("forex") == "always":
        forex = WeeklySession(always=True)
    elif "forex" in document:
        spec = document["forex"] or {}
        here = f"{where}: market_hours.forex"
        try:
            opens_day, opens_at = str(spec.get("opens", "Sun 17:00")).split()
            closes_day, closes_at = str(spec.get("closes", "Fri 17:00")).split()
        except ValueError:
            raise MarketHoursError(f"{here}: opens/closes are like 'Sun 17:00'") from None
        forex = WeeklySession(
            opens_day=_day(opens_day, here),
            opens_at=_hhmm(opens_at, here),
            closes_day=_day(closes_day, here),
            closes_at=_hhmm(closes_at, here),
            timezone=_zone(spec, forex.timezone, here),
        )
    if document.get("index") == "always":
        index = DailySession(always=True)
    elif "index" in document:
        spec = document["index"] or {}
        here = f"{where}: market_hours.index"
        index = DailySession(
            timezone=_zone(spec, index.timezone, here),
            opens_at=_hhmm(str(spec.get("opens", "09:30")), here),
            closes_at=_hhmm(str(spec.get("closes", "16:00")), here),
            days=tuple(_day(d, here) for d in spec.get("days", DAYS[:5])),
        )
    return MarketHours(forex, index)
