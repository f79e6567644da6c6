"""When each market trades, and when its day bar closes. Pure: each function takes its time.

Forex and metals trade a weekly window less their holidays; indices their exchange's sessions
from `exchange_calendars` (imported on first use) or fixed hours; crypto always. A market's
sessions of a year are computed once per `MarketHours`, the registry's
(docs/design/market-calendars.md)."""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.taxonomy import AssetType

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = dt.timedelta(days=7)
ONE_DAY = dt.timedelta(days=1)
# The forex holidays (month, day): the trading day that ends at the weekly close's time on that
# date (17:00 New York) does not trade. No maintained calendar has spot forex with holidays; this
# is the override table docs/design/market-calendars.md describes.
FOREX_HOLIDAYS: tuple[tuple[int, int], ...] = ((12, 25), (1, 1))
DEFAULT_CALENDAR = "XNYS"
# last_bar_day looks back this far; next_bar_close looks ahead this far.
BAR_LOOKBACK_DAYS = 14
BAR_LOOKAHEAD_DAYS = 370

Session = tuple[dt.datetime, dt.datetime]


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


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), dt.UTC)


def _utc(local: dt.datetime) -> dt.datetime:
    return local.astimezone(dt.UTC)


def _subtract(sessions: list[Session], gaps: list[Session]) -> list[Session]:
    """`sessions` less the `gaps` (both lists of half-open UTC intervals)."""
    for gap_start, gap_end in gaps:
        kept: list[Session] = []
        for opens, closes in sessions:
            if gap_end <= opens or closes <= gap_start:
                kept.append((opens, closes))
                continue
            if opens < gap_start:
                kept.append((opens, gap_start))
            if gap_end < closes:
                kept.append((gap_end, closes))
        sessions = kept
    return sessions


@dataclass(frozen=True, eq=False)
class _Year:
    """One market's sessions that open (UTC) in one year, sorted, with each trading day's close
    (an index's day bar closes at its session's close)."""

    opens: tuple[dt.datetime, ...]
    closes: tuple[dt.datetime, ...]
    close_of_day: dict[dt.date, dt.datetime]


def _year(sessions: list[tuple[dt.date, Session]], year: int) -> _Year:
    ordered = sorted((s, day) for day, s in sessions if s[0].year == year and s[0] < s[1])
    close_of_day: dict[dt.date, dt.datetime] = {}
    for (_, closes), day in ordered:
        close_of_day[day] = max(closes, close_of_day.get(day, closes))
    return _Year(tuple(s[0] for s, _ in ordered), tuple(s[1] for s, _ in ordered), close_of_day)


@dataclass(frozen=True)
class WeeklySession:
    """Open from one weekday and time to another, both local times in `timezone`, less holidays.

    Forex: Sun 17:00 -> Fri 17:00 America/New_York. Each week's open and close are built as local
    times and then converted to UTC, so a week in which the clocks change is right too. A holiday
    (month, day) closes the trading day that ends on that date at the close's time: for
    Christmas, 17:00 New York on the 24th to 17:00 on the 25th (and to Sunday's open when the
    25th is a Friday).
    """

    opens_day: int = 6
    opens_at: dt.time = dt.time(17, 0)
    closes_day: int = 4
    closes_at: dt.time = dt.time(17, 0)
    always: bool = False
    timezone: str = "America/New_York"
    holidays: tuple[tuple[int, int], ...] = FOREX_HOLIDAYS

    def build_year(self, year: int) -> _Year:
        zone = ZoneInfo(self.timezone)
        # A close at or before the open in the week (Fri before Sun) is the next week's.
        spill = 7 if (self.closes_day, self.closes_at) <= (self.opens_day, self.opens_at) else 0
        first = dt.date(year - 1, 12, 15)
        monday = first - dt.timedelta(days=first.weekday())
        weeks: list[Session] = []
        while monday <= dt.date(year, 12, 31):
            opens = dt.datetime.combine(
                monday + dt.timedelta(days=self.opens_day), self.opens_at, zone
            )
            closes = dt.datetime.combine(
                monday + dt.timedelta(days=self.closes_day + spill), self.closes_at, zone
            )
            weeks.append((_utc(opens), _utc(closes)))
            monday += WEEK
        gaps = []
        for y in (year - 1, year, year + 1):
            for month, day in self.holidays:
                holiday = dt.date(y, month, day)
                gaps.append(
                    (
                        _utc(dt.datetime.combine(holiday - ONE_DAY, self.closes_at, zone)),
                        _utc(dt.datetime.combine(holiday, self.closes_at, zone)),
                    )
                )
        # A forex trading day is named after the date of its close (local).
        sessions = [(c.astimezone(zone).date(), (o, c)) for o, c in _subtract(weeks, gaps)]
        return _year(sessions, year)


