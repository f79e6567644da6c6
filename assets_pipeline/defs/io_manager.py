"""The quotes' IO manager: a thin adapter between Dagster's outputs and the services that store.

A live quote's output carries a `Fetched`, which `handle_output` hands back to the refresh that
fetched it to write (`Refresh.store`); a past day's output carries `DayBars`, stored the same way.
This module writes no state of its own; it loads either for downstream assets.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from assets_pipeline.backfill import DayBars
from assets_pipeline.config.registry import DEFAULT_HISTORY_BAR_SECONDS
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.persistence.history import read_bars
from assets_pipeline.refresh import Fetched
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote

if TYPE_CHECKING:  # a refresh never needs pandas; history imports it
    import pandas as pd


class QuoteIOManager(dg.ConfigurableIOManager):
    """Hands each output's value to the service that stores it; loads `Quote`s and past bars."""

    database: TradingDatabase

    def handle_output(self, context: dg.OutputContext, obj: Fetched | DayBars) -> None:
        if isinstance(obj, Fetched):  # written by the refresh that fetched it
            metadata = obj.store(dt.date.fromisoformat(context.partition_key), context.run_id)
        elif isinstance(obj, DayBars):  # a past day's bars: history, never the live quote
            metadata = obj.store(context.run_id)
        else:
            raise TypeError(f"{context.asset_key.to_user_string()} produced {type(obj).__name__}")
        # what the write did: said by the metadata, not by a log line per symbol (each is an
        # event in Dagster's storage, milliseconds apiece over thousands of symbols)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Quote | pd.DataFrame | None:
        """Today's partition (or none): the latest quote. Past days: their bars."""
        symbol = context.asset_key.path[-1]
        days = _past_days(context)
        if days:
            metadata = context.upstream_output.definition_metadata or {}
            size = metadata.get("history_bar_seconds", DEFAULT_HISTORY_BAR_SECONDS)
            seconds = int(getattr(size, "value", size))
            return read_bars(self.database.engine(), symbol, days, seconds)
        return self.database.quote_store().latest_quote(symbol)


def _past_days(context: dg.InputContext) -> list[dt.date]:
    if not context.has_asset_partitions:
        return []
    days = [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
    return [] if days == [clock.today()] else days
