"""The quotes' IO manager: a thin adapter between Dagster's outputs and the refresh that stores.

A live quote's output carries a `Fetched`, which `handle_output` hands back to the refresh that
fetched it to write (`Refresh.store`). This module writes no state of its own; it loads the
latest `Quote` for downstream assets. History has its own (`history.py`).
"""

from __future__ import annotations

import dagster as dg

from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.refresh import Fetched
from assets_pipeline.rules.quotes import Quote


class QuoteIOManager(dg.ConfigurableIOManager):
    """Hands each output's `Fetched` to the refresh that stores it; loads the latest `Quote`."""

    database: TradingDatabase

    def handle_output(self, context: dg.OutputContext, obj: Fetched) -> None:
        if not isinstance(obj, Fetched):
            raise TypeError(f"{context.asset_key.to_user_string()} produced {type(obj).__name__}")
        # what the write did: said by the metadata, not by a log line per symbol (each is an
        # event in Dagster's storage, milliseconds apiece over thousands of symbols)
        context.add_output_metadata(obj.store(context.run_id))

    def load_input(self, context: dg.InputContext) -> Quote | None:
        """The symbol's latest stored quote (None before its first)."""
        return self.database.quote_store().latest_quote(context.asset_key.path[-1])