@dataclass(frozen=True)
class DailySession:
    """An index's sessions: its exchange's calendar (`calendar`, an ISO MIC such as XNYS, from
    exchange_calendars: holidays and early closes) less the `closed` dates; or, with
    `calendar=None`, fixed hours on `days` in `timezone`."""

    timezone: str = "America/New_York"
    opens_at: dt.time = dt.time(9, 30)
    closes_at: dt.time = dt.time(16, 0)
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    always: bool = False
    calendar: str | None = DEFAULT_CALENDAR
    closed: tuple[dt.date, ...] = ()

    def build_year(self, year: int) -> _Year:
        if self.calendar is not None:
            sessions = [
                (day, session)
                for day, sessions in exchange_sessions(self.calendar, year)
                for session in sessions
            ]
        else:
            zone = ZoneInfo(self.timezone)
            sessions = []
            day = dt.date(year - 1, 12, 25)
            while day <= dt.date(year + 1, 1, 7):
                if day.weekday() in self.days:
                    opens = _utc(dt.datetime.combine(day, self.opens_at, zone))
                    closes = _utc(dt.datetime.combine(day, self.closes_at, zone))
                    sessions.append((day, (opens, closes)))
                day += ONE_DAY
        closed = set(self.closed)
        return _year([(d, s) for d, s in sessions if d not in closed], year)


def exchange_sessions(calendar: str, year: int) -> tuple[tuple[dt.date, tuple[Session, ...]], ...]:
    """The exchange's sessions named after a date from Dec 25 of the year before to Jan 7 of the
    year after: (local date, its open intervals in UTC: two when it breaks for lunch).

    exchange_calendars is imported here, on first use (about 0.4 s and 40 MB), not at import.
    Not kept here: `MarketHours` keeps each year it builds.
    """
    import exchange_calendars  # here, lazily: the code location must not pay for it

    try:
        exchange = exchange_calendars.get_calendar(
            calendar, start=dt.date(year - 1, 12, 25), end=dt.date(year + 1, 1, 7)
        )
    except exchange_calendars.errors.InvalidCalendarName:
        raise MarketHoursError(
            f"market_hours.index.calendar: {excerpt(calendar)} is not an exchange calendar "
            "(exchange_calendars names such as XNYS, XLON, XTKS)"
        ) from None
    schedule = exchange.schedule
    out = []
    for label, opens, closes, break_starts, break_ends in zip(
        schedule.index,
        schedule["open"],
        schedule["close"],
        schedule["break_start"],
        schedule["break_end"],
        strict=True,
    ):
        o, c = opens.to_pydatetime(), closes.to_pydatetime()
        if break_starts is not None and break_starts == break_starts:  # not NaT
            parts = ((o, break_starts.to_pydatetime()), (break_ends.to_pydatetime(), c))
        else:
            parts = ((o, c),)
        out.append((label.date(), tuple((_utc(a), _utc(b)) for a, b in parts)))
    return tuple(out)


