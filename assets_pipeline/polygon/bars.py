"""Quotes for a plan without snapshots: the newest bars the plan serves.

The free (Basic) plans include no snapshots at all, only end-of-day aggregates. For the markets
such a plan refuses, a refresh takes the newest day bar instead, in as few calls as the API
allows: grouped daily, one call per market for every pair of it (forex, crypto), and the
previous-day bar of each ticker grouped daily cannot give (an index, a pair missing from the
day). Such a quote is labelled by its `source`, its time is when the bar closed, and its bid, ask
and spread stay null: nothing pretends it is live, and the `quote_age` check says how old it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from assets_pipeline.config.registry import AssetType
from assets_pipeline.persistence.budget import BudgetError
from assets_pipeline.polygon.errors import PolygonError, TickerNotFound
from assets_pipeline.polygon.parsing import (
    SOURCE_GROUPED,
    SOURCE_PREV,
    Bar,
    bar_quote,
    parse_aggs,
    parse_grouped,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote

if TYPE_CHECKING:
    from assets_pipeline.polygon.client import PolygonClient

#: Grouped daily covers these markets; an index is asked for on its own.
GROUPED_MARKETS = {AssetType.FOREX: "fx", AssetType.CRYPTO: "crypto"}

Answer = Quote | Exception


def latest_bar_quotes(client: PolygonClient, tickers: Mapping[str, AssetType]) -> dict[str, Answer]:
    """Each ticker's newest day bar as a quote, or the error that stopped it."""
    now = clock.utcnow()
    answers: dict[str, Answer] = {}
    for asset_type, market in GROUPED_MARKETS.items():
        wanted = [t for t, kind in tickers.items() if kind is asset_type]
        if wanted:
            answers.update(_grouped(client, market, _last_closed_day(asset_type, now), wanted))
    for ticker in tickers:
        if ticker not in answers or isinstance(answers[ticker], TickerNotFound):
            answers[ticker] = _previous_day(client, ticker, now)
    return answers


def _last_closed_day(asset_type: AssetType, now: dt.datetime) -> dt.date:
    """The newest whole UTC day an end-of-day plan serves: yesterday; for forex, whose week
    ends on Friday, Friday when yesterday was a Saturday."""
    day = now.date() - dt.timedelta(days=1)
    if asset_type is AssetType.FOREX and day.weekday() == 5:
        day -= dt.timedelta(days=1)
    return day


def _grouped(
    client: PolygonClient, market: str, day: dt.date, wanted: list[str]
) -> dict[str, Answer]:
    """One call for the whole market's day; a ticker it lacks is left for `_previous_day`."""
    path = f"/v2/aggs/grouped/locale/global/market/{market}/{day.isoformat()}"
    try:
        bars = parse_grouped(client.get_json(path, {"adjusted": "true"}))
    except (PolygonError, BudgetError):
        return {}  # a timeframe the plan refuses, a broken page: ask each ticker instead
    now = clock.utcnow()
    return {t: bar_quote(bars[t], SOURCE_GROUPED, now) for t in wanted if t in bars}


def _previous_day(client: PolygonClient, ticker: str, now: dt.datetime) -> Answer:
    try:
        bars, _ = parse_aggs(client.get_json(f"/v2/aggs/ticker/{ticker}/prev", None, ticker))
    except (PolygonError, BudgetError) as exc:
        return exc
    if not bars:
        return TickerNotFound(f"Polygon has no recent day bar for {ticker}", ticker=ticker)
    return bar_quote(max(bars, key=lambda bar: bar.start), SOURCE_PREV, now)


#: Bars a range call returns at most (the API's own cap): a year of 5-minute bars is 2 calls.
RANGE_LIMIT = 50_000


def history_bars(
    client: PolygonClient, ticker: str, first: dt.date, last: dt.date, bar_seconds: int
) -> list[Bar]:
    """Every `bar_seconds` bar of `ticker` from `first` to `last` (UTC days, both included), in
    as few calls as the API allows: `RANGE_LIMIT` bars a call, following `next_url`."""
    multiplier, timespan = _timespan(bar_seconds)
    path: str | None = f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{first}/{last}"
    params: dict[str, str] | None = {
        "adjusted": "true",
        "sort": "asc",
        "limit": str(RANGE_LIMIT),
    }
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    bars: list[Bar] = []
    while path:
        page, path = parse_aggs(client.get_json(path, params, ticker))
        params = None
        bars += [bar for bar in page if start <= bar.start < end]
    return bars


def _timespan(bar_seconds: int) -> tuple[int, str]:
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if bar_seconds % unit == 0:
            return bar_seconds // unit, name
    raise ValueError(f"a bar of {bar_seconds} s is not whole minutes")
