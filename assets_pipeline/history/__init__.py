"""History: each symbol's past days of bars, apart from its live quote.

`backfill.py` runs a backfill (fetch -> store -> each day's own summary) over `fetch.py` (range
requests to Polygon), `store.py` (`trading.price_bars`) and `days.py` (a day's bars). Its Dagster
entry point is `defs/history.py`. The live path (`refresh.py`, `defs/assets.py`,
`defs/io_manager.py`) does not import it.
"""
