"""Quotes for a plan without snapshots: the newest day bar of each ticker, in the fewest calls
(grouped daily per market, `prev` for the rest). A bar's price is as of its session's close from
the day asked for and the market's calendar, never the fetch time or the bar's `t`; a bar dated
outside that day or after the newest closed session is refused (docs/plans.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import AssetType
from assets_pipeline.http.errors import MalformedResponse, PolygonError, TickerNotFound
from assets_pipeline.polygon.parsing import (
    SOURCE_GROUPED,
    SOURCE_PREV,
    Bar,
    bar_quote,
    parse_aggs,
    parse_grouped,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.end_of_day import DEFAULT_PUBLICATION_DELAY
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quotes import Quote, QuoteRejected

if TYPE_CHECKING:
    from assets_pipeline.polygon.client import PolygonClient

#: Grouped daily covers these markets; an index is asked for on its own.
GROUPED_MARKETS = {AssetType.FOREX: "fx", AssetType.CRYPTO: "crypto"}

Answer = Quote | Exception


def latest_bar_quotes(
    client: PolygonClient,
    tickers: Mapping[str, AssetType],
    hours: MarketHours | None = None,
    delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY,
) -> dict[str, Answer]:
    """Each ticker's newest published day bar as a quote, or the error that stopped it."""
    hours = hours or MarketHours()
    now = clock.utcnow()
    answers: dict[str, Answer] = {}
    for asset_type, market in GROUPED_MARKETS.items():
        wanted = [t for t, kind in tickers.items() if kind is asset_type]
        day = hours.last_bar_day(asset_type, now, delay)
        if wanted and day is not None:
            close = hours.bar_close(asset_type, day)
            assert close is not None  # last_bar_day only names days with a session
            answers.update(_grouped(client, market, day, close, wanted))
    for ticker, kind in tickers.items():
        if ticker not in answers or isinstance(answers[ticker], TickerNotFound):
            answers[ticker] = _previous_day(client, ticker, kind, hours, now)
    return answers


def _grouped(
    client: PolygonClient, market: str, day: dt.date, close: dt.datetime, wanted: list[str]
) -> dict[str, Answer]:
    """One call for the whole market's day; a ticker it lacks, or whose bar is dated another
    day, is left for `_previous_day`."""
    path = f"/v2/aggs/grouped/locale/global/market/{market}/{day.isoformat()}"
    try:
        bars = parse_grouped(client.get_json(path, {"adjusted": "true"}))
    except (PolygonError, BudgetError):
        return {}  # a timeframe the plan refuses, a broken page: ask each ticker instead
    return {
        t: bar_quote(bars[t], SOURCE_GROUPED, close)
        for t in wanted
        if t in bars and bars[t].start.astimezone(dt.UTC).date() == day
    }


def _previous_day(
    client: PolygonClient, ticker: str, kind: AssetType, hours: MarketHours, now: dt.datetime
) -> Answer:
    try:
        bars, _ = parse_aggs(client.get_json(f"/v2/aggs/ticker/{ticker}/prev", None, ticker))
    except (PolygonError, BudgetError, QuoteRejected) as exc:  # a bad bar is this ticker's error
        return exc
    if not bars:
        return TickerNotFound(f"Polygon has no recent day bar for {ticker}", ticker=ticker)
    others = sorted({b.ticker for b in bars} - {ticker, ""})
    if others:
        return MalformedResponse(
            f"asked for {ticker}'s previous day, Polygon answered {', '.join(others)}",
            ticker=ticker,
        )
    bar = max(bars, key=lambda bar: bar.start)
    day = bar_day(bar, kind, hours)
    close = hours.bar_close(kind, day)
    if close is None or close > now:
        return MalformedResponse(
            f"{ticker}: the previous-day bar is dated {day.isoformat()}, which is not a closed"
            f" session of the {kind.value} market",
            ticker=ticker,
        )
    return bar_quote(bar, SOURCE_PREV, close)


def bar_day(bar: Bar, kind: AssetType, hours: MarketHours) -> dt.date:
    """The day a day bar covers: its `t`'s date in UTC for forex and crypto (Polygon's day
    aggregates are UTC days), in the exchange's time zone for an index (a stock's `prev` puts
    `t` at the US close)."""
    zone = ZoneInfo(hours.index.timezone) if kind is AssetType.INDEX else dt.UTC
    return bar.start.astimezone(zone).date()