@dataclass(frozen=True)
class MarketHours:
    """The markets' sessions; each year a market is asked about is built once and kept here, as
    long as these hours (the registry's) live."""

    forex: WeeklySession = field(default_factory=WeeklySession)
    index: DailySession = field(default_factory=DailySession)
    _years: dict[tuple[WeeklySession | DailySession, int], _Year] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _year(self, market: WeeklySession | DailySession, year: int) -> _Year:
        built = self._years.get((market, year))
        if built is None:
            built = self._years[market, year] = market.build_year(year)
        return built

    def _market(self, asset_type: AssetType) -> WeeklySession | DailySession | None:
        """The market's sessions, or None when it never closes."""
        if asset_type is AssetType.CRYPTO:
            return None
        market = self.forex if asset_type is AssetType.FOREX else self.index
        return None if market.always else market

    def _sessions(
        self, asset_type: AssetType, start: dt.datetime, end: dt.datetime
    ) -> Iterator[Session]:
        market = self._market(asset_type)
        if market is None:
            yield start - WEEK, end + WEEK
            return
        start, end = _utc(start), _utc(end)
        for year in range(start.year - 1, end.year + 1):
            sessions = self._year(market, year)
            first = bisect.bisect_right(sessions.closes, start)
            last = bisect.bisect_right(sessions.opens, end)
            yield from zip(sessions.opens[first:last], sessions.closes[first:last], strict=True)

    def is_open(self, asset_type: AssetType, at: dt.datetime) -> bool:
        market = self._market(asset_type)
        if market is None:
            return True
        at = _utc(at)
        for year in (at.year, at.year - 1):
            sessions = self._year(market, year)
            i = bisect.bisect_right(sessions.opens, at) - 1
            if i >= 0:
                return at < sessions.closes[i]
        return False

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
        if self._market(asset_type) is None:
            return False
        return any(start < o <= end for o, _ in self._sessions(asset_type, start, end))

    def bar_close(self, asset_type: AssetType, day: dt.date) -> dt.datetime | None:
        """When the day bar of `day` closes (UTC), or None when the market does not trade that day.

        Forex and crypto day bars cover the UTC day, so theirs closes at the last instant the
        market trades in it (midnight after, or Friday's close). An index's closes at its
        exchange's close on that (local) date, early closes included.
        """
        market = self._market(asset_type)
        start = _midnight(day)
        end = start + ONE_DAY
        if market is None:
            return end
        if isinstance(market, DailySession):
            for year in (day.year, day.year - 1, day.year + 1):
                close = self._year(market, year).close_of_day.get(day)
                if close is not None:
                    return close
            return None
        last = None
        for opens, closes in self._sessions(asset_type, start, end):
            if opens < end and start < closes:
                last = min(closes, end) if last is None else max(last, min(closes, end))
        return last

    def last_bar_day(
        self, asset_type: AssetType, now: dt.datetime, delay: dt.timedelta = dt.timedelta(0)
    ) -> dt.date | None:
        """The newest day whose bar closed at or before `now - delay` (None if none in two
        weeks)."""
        cutoff = _utc(now - delay)
        day = cutoff.date() + ONE_DAY
        for _ in range(BAR_LOOKBACK_DAYS + 2):
            close = self.bar_close(asset_type, day)
            if close is not None and close <= cutoff:
                return day
            day -= ONE_DAY
        return None

    def next_bar_close(self, asset_type: AssetType, after: dt.datetime) -> dt.datetime:
        """The first day bar close strictly after `after`."""
        day = _utc(after).date() - ONE_DAY
        for _ in range(BAR_LOOKAHEAD_DAYS):
            close = self.bar_close(asset_type, day)
            if close is not None and close > after:
                return close
            day += ONE_DAY
        raise MarketHoursError(f"no {asset_type.value} day bar closes in a year after {after}")


def _zone(spec: dict[str, Any], default: str, here: str) -> str:
    timezone = str(spec.get("timezone", default))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MarketHoursError(f"{here}.timezone: unknown time zone {excerpt(timezone)}") from None
    return timezone


def _holidays(spec: dict[str, Any], here: str) -> tuple[tuple[int, int], ...]:
    if "holidays" not in spec:
        return FOREX_HOLIDAYS
    out = []
    for text in spec["holidays"] or ():
        try:
            month, day = (int(part) for part in str(text).split("-"))
            dt.date(2000, month, day)  # a leap year: 02-29 is a date
        except ValueError:
            raise MarketHoursError(
                f"{here}.holidays: {excerpt(text)} is not a month and day such as 12-25"
            ) from None
        out.append((month, day))
    return tuple(out)


def _calendar(spec: dict[str, Any], here: str) -> str | None:
    fixed = sorted({"timezone", "opens", "closes", "days"} & set(spec))
    if "calendar" not in spec:
        # Hours spelled out (the older syntax) are fixed hours; otherwise the default exchange.
        return None if fixed else DEFAULT_CALENDAR
    calendar = spec["calendar"]
    if calendar is None or str(calendar).lower() == "none":
        return None
    if fixed:
        raise MarketHoursError(
            f"{here}: {fixed[0]} is the calendar's; give calendar: none for fixed hours"
        )
    if not re.fullmatch(r"[A-Za-z0-9/_]{2,16}", str(calendar)):
        raise MarketHoursError(
            f"{here}.calendar: {excerpt(str(calendar))} is not an exchange calendar such as XNYS"
        )
    return str(calendar).upper()


def _dates(spec: dict[str, Any], here: str) -> tuple[dt.date, ...]:
    out = []
    for value in spec.get("closed") or ():
        if isinstance(value, dt.date):
            out.append(value)
            continue
        try:
            out.append(dt.date.fromisoformat(str(value)))
        except ValueError:
            raise MarketHoursError(
                f"{here}.closed: {excerpt(str(value))} is not a date such as 2027-01-09"
            ) from None
    return tuple(sorted(out))


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
            holidays=_holidays(spec, here),
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
            calendar=_calendar(spec, here),
            closed=_dates(spec, here),
        )
    return MarketHours(forex, index)
