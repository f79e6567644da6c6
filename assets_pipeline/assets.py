"""The asset factory: one software-defined asset `quotes/<SYMBOL>` per configured symbol.

All symbols share one subsettable multi-asset, so that materializing many of them in one run is
one step that fetches them together: one `/v3/snapshot` call per 250 tickers in `batch` mode.
Separate per-symbol assets would each be a step, a process and at least one API call. Each symbol
is still its own asset in the UI, with its own group (= tier), history, failures and checks.
"""

import datetime as dt
import re
from collections.abc import Iterator

import dagster as dg

from assets_pipeline.polygon.client import FetchResult
from assets_pipeline.quotes import iso_utc
from assets_pipeline.registry import Registry, SymbolSpec
from assets_pipeline.resources import PolygonResource, TradingDatabase

QUOTES_PREFIX = "quotes"
QUOTE_IO_MANAGER_KEY = "quote_io_manager"


def quote_asset_key(symbol: str) -> dg.AssetKey:
    return dg.AssetKey([QUOTES_PREFIX, symbol])


def output_name(symbol: str) -> str:
    """A Dagster-safe name for a symbol's output (`BRK.B` -> `BRK_2e_B`)."""
    return re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", symbol)


def quotes_partitions(registry: Registry) -> dg.DailyPartitionsDefinition:
    """Daily partitions in UTC; `end_offset=1` makes today, the live day, a partition."""
    return dg.DailyPartitionsDefinition(start_date=registry.start_date, end_offset=1)


def _spec(symbol: SymbolSpec, registry: Registry) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=quote_asset_key(symbol.symbol),
        group_name=symbol.tier.value,
        kinds={"polygon", symbol.asset_type.value},
        owners=list(registry.owners),
        description=(
            f"{symbol.name}: the latest quote for {symbol.symbol} from Polygon"
            f" `{symbol.polygon_ticker}`, stored in `trading.symbols.metadata.last_update` and"
            f" announced on Redis `asset:update:{symbol.symbol}`."
        ),
        metadata={
            "polygon_ticker": symbol.polygon_ticker,
            "asset_type": symbol.asset_type.value,
            "tier": symbol.tier.value,
            "price_precision": symbol.price_precision,
        },
        tags={"tier": symbol.tier.value, "asset_type": symbol.asset_type.value},
    )


def build_quote_assets(registry: Registry) -> dg.AssetsDefinition:
    """The multi-asset holding every configured symbol."""
    by_output = {output_name(s.symbol): s for s in registry}
    outs = {
        name: dg.AssetOut.from_spec(
            _spec(symbol, registry), is_required=False, io_manager_key=QUOTE_IO_MANAGER_KEY
        )
        for name, symbol in by_output.items()
    }
    by_key = {quote_asset_key(s.symbol): s for s in registry}

    @dg.multi_asset(
        name="quotes",
        outs=outs,
        can_subset=True,
        partitions_def=quotes_partitions(registry),
        description="Refresh the selected symbols' quotes from Polygon in as few calls as"
        " the snapshot mode allows.",
    )
    def quotes(
        context: dg.AssetExecutionContext, polygon: PolygonResource, database: TradingDatabase
    ) -> Iterator[dg.Output]:
        today = dt.datetime.now(dt.UTC).date().isoformat()
        partition = context.partition_key
        if partition != today:
            raise dg.Failure(
                description=(
                    f"Partition {partition} is a past day. Quotes are live: only today's"
                    f" partition ({today}, UTC) can be materialized, and history backfill of"
                    " past days is not supported yet. Nothing was fetched or written."
                ),
                allow_retries=False,
            )
        selected = sorted(
            (by_key[key] for key in context.selected_asset_keys),
            key=lambda s: (s.tier.rank, registry.symbols.index(s)),
        )
        client = polygon.client(logger=context.log)
        try:
            result = client.fetch(selected, polygon.mode())  # type: ignore[arg-type]
        finally:
            client.close()

        now = dt.datetime.now(dt.UTC)
        for symbol in selected:
            quote = result.quotes.get(symbol.symbol)
            if quote is None:
                continue
            yield dg.Output(
                quote,
                output_name=output_name(symbol.symbol),
                metadata={
                    "bid": quote.bid,
                    "ask": quote.ask,
                    "spread": quote.spread,
                    "last_price": quote.last_price,
                    "quote_time": iso_utc(quote.quote_time),
                    "quote_age_seconds": round(quote.age(now).total_seconds(), 3),
                    "source": quote.source,
                    "api_calls": result.api_calls,
                    "budget_waits": result.budget_waits,
                    "snapshot_mode": result.mode,
                },
            )

        store = database.quote_store()
        for symbol in selected:
            error = result.errors.get(symbol.symbol)
            if error is not None:
                store.record_failure(symbol, client.redact(str(error)))
        context.log.info(_summary(result, len(selected)))
        if result.errors:
            raise dg.Failure(
                description=(
                    f"{len(result.errors)} of {len(selected)} symbol(s) failed"
                    + (f"; the other {len(result.quotes)} were stored. " if result.quotes else ". ")
                    + "; ".join(
                        f"{symbol}: {client.redact(str(error))}"
                        for symbol, error in sorted(result.errors.items())
                    )
                ),
                metadata={
                    f"error:{symbol}": client.redact(str(error))
                    for symbol, error in result.errors.items()
                },
                allow_retries=False,
            )

    return quotes


def _summary(result: FetchResult, selected: int) -> str:
    failed = ", ".join(sorted(result.errors)) or "none"
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    return (
        f"refreshed {len(result.quotes)} of {selected} symbol(s) in {result.mode} mode with"
        f" {result.api_calls} API call(s) and {result.budget_waits} budget wait(s)"
        f" ({result.budget_wait_seconds:.1f}s); failed: {failed}{notes}"
    )
