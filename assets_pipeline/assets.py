"""The asset factory: one software-defined asset `quotes/<SYMBOL>` per configured symbol.

All symbols share one subsettable multi-asset, so that materializing many of them in one run is
one step that fetches them together: one `/v3/snapshot` call per 250 tickers in `batch` mode.
Separate per-symbol assets would each be a step, a process and at least one API call. Each symbol
is still its own asset in the UI, with its own group (= tier), history, failures and checks.
"""

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from assets_pipeline import clock
from assets_pipeline.batches import (
    BATCH_TAG,
    CRITICAL,
    KIND_TAG,
    MANUAL,
    QUEUE,
    BatchResult,
    record_batch,
)
from assets_pipeline.budget import CRITICAL_CALLER
from assets_pipeline.fairness import direct_specs, secondary_caller
from assets_pipeline.polygon.client import FetchResult
from assets_pipeline.quality import assess_quality
from assets_pipeline.quotes import Quote, iso_utc
from assets_pipeline.refresh_queue import RefreshQueue
from assets_pipeline.registry import AssetType, Registry, SymbolSpec, Tier
from assets_pipeline.resources import PolygonResource, TradingDatabase

QUOTES_PREFIX = "quotes"
QUOTE_IO_MANAGER_KEY = "quote_io_manager"
QUALITY_CHECK = "quote_quality"


def quote_asset_key(symbol: str) -> dg.AssetKey:
    return dg.AssetKey([QUOTES_PREFIX, symbol])


def output_name(symbol: str) -> str:
    """A Dagster-safe name for a symbol's output (`BRK.B` -> `BRK_2e_B`)."""
    return re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", symbol)


def quotes_partitions(registry: Registry) -> dg.DailyPartitionsDefinition:
    """Daily partitions in UTC; `end_offset=1` makes today, the live day, a partition."""
    return dg.DailyPartitionsDefinition(start_date=registry.start_date, end_offset=1)


def spec_metadata(symbol: SymbolSpec) -> dict[str, str | int]:
    """The symbol's configuration on its asset: shown in the UI, read back by the IO manager."""
    return {
        "polygon_ticker": symbol.polygon_ticker,
        "asset_type": symbol.asset_type.value,
        "tier": symbol.tier.value,
        "name": symbol.name,
        "base_asset": symbol.base_asset,
        "quote_asset": symbol.quote_asset,
        "price_precision": symbol.price_precision,
    }


def spec_from_metadata(symbol: str, metadata: Mapping[str, Any]) -> SymbolSpec:
    """The inverse of `spec_metadata`."""

    def raw(key: str) -> Any:
        value = metadata[key]
        return getattr(value, "value", value)

    return SymbolSpec(
        symbol=symbol,
        polygon_ticker=raw("polygon_ticker"),
        asset_type=AssetType(raw("asset_type")),
        tier=Tier(raw("tier")),
        name=raw("name"),
        base_asset=raw("base_asset"),
        quote_asset=raw("quote_asset"),
        price_precision=int(raw("price_precision")),
    )


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
        metadata=spec_metadata(symbol),
        tags={"tier": symbol.tier.value, "asset_type": symbol.asset_type.value},
    )


