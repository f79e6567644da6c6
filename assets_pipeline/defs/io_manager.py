"""The IO manager that turns a materialized quote into database rows and a Redis event.

`handle_output` writes the quote in one transaction (see `quote_store.py`), then, after the
commit, publishes what the outbox holds. Redis being down or unset never fails the write: the
event waits in the outbox for the relay.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from assets_pipeline.config.registry import DEFAULT_HISTORY_BAR_SECONDS, SymbolSpec
from assets_pipeline.defs.resources import RedisResource, TradingDatabase
from assets_pipeline.persistence.history import read_bars, write_bars
from assets_pipeline.persistence.outbox import publishing_paused, relay_pending
from assets_pipeline.rules import clock
from assets_pipeline.rules.quotes import Quote, iso_utc

if TYPE_CHECKING:  # a refresh never needs pandas; history imports it
    import pandas as pd


class QuoteIOManager(dg.ConfigurableIOManager):
    """Stores `Quote`s in `trading.symbols` & co. and announces them on `asset:update:{SYMBOL}`."""

    database: TradingDatabase
    redis: RedisResource

    def handle_output(self, context: dg.OutputContext, obj: Quote | pd.DataFrame) -> None:
        if not isinstance(obj, Quote):
            self._store_bars(context, obj)
            return
        # the symbol's configuration travels on its asset definition (see SymbolSpec.as_metadata)
        spec = SymbolSpec.from_metadata(context.asset_key.path[-1], context.definition_metadata)
        store = self.database.quote_store(self.redis.namespace)
        partition_date = dt.date.fromisoformat(context.partition_key)
        outcome = store.write_quote(spec, obj, partition_date, run_id=context.run_id)
        metadata: dict[str, object] = {"written": outcome.written, "write_result": outcome.reason}
        if outcome.stored_data_time is not None:
            metadata["previous_data_time"] = iso_utc(outcome.stored_data_time)
        client = self.redis.client()
        if outcome.written and publishing_paused(client):
            metadata["event_id"] = outcome.event_id
            context.log.info(f"{spec.symbol} stored; Redis was down a moment ago: the relay sends")
        elif outcome.written and client is None:  # no Redis: the event waits in the outbox
            metadata["event_id"] = outcome.event_id
            metadata["events_published"] = 0
        elif outcome.written:
            metadata["event_id"] = outcome.event_id
            relay = relay_pending(store.engine, client)
            metadata["events_published"] = relay.sent
            metadata["events_pending"] = relay.pending
            if relay.error and self.redis.url:
                context.log.warning(
                    f"{spec.symbol} stored; its event waits in the outbox: Redis said {relay.error}"
                )
        # not overwritten: said by `written` and `write_result`, not by a log line per symbol
        # (each is an event in Dagster's storage, milliseconds apiece over thousands of symbols)
        context.add_output_metadata(metadata)

    def _store_bars(self, context: dg.OutputContext, obj: object) -> None:
        """A past day's bars: history, never the live quote (pandas only imported here)."""
        import pandas as pd

        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} produced {type(obj).__name__}")
        written = write_bars(self.database.engine(), obj, run_id=context.run_id)
        context.add_output_metadata({"bars_written": written})

    def load_input(self, context: dg.InputContext) -> Quote | pd.DataFrame | None:
        """Today's partition (or none): the latest quote. Past days: their bars."""
        symbol = context.asset_key.path[-1]
        days = _past_days(context)
        if days:
            metadata = context.upstream_output.definition_metadata or {}
            size = metadata.get("history_bar_seconds", DEFAULT_HISTORY_BAR_SECONDS)
            seconds = int(getattr(size, "value", size))
            return read_bars(self.database.engine(), symbol, days, seconds)
        return self.database.quote_store(self.redis.namespace).latest_quote(symbol)


def _past_days(context: dg.InputContext) -> list[dt.date]:
    if not context.has_asset_partitions:
        return []
    days = [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
    return [] if days == [clock.today()] else days
