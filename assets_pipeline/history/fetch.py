"""Past days' bars from Polygon: each ticker's whole range in one range request of up to
`RANGE_LIMIT` bars, following `next_url`; symbols sharing a ticker share it. Its calls are a
non-critical caller's, so they only use the budget the critical reserve leaves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.history.store import COLUMNS, empty_bars
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.polygon.errors import MalformedResponse, PolygonError
from assets_pipeline.polygon.parsing import Bar, parse_aggs

if TYPE_CHECKING:  # pandas is imported where history is made: a refresh never needs it
    import pandas as pd

SOURCE_RANGE = "polygon:v2-aggs-range"
#: Bars a range call returns at most (the API's own cap): a year of 5-minute bars is 2 calls.
RANGE_LIMIT = 50_000


def fetch_history(
    client: PolygonClient,
    specs: Sequence[SymbolSpec],
    days: Sequence[dt.date],
    bar_seconds: int,
) -> Iterator[tuple[SymbolSpec, pd.DataFrame | Exception]]:
    """Each symbol's bars over `days` as a DataFrame (`store.COLUMNS`), or the error that
    stopped it; symbols sharing a ticker share its one request."""
    first, last = min(days), max(days)
    fetched: dict[str, list[Bar] | Exception] = {}
    try:
        for spec in specs:
            if spec.polygon_ticker not in fetched:
                fetched[spec.polygon_ticker] = _bars(
                    client, spec.polygon_ticker, first, last, bar_seconds
                )
            answer = fetched[spec.polygon_ticker]
            if isinstance(answer, Exception):
                yield spec, answer
            else:
                yield spec, bars_frame(spec.symbol, answer, bar_seconds)
    finally:
        client.close()


def _bars(
    client: PolygonClient, ticker: str, first: dt.date, last: dt.date, bar_seconds: int
) -> list[Bar] | Exception:
    try:
        return history_bars(client, ticker, first, last, bar_seconds)
    except (PolygonError, BudgetError) as exc:
        return exc


def history_bars(
    client: PolygonClient, ticker: str, first: dt.date, last: dt.date, bar_seconds: int
) -> list[Bar]:
    """Every `bar_seconds` bar of `ticker` from `first` to `last` (UTC days, both included), in
    as few calls as the API allows: `RANGE_LIMIT` bars a call, following `next_url` for at most
    `client.max_pages` pages, each on this ticker's range of this bar size. A loop, a page too
    many or a `next_url` elsewhere is a `MalformedResponse` for this ticker."""
    multiplier, timespan = _timespan(bar_seconds)
    endpoint = f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/"
    params = {"adjusted": "true", "sort": "asc", "limit": str(RANGE_LIMIT)}
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    bars: list[Bar] = []
    pages = client.pages(
        f"{endpoint}{first}/{last}",
        params,
        parse_aggs,
        max_pages=client.max_pages,
        same_endpoint=lambda path: path.startswith(endpoint),
        ticker=ticker,
    )
    try:
        for page in pages:
            bars += [bar for bar in page if start <= bar.start < end]
    except MalformedResponse as exc:
        exc.ticker = ticker
        raise
    return bars


def _timespan(bar_seconds: int) -> tuple[int, str]:
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if bar_seconds % unit == 0:
            return bar_seconds // unit, name
    raise ValueError(f"a bar of {bar_seconds} s is not whole minutes")


def bars_frame(symbol: str, bars: Sequence[Bar], bar_seconds: int) -> pd.DataFrame:
    """One row per bar, oldest first."""
    if not bars:
        return empty_bars()
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "symbol": symbol,
                "bar_start": bar.start,
                "bar_seconds": bar_seconds,
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
                "volume": bar.volume,
                "vwap": bar.vwap,
                "trades": bar.trades,
                "source": SOURCE_RANGE,
            }
            for bar in sorted(bars, key=lambda b: b.start)
        ],
        columns=COLUMNS,
    )