def quality_check_specs(registry: Registry) -> list[dg.AssetCheckSpec]:
    """Checked by the refresh itself, for each quote it is about to store."""
    policy = registry.quality
    return [
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset=quote_asset_key(spec.symbol),
            description=(
                f"Soft rules for each new quote: spread within {policy.max_spread_bps:g} bp, a"
                f" jump from the previous quote within {policy.max_jump_pct:g}%, a quote time"
                " newer than the stored one. Warns with the numbers; hard violations were"
                " already rejected before the write."
            ),
        )
        for spec in registry
    ]


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
    direct = set(direct_specs(registry))

    @dg.multi_asset(
        name="quotes",
        outs=outs,
        can_subset=True,
        partitions_def=quotes_partitions(registry),
        check_specs=quality_check_specs(registry),
        description="Refresh the selected symbols' quotes from Polygon in as few calls as"
        " the snapshot mode allows.",
    )
    def quotes(
        context: dg.AssetExecutionContext, polygon: PolygonResource, database: TradingDatabase
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        started = dt.datetime.now(dt.UTC)
        today = started.date().isoformat()
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
        tags = context.run.tags
        kind = tags.get(KIND_TAG) or (CRITICAL if all(s in direct for s in selected) else MANUAL)
        if kind in (CRITICAL, QUEUE):
            # Cadence runs spend nothing on closed markets; a person asking gets what they ask.
            at = clock.utcnow()
            closed = [s for s in selected if not registry.market_hours.is_open(s.asset_type, at)]
            if closed:
                context.log.info(
                    f"market closed, not fetched: {', '.join(s.symbol for s in closed)}"
                )
                RefreshQueue(database.engine(), registry.queue).release_symbols(
                    [s.symbol for s in closed]
                )
            selected = [s for s in selected if s not in closed]
        batch_id = tags.get(BATCH_TAG) or context.run_id
        mode = polygon.mode()
        caller = CRITICAL_CALLER if kind == CRITICAL else secondary_caller(registry, mode)
        try:
            client = polygon.client(
                logger=context.log,
                caller=caller,
                max_retries=0 if kind == QUEUE else None,
            )
        except ValueError as exc:
            raise dg.Failure(f"cannot refresh {kind} symbols: {exc}", allow_retries=False) from exc
        store = database.quote_store()
        result = FetchResult(mode=mode)
        try:
            # Each symbol is stored as soon as its answer is in.
            for symbol, answer in client.iter_fetch(selected, mode, result):  # type: ignore[arg-type]
                if isinstance(answer, Quote):
                    previous = store.latest_quote(symbol.symbol)
                    yield _output(symbol, answer, result, batch_id, kind, started, len(selected))
                    checked = dg.AssetCheckKey(quote_asset_key(symbol.symbol), QUALITY_CHECK)
                    if checked in context.selected_asset_check_keys:
                        yield _quality(symbol, answer, previous, registry)
        finally:
            client.close()

        queue = RefreshQueue(database.engine(), registry.queue)
        errors = {s: client.redact(str(e)) for s, e in result.errors.items()}
        for symbol in selected:
            error = result.errors.get(symbol.symbol)
            if error is None:
                continue
            store.record_failure(symbol, errors[symbol.symbol])
            item = queue.fail(
                symbol.symbol,
                symbol.tier,
                errors[symbol.symbol],
                retryable=getattr(error, "retryable", True),
            )
            if item is not None:
                context.log.warning(
                    f"{symbol.symbol}: {item.status} in the queue at tier {item.tier.value}"
                    f" after {item.attempts} attempt(s): {errors[symbol.symbol]}"
                )
        queue.complete(result.quotes)
        batch = BatchResult(
            batch_id=batch_id,
            kind=kind,
            run_id=context.run_id,
            started_at=started,
            ended_at=dt.datetime.now(dt.UTC),
            updated=[s.symbol for s in selected if s.symbol in result.quotes],
            failed={s.symbol: errors[s.symbol] for s in selected if s.symbol in errors},
            queue_processed=len(selected) if kind == QUEUE else 0,
            queue_remaining=queue.stats().waiting,
            api_calls=result.api_calls,
            budget_waits=result.budget_waits,
        )
        record_batch(database.engine(), batch)
        context.instance.add_run_tags(context.run_id, batch.tags())
        context.log.info(batch.log_line() + _notes(result))
        if result.errors:
            raise dg.Failure(
                description=(
                    f"{len(result.errors)} of {len(selected)} symbol(s) failed"
                    + (f"; the other {len(result.quotes)} were stored. " if result.quotes else ". ")
                    + "; ".join(f"{symbol}: {error}" for symbol, error in sorted(errors.items()))
                ),
                metadata={
                    "batch": dg.MetadataValue.json(batch.as_dict()),
                    **{f"error:{symbol}": error for symbol, error in errors.items()},
                },
                allow_retries=False,
            )

    return quotes


def _output(
    symbol: SymbolSpec,
    quote: Quote,
    result: FetchResult,
    batch_id: str,
    kind: str,
    started: dt.datetime,
    batch_symbols: int,
) -> dg.Output:
    now = dt.datetime.now(dt.UTC)
    return dg.Output(
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
            "batch_id": batch_id,
            "batch_kind": kind,
            "batch_start": iso_utc(started),
            "batch_symbols": batch_symbols,
        },
    )


def _quality(
    symbol: SymbolSpec, quote: Quote, previous: Quote | None, registry: Registry
) -> dg.AssetCheckResult:
    verdict = assess_quality(quote, previous, registry.quality)
    return dg.AssetCheckResult(
        asset_key=quote_asset_key(symbol.symbol),
        check_name=QUALITY_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**verdict.metadata, "problems": "; ".join(verdict.problems) or "none"},
        description="; ".join(verdict.problems) or None,
    )


def _notes(result: FetchResult) -> str:
    return f" ({'; '.join(result.notes)})" if result.notes else ""
