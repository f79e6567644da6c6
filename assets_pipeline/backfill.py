"""History: a past day of `quotes/<SYMBOL>` holds that day's bars.

A backfill of many days is one run (the asset's `BackfillPolicy.single_run()`) and a handful of
calls: each symbol's whole range in one range request of up to 50,000 bars, following
`next_url`, instead of a run and a call per day. Its calls are a non-critical caller's, so they
only use the budget the critical reserve leaves. History is written to `trading.price_bars`
only: never the live quote, its sync status or its events. A day without trading (a forex
weekend, a holiday) is a success with no bars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.persistence.history import COLUMNS, empty_bars, write_bars
from assets_pipeline.polygon.bars import history_bars
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.polygon.errors import PolygonError
from assets_pipeline.polygon.parsing import Bar

if TYPE_CHECKING:  # pandas is imported where history is made: a refresh never needs it
    import pandas as pd
    import sqlalchemy as sa

SOURCE_RANGE = "polygon:v2-aggs-range"


@dataclass(frozen=True)
class DayBars:
    """A symbol's bars over a backfill's days: the value its output carries. The IO manager hands
    it back here (`store`), which writes them to `trading.price_bars`."""

    bars: pd.DataFrame
    engine: sa.Engine

    def store(self, run_id: str | None) -> dict[str, Any]:
        return {"bars_written": write_bars(self.engine, self.bars, run_id=run_id)}


def fill_history(
    client: PolygonClient,
    specs: Sequence[SymbolSpec],
    days: Sequence[dt.date],
    bar_seconds: int,
) -> Iterator[tuple[SymbolSpec, pd.DataFrame | Exception]]:
    """Each symbol's bars over `days` as a DataFrame (`persistence.history.COLUMNS`), or the error
    that stopped it; symbols sharing a ticker share its one request."""
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


def bars_frame(symbol: str, bars: Sequence[Bar], bar_seconds: int) -> pd.DataFrame:
    """The partition's value: one row per bar, oldest first."""
    if not bars:
        return empty_bars()
    import pandas as pd

    frame = pd.DataFrame(
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
    return frame
