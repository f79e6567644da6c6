"""A ticker's bars over past days from Polygon's range endpoint (`/v2/aggs/ticker/.../range`):
as few calls as the API allows, `RANGE_LIMIT` bars a call, following `next_url` on the same
ticker's range only. History backfills and the Polygon provider's day bars both ask through it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from assets_pipeline.http.errors import MalformedResponse
from assets_pipeline.polygon.parsing import Bar, parse_aggs

if TYPE_CHECKING:
    from assets_pipeline.polygon.client import PolygonClient

#: Bars a range call returns at most (the API's own cap): a year of 5-minute bars is 2 calls.
RANGE_LIMIT = 50_000


def range_bars(
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
