"""History: each symbol's past days of bars, apart from its live quote. `backfill.py` runs a
backfill over `fetch.py` (range requests), `store.py` (`trading.price_bars`) and `days.py` (a
day's bars); `defs/history.py` is its Dagster entry point. The live path does not import it."""
