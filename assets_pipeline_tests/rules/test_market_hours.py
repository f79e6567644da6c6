"""Market hours at their edges, across the clock changes and the holidays, when day bars close, and
as the symbols file sets them (pure; fixed datetimes, never the wall clock)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import yaml

from assets_pipeline.rules.market_hours import (
    DailySession,
    MarketHours,
    MarketHoursError,
    parse_market_hours,
)
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline_tests.conftest import REPO

HOURS = MarketHours()
FOREX, CRYPTO, INDEX = AssetType.FOREX, AssetType.CRYPTO, AssetType.INDEX


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


D = dt.date


# Forex trades Sunday 17:00 to Friday 17:00 New York. New York is UTC-5 (EST) in winter and UTC-4
# (EDT) in summer; in 2026 summer time starts Sunday 2026-03-08 and ends Sunday 2026-11-01, both at
# 02:00 local, inside the forex weekend. Indices: 09:30-16:00 New York, Monday to Friday.
@pytest.mark.parametrize(
    ("asset_type", "at", "is_open"),
    [
        # winter: Fri 2026-11-20, Sat 11-21, Sun 11-22 (EST): the week is 22:00 to 22:00 UTC
        (FOREX, utc(2026, 11, 20, 21, 59), True),  # Friday 16:59 EST: still trading
        (FOREX, utc(2026, 11, 20, 22, 0), False),  # Friday 17:00 EST: closed
        (FOREX, utc(2026, 11, 21, 12, 0), False),  # Saturday
        (FOREX, utc(2026, 11, 22, 21, 59), False),  # Sunday 16:59 EST: not yet
        (FOREX, utc(2026, 11, 22, 22, 0), True),  # Sunday 17:00 EST: open
        (FOREX, utc(2026, 11, 24, 3, 0), True),  # Tuesday night
        # summer: Fri 2026-07-17, Sun 07-19 (EDT): the week is 21:00 to 21:00 UTC
        (FOREX, utc(2026, 7, 17, 20, 59), True),  # Friday 16:59 EDT: still trading
        (FOREX, utc(2026, 7, 17, 21, 0), False),  # Friday 17:00 EDT: closed
        (FOREX, utc(2026, 7, 17, 21, 30), False),  # Friday 17:30 EDT: no call on a closed market
        (FOREX, utc(2026, 7, 19, 20, 59), False),  # Sunday 16:59 EDT: not yet
        (FOREX, utc(2026, 7, 19, 21, 0), True),  # Sunday 17:00 EDT: open
        (FOREX, utc(2026, 7, 19, 21, 30), True),  # Sunday 17:30 EDT: the week's first hour
        # summer time starts Sunday 2026-03-08
        (FOREX, utc(2026, 3, 1, 21, 30), False),  # Sunday before, 16:30 EST: not yet
        (FOREX, utc(2026, 3, 1, 22, 0), True),  # Sunday before, 17:00 EST: open
        (FOREX, utc(2026, 3, 6, 21, 30), True),  # Friday before, 16:30 EST: still trading
        (FOREX, utc(2026, 3, 6, 22, 0), False),  # Friday before, 17:00 EST: closed
        (FOREX, utc(2026, 3, 8, 20, 59), False),  # the Sunday itself, 16:59 EDT: not yet
        (FOREX, utc(2026, 3, 8, 21, 30), True),  # the Sunday itself, 17:30 EDT: open
        (FOREX, utc(2026, 3, 13, 20, 59), True),  # Friday after, 16:59 EDT: still trading
        (FOREX, utc(2026, 3, 13, 21, 30), False),  # Friday after, 17:30 EDT: closed
        # summer time ends Sunday 2026-11-01
        (FOREX, utc(2026, 10, 30, 20, 59), True),  # Friday before, 16:59 EDT: still trading
        (FOREX, utc(2026, 10, 30, 21, 0), False),  # Friday before, 17:00 EDT: closed
        (FOREX, utc(2026, 11, 1, 21, 30), False),  # the Sunday itself, 16:30 EST: not yet
        (FOREX, utc(2026, 11, 1, 22, 0), True),  # the Sunday itself, 17:00 EST: open
        (FOREX, utc(2026, 11, 6, 21, 30), True),  # Friday after, 16:30 EST: still trading
        (FOREX, utc(2026, 11, 6, 22, 0), False),  # Friday after, 17:00 EST: closed
        # crypto never closes
        (CRYPTO, utc(2026, 11, 21, 12, 0), True),  # Saturday
        (CRYPTO, utc(2026, 11, 22, 21, 59), True),  # Sunday, before forex opens
        # indices
        (INDEX, utc(2026, 11, 20, 14, 29), False),  # Friday, New York 09:29 (EST, UTC-5)
        (INDEX, utc(2026, 11, 20, 14, 30), True),  # Friday, New York 09:30
        (INDEX, utc(2026, 11, 20, 20, 59), True),  # Friday, New York 15:59
        (INDEX, utc(2026, 11, 20, 21, 0), False),  # Friday, New York 16:00
        (INDEX, utc(2026, 7, 17, 13, 30), True),  # summer (EDT, UTC-4): 09:30 is 13:30 UTC
        (INDEX, utc(2026, 11, 21, 15, 0), False),  # Saturday
        (INDEX, utc(2026, 3, 6, 13, 30), False),  # Friday before summer time, 08:30 EST
        (INDEX, utc(2026, 3, 9, 13, 30), True),  # Monday after it starts, 09:30 EDT
        (INDEX, utc(2026, 3, 9, 20, 0), False),  # Monday after it starts, 16:00 EDT
        (INDEX, utc(2026, 10, 30, 20, 30), False),  # Friday before summer time ends, 16:30 EDT
        (INDEX, utc(2026, 11, 2, 14, 29), False),  # Monday after it ends, 09:29 EST
        (INDEX, utc(2026, 11, 2, 20, 30), True),  # Monday after it ends, 15:30 EST
        # Christmas 2026 is a Friday: forex closes Thursday 17:00 EST until Sunday 17:00
        (FOREX, utc(2026, 12, 24, 21, 59), True),  # Christmas Eve, 16:59 EST: still trading
        (FOREX, utc(2026, 12, 24, 22, 0), False),  # Christmas Eve, 17:00 EST: Christmas's day
        (FOREX, utc(2026, 12, 25, 12, 0), False),  # Christmas Day
        (FOREX, utc(2026, 12, 27, 21, 59), False),  # Sunday after, 16:59 EST: not yet
        (FOREX, utc(2026, 12, 27, 22, 0), True),  # Sunday after, 17:00 EST: open
        # New Year's Day 2027 is a Friday too
        (FOREX, utc(2026, 12, 31, 21, 59), True),  # New Year's Eve, 16:59 EST: still trading
        (FOREX, utc(2026, 12, 31, 22, 0), False),  # New Year's Eve, 17:00 EST: closed
        (FOREX, utc(2027, 1, 1, 0, 0), False),  # midnight UTC, the year's first instant
        (FOREX, utc(2027, 1, 1, 15, 0), False),  # New Year's Day
        (FOREX, utc(2027, 1, 3, 22, 0), True),  # Sunday after, 17:00 EST: open
        (CRYPTO, utc(2026, 12, 25, 12, 0), True),  # crypto trades on Christmas Day
        (CRYPTO, utc(2027, 1, 1, 0, 0), True),  # and through New Year
        # NYSE (XNYS): Thanksgiving Thursday 2026-11-26 closed, Friday 11-27 closes at 13:00 EST
        (INDEX, utc(2026, 11, 25, 20, 59), True),  # the Wednesday before, 15:59 EST: a full day
        (INDEX, utc(2026, 11, 26, 15, 0), False),  # Thanksgiving, 10:00 EST: a holiday
        (INDEX, utc(2026, 11, 27, 14, 30), True),  # the Friday after, 09:30 EST: opens as usual
        (INDEX, utc(2026, 11, 27, 17, 59), True),  # the Friday after, 12:59 EST: still trading
        (INDEX, utc(2026, 11, 27, 18, 0), False),  # the Friday after, 13:00 EST: early close
        (INDEX, utc(2026, 12, 25, 15, 0), False),  # Christmas Day: an NYSE holiday
    ],
)
def test_market_hours_at_the_edges(asset_type, at, is_open):
    assert HOURS.is_open(asset_type, at) is is_open


@pytest.mark.parametrize(
    ("start", "end", "open_minutes"),
    [
        # winter weekend: Friday 21:50-22:00 and Sunday 22:00-22:05 UTC
        (utc(2026, 11, 20, 21, 50), utc(2026, 11, 22, 22, 5), 15),
        # summer weekend: Friday 20:00-21:00 and Sunday 21:00-21:30 UTC (a 22:00 UTC rule
        # would count Friday 21:00-22:00 instead of Sunday's half hour)
        (utc(2026, 7, 17, 20, 0), utc(2026, 7, 19, 21, 30), 90),
        # summer time starts: closes Friday 22:00 UTC (EST), opens Sunday 21:00 UTC (EDT)
        (utc(2026, 3, 6, 21, 0), utc(2026, 3, 8, 22, 0), 120),
        # summer time ends: closes Friday 21:00 UTC (EDT), opens Sunday 22:00 UTC (EST)
        (utc(2026, 10, 30, 20, 0), utc(2026, 11, 1, 23, 0), 120),
        # two Monday-to-Monday weeks across the start of summer time: 336 h less the
        # weekend it starts in (Friday 22:00 to Sunday 21:00 UTC, 47 h) and the next (48 h)
        (utc(2026, 3, 2, 0, 0), utc(2026, 3, 16, 0, 0), (336 - 47 - 48) * 60),
    ],
)
def test_forex_open_time_skips_the_weekend(start, end, open_minutes):
    assert HOURS.open_seconds(FOREX, start, end) == open_minutes * 60
    assert HOURS.open_seconds(CRYPTO, start, end) == (end - start).total_seconds()


@pytest.mark.parametrize(
    ("start", "end", "opened"),
    [
        # winter: the open is Sunday 22:00 UTC
        (utc(2026, 11, 22, 21, 59, 30), utc(2026, 11, 22, 22, 0), True),
        (utc(2026, 11, 22, 22, 0), utc(2026, 11, 22, 22, 1), False),  # already open
        # summer: the open is Sunday 21:00 UTC, not 22:00
        (utc(2026, 7, 19, 20, 59, 30), utc(2026, 7, 19, 21, 0), True),
        (utc(2026, 7, 19, 21, 59, 30), utc(2026, 7, 19, 22, 0), False),
        # the Sunday summer time starts: 17:00 EDT is 21:00 UTC
        (utc(2026, 3, 8, 20, 59, 30), utc(2026, 3, 8, 21, 0), True),
        # the Sunday summer time ends: 17:00 EST is 22:00 UTC
        (utc(2026, 11, 1, 20, 59, 30), utc(2026, 11, 1, 21, 0), False),
        (utc(2026, 11, 1, 21, 59, 30), utc(2026, 11, 1, 22, 0), True),
        # a window over the whole weekend sees the open
        (utc(2026, 10, 30, 12, 0), utc(2026, 11, 2, 12, 0), True),
    ],
)
def test_forex_open_is_seen_when_it_happens(start, end, opened):
    assert HOURS.opened_between(FOREX, start, end) is opened
    assert not HOURS.opened_between(CRYPTO, start, end)  # crypto never closes, so never opens


def test_market_hours_are_configurable_and_checked():
    # the documented syntax, spelled out, is the default
    documented = {
        "forex": {"timezone": "America/New_York", "opens": "Sun 17:00", "closes": "Fri 17:00"}
    }
    assert parse_market_hours(documented, "f") == MarketHours()
    # fixed UTC hours on request: Sunday 21:00 UTC opens in winter as in summer
    hours = parse_market_hours(
        {"forex": {"timezone": "UTC", "opens": "Sun 21:00", "closes": "Fri 21:00"}}, "f"
    )
    assert hours.is_open(FOREX, utc(2026, 11, 22, 21, 0))
    assert not hours.is_open(FOREX, utc(2026, 11, 20, 21, 0))
    assert not hours.is_open(FOREX, utc(2026, 7, 17, 21, 0))
    # another zone: Sunday 17:00 in Auckland (NZDT, UTC+13) is Sunday 04:00 UTC
    auckland = parse_market_hours({"forex": {"timezone": "Pacific/Auckland"}}, "f")
    assert not auckland.is_open(FOREX, utc(2026, 11, 22, 3, 59))
    assert auckland.is_open(FOREX, utc(2026, 11, 22, 4, 0))
    # forex: always never closes
    assert parse_market_hours({"forex": "always"}, "f").is_open(FOREX, utc(2026, 11, 21, 12, 0))
    for market in ("forex", "index"):
        with pytest.raises(
            ValueError,
            match=rf"^symbols\.yaml: market_hours\.{market}\.timezone: "
            r"unknown time zone 'Mars/Base'$",
        ):
            parse_market_hours({market: {"timezone": "Mars/Base"}}, "symbols.yaml")
    with pytest.raises(
        ValueError, match=r"^f: market_hours\.forex: 'night' is not a time such as 22:00$"
    ):
        parse_market_hours({"forex": {"opens": "Sunday night"}}, "f")


def test_the_documented_example_is_valid_and_states_the_defaults():
    readme = (REPO / "docs" / "plans.md").read_text()
    block = re.search(r"```yaml\n(market_hours:\n.*?)```", readme, re.DOTALL)
    assert block, "docs/plans.md has no market_hours example"
    example = yaml.safe_load(block.group(1))["market_hours"]
    assert parse_market_hours(example, "docs/plans.md") == MarketHours()


# Polygon's forex and crypto day bars cover UTC days: a bar closes at the last instant its UTC day
# trades. An index's bar closes at its exchange's close on that date. None: no bar that day.
@pytest.mark.parametrize(
    ("asset_type", "day", "closes"),
    [
        (FOREX, D(2026, 11, 24), utc(2026, 11, 25)),  # Tuesday: trades all UTC day
        (FOREX, D(2026, 11, 20), utc(2026, 11, 20, 22)),  # Friday in winter: 17:00 EST close
        (FOREX, D(2026, 7, 17), utc(2026, 7, 17, 21)),  # Friday in summer: 17:00 EDT close
        (FOREX, D(2026, 11, 21), None),  # Saturday: no trading at all
        (FOREX, D(2026, 11, 22), utc(2026, 11, 23)),  # Sunday: opens 22:00 UTC, trades to 24:00
        (FOREX, D(2026, 7, 19), utc(2026, 7, 20)),  # Sunday in summer: opens 21:00 UTC
        (FOREX, D(2026, 12, 24), utc(2026, 12, 24, 22)),  # Christmas Eve: closes 17:00 EST
        (FOREX, D(2026, 12, 25), None),  # Christmas Day (a Friday): closed
        (FOREX, D(2026, 12, 27), utc(2026, 12, 28)),  # the Sunday after: reopens 17:00 EST
        (FOREX, D(2027, 1, 1), None),  # New Year's Day (a Friday): closed
        (CRYPTO, D(2026, 11, 21), utc(2026, 11, 22)),  # crypto, a Saturday: the UTC midnight
        (CRYPTO, D(2026, 12, 25), utc(2026, 12, 26)),  # crypto, Christmas Day: the same
        (INDEX, D(2026, 11, 24), utc(2026, 11, 24, 21)),  # NYSE, a normal winter day: 16:00 EST
        (INDEX, D(2026, 7, 17), utc(2026, 7, 17, 20)),  # NYSE, a normal summer day: 16:00 EDT
        (INDEX, D(2026, 11, 27), utc(2026, 11, 27, 18)),  # NYSE early close: 13:00 EST
        (INDEX, D(2026, 11, 26), None),  # NYSE holiday (Thanksgiving)
        (INDEX, D(2026, 11, 21), None),  # NYSE weekend (Saturday)
    ],
)
def test_bar_close(asset_type, day, closes):
    assert HOURS.bar_close(asset_type, day) == closes


@pytest.mark.parametrize(
    ("asset_type", "now", "delay_minutes", "day"),
    [
        (FOREX, utc(2026, 11, 23, 1), 0, D(2026, 11, 22)),  # Monday 01:00 UTC: Sunday's bar
        (FOREX, utc(2026, 11, 21, 12), 0, D(2026, 11, 20)),  # Saturday: Friday's bar
        (FOREX, utc(2026, 11, 22, 23), 0, D(2026, 11, 20)),  # Sunday night: Sunday's still open
        (FOREX, utc(2026, 11, 25, 0, 30), 0, D(2026, 11, 24)),  # Wednesday 00:30: Tuesday's bar
        (FOREX, utc(2026, 11, 25, 0, 30), 60, D(2026, 11, 23)),  # ... a 1 h delay: Monday's
        (FOREX, utc(2026, 11, 23, 1), 120, D(2026, 11, 20)),  # Monday 01:00 less 2 h: Friday's
        (FOREX, utc(2026, 12, 27, 12), 0, D(2026, 12, 24)),  # Christmas weekend: Thursday's
        (CRYPTO, utc(2026, 11, 21, 0), 0, D(2026, 11, 20)),  # crypto at midnight: the day before
        (CRYPTO, utc(2026, 11, 21, 0), 1, D(2026, 11, 19)),  # ... a minute's delay: one earlier
        (INDEX, utc(2026, 11, 27, 18), 0, D(2026, 11, 27)),  # NYSE at the early close: that day
        (INDEX, utc(2026, 11, 27, 17, 59), 0, D(2026, 11, 25)),  # a minute before: Wednesday's
    ],
)
def test_last_bar_day(asset_type, now, delay_minutes, day):
    delay = dt.timedelta(minutes=delay_minutes)
    assert HOURS.last_bar_day(asset_type, now, delay) == day


def test_last_bar_day_is_none_when_nothing_closed_within_two_weeks():
    shut = MarketHours(index=DailySession(calendar=None, days=()))  # an index that never trades
    assert shut.last_bar_day(INDEX, utc(2026, 11, 25)) is None


@pytest.mark.parametrize(
    ("asset_type", "after", "closes"),
    [
        (FOREX, utc(2026, 11, 24, 12), utc(2026, 11, 25)),  # Tuesday noon: Tuesday's bar
        (FOREX, utc(2026, 11, 20, 21), utc(2026, 11, 20, 22)),  # Friday 16:00 EST: the close
        (FOREX, utc(2026, 11, 20, 22), utc(2026, 11, 23)),  # at Friday's close: Sunday's bar
        (FOREX, utc(2026, 12, 24, 22), utc(2026, 12, 28)),  # Christmas: the Sunday after's bar
        (CRYPTO, utc(2026, 11, 21, 5), utc(2026, 11, 22)),  # crypto: the next UTC midnight
        (CRYPTO, utc(2026, 11, 22), utc(2026, 11, 23)),  # at midnight: strictly after it
        (INDEX, utc(2026, 11, 25, 21), utc(2026, 11, 27, 18)),  # Thanksgiving: the early close
        (INDEX, utc(2026, 11, 20, 22), utc(2026, 11, 23, 21)),  # Friday night: Monday's close
    ],
)
def test_next_bar_close(asset_type, after, closes):
    assert HOURS.next_bar_close(asset_type, after) == closes


def test_the_calendar_and_holidays_are_configurable_and_checked():
    # spelled-out index hours (the older syntax) are fixed hours: Thanksgiving looks open
    fixed = parse_market_hours(
        {"index": {"timezone": "America/New_York", "opens": "09:30", "closes": "16:00"}}, "f"
    )
    assert fixed.index.calendar is None
    assert fixed.is_open(INDEX, utc(2026, 11, 26, 15))
    assert fixed.bar_close(INDEX, D(2026, 11, 27)) == utc(2026, 11, 27, 21)  # no early close
    assert parse_market_hours({"index": {"calendar": "none", "opens": "10:00"}}, "f").is_open(
        INDEX, utc(2026, 11, 26, 15)
    )
    # another exchange: London (XLON) is open on US Thanksgiving, 08:00-16:30 GMT
    london = parse_market_hours({"index": {"calendar": "xlon"}}, "f")
    assert london.index.calendar == "XLON"
    assert london.is_open(INDEX, utc(2026, 11, 26, 15))
    assert london.bar_close(INDEX, D(2026, 11, 26)) == utc(2026, 11, 26, 16, 30)
    # a date the vendor has no bars for, on top of the calendar
    closed = parse_market_hours({"index": {"closed": ["2026-11-24"]}}, "f")
    assert closed.bar_close(INDEX, D(2026, 11, 24)) is None
    assert closed.bar_close(INDEX, D(2026, 11, 25)) == utc(2026, 11, 25, 21)
    # forex without holidays trades Christmas Day; with a holiday of its own, not that day
    assert parse_market_hours({"forex": {"holidays": []}}, "f").is_open(
        FOREX, utc(2026, 12, 25, 12)
    )
    july = parse_market_hours({"forex": {"holidays": ["07-14"]}}, "f")
    assert july.bar_close(FOREX, D(2026, 7, 14)) == utc(2026, 7, 15)  # reopens 17:00 EDT
    assert not july.is_open(FOREX, utc(2026, 7, 14, 12))  # Tuesday July 14: closed
    assert july.is_open(FOREX, utc(2026, 12, 25, 12))
    # mistakes are named
    for document, message in [
        ({"index": {"calendar": "XNYS", "opens": "09:30"}}, r"index: opens is the calendar's"),
        ({"index": {"calendar": "New York!"}}, r"index\.calendar: 'New York!' is not an"),
        ({"index": {"closed": ["Nov 24"]}}, r"index\.closed: 'Nov 24' is not a date"),
        ({"forex": {"holidays": ["25 Dec"]}}, r"forex\.holidays: '25 Dec' is not a month"),
    ]:
        with pytest.raises(MarketHoursError, match=message):
            parse_market_hours(document, "f")
    # a calendar the library does not know fails when it is first used (the library is not
    # imported while the symbols file is read)
    unknown = parse_market_hours({"index": {"calendar": "XMARS"}}, "f")
    with pytest.raises(MarketHoursError, match=r"'XMARS' is not an exchange calendar"):
        unknown.is_open(INDEX, utc(2026, 11, 24, 15))
