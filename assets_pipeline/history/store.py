"""A symbol's history: the bars of past days, in `trading.price_bars`.

Written by history backfills, idempotently: a bar is keyed by its symbol, start and size (its
`provider` says who served it), so backfilling a day again rewrites the same rows. History never
touches the live quote in `trading.symbols`, its sync status or its events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from assets_pipeline.persistence.database import dialect_insert
from assets_pipeline.persistence.quote_store import as_utc
from assets_pipeline.persistence.schema import price_bars
from assets_pipeline.rules import clock

if TYPE_CHECKING:  # imported where bars are made: a refresh never needs pandas
    import pandas as pd

COLUMNS = [
    "symbol",
    "bar_start",
    "bar_seconds",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "source",
    "provider",
]
#: What a rewrite of a bar changes: everything but its key (symbol, start, size); a provider's
#: bar replaces another's (one series per symbol: revision 0003 says why).
_UPDATABLE = (*COLUMNS[3:], "run_id", "fetched_at")


def empty_bars() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype="object") for name in COLUMNS})


def write_bars(engine: sa.Engine, bars: pd.DataFrame, run_id: str | None = None) -> int:
    """Upsert the bars (one transaction); return how many rows were written."""
    if bars.empty:
        return 0
    now = clock.utcnow()
    rows = [
        {
            **{k: _plain(v) for k, v in row.items() if k in COLUMNS},
            "run_id": run_id,
            "fetched_at": now,
        }
        for row in bars.to_dict("records")
    ]
    with engine.begin() as conn:
        insert = dialect_insert(conn, price_bars)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["symbol", "bar_start", "bar_seconds"],
                set_={name: insert.excluded[name] for name in _UPDATABLE},
            ),
            rows,
        )
    return len(rows)


def read_bars(
    engine: sa.Engine, symbol: str, days: Sequence[dt.date], bar_seconds: int
) -> pd.DataFrame:
    """The stored bars of `symbol` on `days` (UTC), oldest first."""
    if not days:
        return empty_bars()
    start = dt.datetime.combine(min(days), dt.time(), dt.UTC)
    end = dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time(), dt.UTC)
    query = (
        sa.select(*(price_bars.c[name] for name in COLUMNS))
        .where(
            price_bars.c.symbol == symbol,
            price_bars.c.bar_seconds == bar_seconds,
            price_bars.c.bar_start >= start,
            price_bars.c.bar_start < end,
        )
        .order_by(price_bars.c.bar_start)
    )
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS) if rows else empty_bars()
    if rows:
        frame["bar_start"] = [as_utc(v) for v in frame["bar_start"]]
    return frame


def _plain(value: object) -> object:
    """pandas' scalars and NaN as what the database driver takes."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
