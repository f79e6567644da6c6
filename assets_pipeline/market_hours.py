"""When each market trades. Pure: every function takes the time it asks about.

Forex and metals trade from Sunday 22:00 to Friday 22:00 UTC; crypto trades all week; indices
follow their exchange's session in the exchange's own time zone (so daylight saving is right).
All of it is configurable in the symbols file:

    market_hours:
      forex: {opens: "Sun 22:00", closes: "Fri 22:00"}          # UTC, weekly
      index: {timezone: America/New_York, opens: "09:30", closes: "16:00",
              days: [Mon, Tue, Wed, Thu, Fri]}

`forex: always` (or `index: always`) treats that market as never closing.
Exchange holidays are not modelled: on a holiday an index looks open, and may be called stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from assets_pipeline.taxonomy import AssetType

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = dt.timedelta(days=7)


class MarketHoursError(ValueError):
    pass


def _hhmm(text: str, where: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text.strip())
    except ValueError:
        raise MarketHoursError(f"{where}: {text!r} is not a time such as 22:00") from None


def _day(text: str, where: str) -> int:
    try:
        return DAYS.index(text.strip()[:3].title())
    except ValueError:
        raise MarketHoursError(f"{where}: {text!r} is not a day such as Sun") from None


@dataclass(frozen=True)
class WeeklySession:
    """Open from one weekday and time to another, in UTC (forex: Sun 22:00 -> Fri 22:00)."""

    opens_day: int = 6
    opens_at: dt.time = dt.time(22, 0)
    closes_day: int = 4
    closes_at: dt.time = dt.time(22, 0)
    always: bool = False

    def sessions(
        self, start: dt.datetime, end: dt.datetime
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        if self.always:
            yield start - WEEK, end + WEEK
            return
        monday = (start - dt.timedelta(days=start.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) - WEEK
        while monday <= end:
            opens = monday + dt.timedelta(
                days=self.opens_day, hours=self.opens_at.hour, minutes=self.opens_at.minute
            )
            closes = monday + dt.timedelta(
                days=self.closes_day, hours=self.closes_at.hour, minutes=self.closes_at.minute
            )
            if closes <= opens:
                closes += WEEK
            yield opens, closes
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
            opens_day, opens_at = str(spec.get("opens", "Sun 22:00")).split()
            closes_day, closes_at = str(spec.get("closes", "Fri 22:00")).split()
        except ValueError:
            raise MarketHoursError(f"{here}: opens/closes are like 'Sun 22:00'") from None
        forex = WeeklySession(
            _day(opens_day, here),
            _hhmm(opens_at, here),
            _day(closes_day, here),
            _hhmm(closes_at, here),
        )
    if document.get("index") == "always":
        index = DailySession(always=True)
    elif "index" in document:
        spec = document["index"] or {}
        here = f"{where}: market_hours.index"
        timezone = str(spec.get("timezone", index.timezone))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MarketHoursError(f"{here}.timezone: unknown time zone {timezone!r}") from None
        index = DailySession(
            timezone=timezone,
            opens_at=_hhmm(str(spec.get("opens", "09:30")), here),
            closes_at=_hhmm(str(spec.get("closes", "16:00")), here),
            days=tuple(_day(d, here) for d in spec.get("days", DAYS[:5])),
        )
    return MarketHours(forex, index)
