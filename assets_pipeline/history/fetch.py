"""Past days' bars from Polygon: each ticker's whole range in one range request
(`polygon/ranges.py`), following `next_url`; symbols sharing a ticker share it. Its calls are a
non-critical caller's, so they only use the budget the critical reserve leaves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.history.store import COLUMNS, empty_bars
from assets_pipeline.http.errors import PolygonError
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.polygon.parsing import Bar
from assets_pipeline.polygon.ranges import range_bars
from assets_pipeline.rules.providers import ProviderName

if TYPE_CHECKING:  # pandas is imported where history is made: a refresh never needs it
    import pandas as pd

SOURCE_RANGE = "polygon:v2-aggs-range"


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
        return range_bars(client, ticker, first, last, bar_seconds)
    except (PolygonError, BudgetError) as exc:
        return exc


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
                "provider": ProviderName.POLYGON.value,
            }
            for bar in sorted(bars, key=lambda b: b.start)
        ],
        columns=COLUMNS,
    )
