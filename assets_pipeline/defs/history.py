"""The history assets `history/<SYMBOL>`: past days' bars, daily-partitioned up to yesterday, in
multi-assets of 250 in the group `history`; a backfill is one run that records one
materialization per (symbol, day) with that day's own bars. No checks, and it never writes the
live quote. `history_definitions` is the code location's entry point
(docs/design/live-and-history.md)."""

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from assets_pipeline.config.registry import DEFAULT_HISTORY_BAR_SECONDS, Registry, SymbolSpec
from assets_pipeline.defs.keys import step_name
from assets_pipeline.defs.resources import PolygonResource, TradingDatabase
from assets_pipeline.history.backfill import Backfill
from assets_pipeline.history.store import read_bars

if TYPE_CHECKING:  # a refresh never needs pandas; history imports it
    import pandas as pd

HISTORY_PREFIX = "history"
HISTORY_GROUP = "history"
HISTORY_IO_MANAGER_KEY = "history_io_manager"
#: On a backfill run: its totals, and the symbols whose days it left missing.
TOTALS_TAG = "history/totals"
MISSING_TAG = "history/missing"


def history_asset_key(symbol: str) -> dg.AssetKey:
    """`history/<SYMBOL>`."""
    return dg.AssetKey([HISTORY_PREFIX, symbol])


def history_partitions(registry: Registry) -> dg.DailyPartitionsDefinition:
    """Daily partitions in UTC from the file's `start_date` to yesterday: no partition for
    today, whose bars are not complete."""
    return dg.DailyPartitionsDefinition(start_date=registry.start_date, end_offset=0)


def _spec(symbol: SymbolSpec, registry: Registry) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=history_asset_key(symbol.symbol),
        group_name=HISTORY_GROUP,
        kinds={"polygon", symbol.asset_type.value},
        owners=list(registry.owners),
        description=(
            f"{symbol.name}: {symbol.symbol}'s bars of a past day from Polygon"
            f" `{symbol.polygon_ticker}`, stored in `trading.price_bars`."
        ),
        metadata={"symbol": symbol.symbol, "history_bar_seconds": registry.history_bar_seconds},
        tags={"asset_type": symbol.asset_type.value},
        # each (symbol, day) is recorded on its own by the step, never as one output over the
        # run's range (which would give every day the run's totals)
        skippable=True,
    ).with_io_manager_key(HISTORY_IO_MANAGER_KEY)


def build_history_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """One multi-asset per `registry.steps` group: `history`, then `history_2`, ..."""
    return [
        _history_multi_asset(registry, step_name(HISTORY_PREFIX, n), group)
        for n, group in enumerate(registry.steps)
    ]


def _history_multi_asset(
    registry: Registry, name: str, symbols: list[SymbolSpec]
) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=name,
        specs=[_spec(s, registry) for s in symbols],
        can_subset=True,
        partitions_def=history_partitions(registry),
        # a backfill of many days is one run, and each ticker's range one request
        backfill_policy=dg.BackfillPolicy.single_run(),
        description="Store the selected symbols' bars of the selected past days, one range"
        " request per ticker; each day is recorded with its own bars.",
    )
    def history(
        context: dg.AssetExecutionContext, polygon: PolygonResource, database: TradingDatabase
    ) -> Iterator[dg.AssetMaterialization]:
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]
        specs = registry.by_priority(registry.get(k.path[-1]) for k in context.selected_asset_keys)
        client = polygon.client(
            logger=context.log,
            caller=polygon.secondary_caller(registry, database),
            hours=registry.market_hours,
        )
        bar_seconds = registry.history_bar_seconds
        backfill = Backfill(client, database.engine(), days, bar_seconds, context.run.run_id)
        for symbol_days in backfill.days_of(specs):  # each symbol's days once they are stored
            for day in symbol_days:
                yield dg.AssetMaterialization(
                    asset_key=history_asset_key(day.symbol),
                    partition=day.day.isoformat(),
                    metadata=day.metadata(),
                )
        _report(context, backfill)

    return history


def _report(context: dg.AssetExecutionContext, backfill: Backfill) -> None:
    """The run's totals in one log line and a run tag; the symbols left missing named."""
    tags = {TOTALS_TAG: backfill.totals()[:200]}
    context.log.info(f"history {backfill.totals()}")
    if backfill.failed:
        # Not a run failure: a past day that could not be fetched stays missing (run the
        # backfill's "Missing" again); the live quote is another asset, untouched.
        context.log.warning(
            "history not fetched, left missing: "
            + "; ".join(f"{s}: {e}" for s, e in backfill.failed.items())
        )
        tags[MISSING_TAG] = ",".join(sorted(backfill.failed))[:200]
    context.instance.add_run_tags(context.run.run_id, tags)


class HistoryIOManager(dg.ConfigurableIOManager):
    """Loads a history asset's partitions for downstream assets: their bars, as a DataFrame.
    The history step stores its bars itself and yields no output to hand over."""

    database: TradingDatabase

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        raise TypeError(
            f"{context.asset_key.to_user_string()}: history is stored by its step, not handed"
            f" over as an output ({type(obj).__name__})"
        )

    def load_input(self, context: dg.InputContext) -> "pd.DataFrame":
        """The bars of the partitions asked for (UTC days), oldest first."""
        symbol = context.asset_key.path[-1]
        days = [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
        metadata = context.upstream_output.definition_metadata or {}
        size = metadata.get("history_bar_seconds", DEFAULT_HISTORY_BAR_SECONDS)
        return read_bars(self.database.engine(), symbol, days, int(getattr(size, "value", size)))


def history_definitions(registry: Registry, database: TradingDatabase) -> dg.Definitions:
    """History's own definitions, for the code location to merge: its assets and the IO manager
    that loads them. They use the location's `polygon` and `database` resources."""
    return dg.Definitions(
        assets=build_history_assets(registry),
        resources={HISTORY_IO_MANAGER_KEY: HistoryIOManager(database=database)},
    )
