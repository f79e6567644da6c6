"""The live quotes: one unpartitioned asset `quotes/<SYMBOL>` per symbol, in subsettable
multi-assets of up to 250 with their checks, so a run is one step and one call per 250 symbols
(docs/design/steps-of-250.md). Each materialization is the quote now; past days' bars are
another family (docs/design/live-and-history.md)."""

import datetime as dt
from collections.abc import Iterator, Set

import dagster as dg

from assets_pipeline.budget.fairness import CRITICAL_CALLER
from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.defs.checks import (
    check_specs,
    judge_freshness,
    judge_providers,
    quality_result,
)
from assets_pipeline.defs.keys import (
    QUALITY_CHECK,
    QUOTE_IO_MANAGER_KEY,
    QUOTES_PREFIX,
    output_name,
    quote_asset_key,
    step_name,
)
from assets_pipeline.defs.resources import PolygonResource, RedisResource, TradingDatabase
from assets_pipeline.defs.runs import CLAIM_TAG, reconcile_claims
from assets_pipeline.defs.sources import ProvidersResource
from assets_pipeline.persistence.batches import BatchResult
from assets_pipeline.persistence.provider_state import provider_syncs, recently_failed
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.refresh import Fetched, Refresh, mark_stale, plan_refresh
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.plans import LearntPlan, Plan
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, Timeframe, iso_utc
from assets_pipeline.rules.run_kinds import BATCH_TAG, CRITICAL, QUEUE, refresh_seconds, run_kind
from assets_pipeline.sourcing import Source, Sourcing, polygon_live


def _spec(symbol: SymbolSpec, registry: Registry) -> dg.AssetSpec:
    chain = registry.chain(symbol)
    return dg.AssetSpec(
        key=quote_asset_key(symbol.symbol),
        group_name=symbol.tier.value,
        # two badges, its market and its first provider: more crowd its name out of the catalog
        kinds={chain[0], symbol.asset_type.value},
        owners=list(registry.owners),
        description=(
            f"{symbol.name}: the latest quote for {symbol.symbol} from the first of its"
            f" providers ({', '.join(chain)}) that can serve it now (Polygon"
            f" `{symbol.polygon_ticker}`), stored in `trading.symbols.metadata.last_update` and"
            f" announced on Redis `asset:update:{symbol.symbol}`."
        ),
        metadata={
            **symbol.as_metadata(),
            "providers": ", ".join(chain),
            "freshness_allowance": registry.allowance(symbol.tier),
            "cadence": registry.cadence(symbol.tier),
            "budget_need": registry.feasibility.explain() if registry.feasibility else "",
        },
        tags={"tier": symbol.tier.value, "asset_type": symbol.asset_type.value},
    ).with_io_manager_key(QUOTE_IO_MANAGER_KEY)


def build_quote_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """The multi-assets holding every configured symbol and every check: one per
    `registry.steps` group (`quotes`, then `quotes_2`, ...), a single one up to 250 symbols."""
    return [
        _quotes_multi_asset(registry, step_name(QUOTES_PREFIX, n), group)
        for n, group in enumerate(registry.steps)
    ]


def _quotes_multi_asset(
    registry: Registry, name: str, symbols: list[SymbolSpec]
) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=name,
        specs=[_spec(s, registry) for s in symbols],
        can_subset=True,
        check_specs=check_specs(registry, symbols),
        description="Refresh the selected symbols' quotes from Polygon in as few calls as the"
        " snapshot mode allows. Checks alone: judge freshness from the database.",
    )
    def quotes(
        context: dg.AssetExecutionContext,
        polygon: PolygonResource,
        database: TradingDatabase,
        redis: RedisResource,
        providers: ProvidersResource,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        checks = context.selected_asset_check_keys
        if not context.selected_asset_keys:  # the freshness checks alone
            yield from _freshness(context, registry, database, checks)
            return
        refresh = _start_refresh(context, registry, polygon, database, redis, providers)
        for spec, quote, previous in refresh.quotes():
            # stored as Dagster hands the output to the IO manager, by this refresh
            yield _output(spec, quote, refresh, registry)
            if dg.AssetCheckKey(quote_asset_key(spec.symbol), QUALITY_CHECK) in checks:
                yield quality_result(spec, quote, previous, registry)
        batch = refresh.settle()  # the step's events announced here, once
        # after the writes: a symbol just stored is judged on its new sync
        yield from _freshness(context, registry, database, checks)
        _report(context, batch, refresh)

    return quotes


def _freshness(
    context: dg.AssetExecutionContext,
    registry: Registry,
    database: TradingDatabase,
    selected: Set[dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    """The selected freshness checks, judged from one read of the database; their verdicts are
    then recorded by the refresh service (`mark_stale`), the one writer of a symbol's state."""
    verdicts = judge_freshness(registry, database, selected)
    if verdicts.judged:
        mark_stale(database.quote_store(), verdicts.judged, verdicts.stale, context.log)
    yield from verdicts.results
    yield from judge_providers(registry, database, selected)


def _start_refresh(
    context: dg.AssetExecutionContext,
    registry: Registry,
    polygon: PolygonResource,
    database: TradingDatabase,
    redis: RedisResource,
    providers: ProvidersResource,
) -> Refresh:
    tags = context.run.tags
    kind = run_kind(tags)
    selected = [key.path[-1] for key in context.selected_asset_keys]
    queue = RefreshQueue(database.engine(), registry.queue)
    if kind == QUEUE and CLAIM_TAG in tags:
        selected = _claim(context, registry, queue, selected)
    plan = plan_refresh(
        registry,
        selected,
        kind,
        batch_id=tags.get(BATCH_TAG) or _step_batch_id(context),
        run_id=context.run.run_id,
        # read together before any write (one query, not one per symbol)
        stored=database.quote_store().latest_quotes(selected),
    )
    learnt = polygon.learnt()
    secondary = polygon.secondary_caller(registry, database, learnt) if kind != CRITICAL else None
    try:
        client = polygon.client(
            logger=context.log,
            caller=secondary or CRITICAL_CALLER,
            max_retries=0 if kind == QUEUE else None,
            hours=registry.market_hours,
            publication_delay=registry.publication_delay,
        )
    except ValueError as exc:
        raise dg.Failure(f"cannot refresh {kind} symbols: {exc}", allow_retries=False) from exc
    client.stop_by(refresh_seconds(tags))
    reserve = registry.critical_reserve(learnt.mode, learnt.bars)
    plan_metadata = {
        "plan_learnt": learnt.describe(),
        "budget_need": f"a critical refresh costs {reserve} call(s) on this plan, kept free for it",
    }
    store = database.quote_store(redis.namespace)  # its events go to this deployment's channels
    mode = polygon.mode()
    sourcing = _sourcing(context, registry, plan.symbols, client, learnt, database, providers)
    return Refresh(plan, sourcing, store, queue, mode, context.log, plan_metadata, redis.client())


def _sourcing(
    context: dg.AssetExecutionContext,
    registry: Registry,
    specs: list[SymbolSpec],
    client: PolygonClient,
    learnt: LearntPlan,
    database: TradingDatabase,
    providers: ProvidersResource,
) -> Sourcing:
    """The refresh's providers: Polygon (live on the markets its plan serves snapshots of) and
    the others configured that the symbols list, with each symbol's recent failures."""
    kind = run_kind(context.run.tags)
    others = providers.sources(registry, specs, context.log, critical=kind == CRITICAL)
    for source in others:  # the run's one deadline bounds every provider's requests
        stop_by = getattr(source.provider, "stop_by", None)
        if stop_by is not None:
            stop_by(refresh_seconds(context.run.tags))
    free = Plan.parse(learnt.plan, "the learnt plan") is Plan.FREE
    polygon = Source(ProviderName.POLYGON.value, client.budget, polygon_live(free, learnt.bars))
    held = {}
    if others:
        window = dt.timedelta(seconds=registry.fallback.return_after_seconds)
        syncs = provider_syncs(database.engine(), (s.symbol for s in specs))
        held = recently_failed(syncs, clock.utcnow() - window)
    return Sourcing(client, others, polygon, registry, held, context.log)


def _claim(
    context: dg.AssetExecutionContext, registry: Registry, queue: RefreshQueue, selected: list[str]
) -> list[str]:
    """A queue run's batch, claimed as the run starts: first the claims of runs that ended
    without settling them are settled, then the selected symbols still waiting (and whose market
    trades) are taken for this run's batch. Fewer than selected when another process took some:
    only those claimed are refreshed."""
    now = clock.utcnow()
    settled = reconcile_claims(context.instance, queue, now)
    trading = {s.symbol for s in registry.trading((registry.get(s) for s in selected), now)}
    claimed = queue.claim(
        len(selected),
        1,
        context.run.tags[BATCH_TAG],
        eligible=trading,
        step_of=registry.step_of,
    )
    names = [item.symbol for item in claimed]
    left = [s for s in selected if s not in names]
    context.log.info(
        f"claimed {len(names)} of {len(selected)} selected symbol(s)"
        + (
            f"; not waiting any more (or market closed), not refreshed: {', '.join(left)}"
            if left
            else ""
        )
        + settled.note().replace("to settle first", "settled")
    )
    return names


def _step_batch_id(context: dg.AssetExecutionContext) -> str:
    """The run's id; a run over more than one step's symbols (over 250) records one batch per
    step, `<run id>/quotes_2` and so on after the first."""
    step = context.op_execution_context.op.name
    return context.run.run_id if step == "quotes" else f"{context.run.run_id}/{step}"


def _report(context: dg.AssetExecutionContext, batch: BatchResult, refresh: Refresh) -> None:
    """The batch result in one run tag and one log line; a failure names each failed symbol."""
    context.instance.add_run_tags(context.run.run_id, batch.tags())
    context.log.info(batch.log_line() + refresh.notes())
    missing = dict(batch.failed)
    if batch.kind == CRITICAL:  # a critical refresh that could not get a slot did not happen
        missing.update({s: "no budget slot before the deadline" for s in batch.deferred})
    if not missing:
        return
    total = len(refresh.plan.symbols)
    raise dg.Failure(
        description=(
            f"{len(missing)} of {total} symbol(s) failed"
            + (f"; the other {len(batch.updated)} were stored. " if batch.updated else ". ")
            + "; ".join(f"{symbol}: {error}" for symbol, error in sorted(missing.items()))
        ),
        metadata={
            "batch": dg.MetadataValue.json(batch.as_dict()),
            **{f"error:{symbol}": error for symbol, error in missing.items()},
        },
        allow_retries=False,
    )


def _output(symbol: SymbolSpec, quote: Quote, refresh: Refresh, registry: Registry) -> dg.Output:
    result, plan, now = refresh.result, refresh.plan, clock.utcnow()
    return dg.Output(
        Fetched(refresh, symbol, quote),
        output_name=output_name(symbol.symbol),
        metadata={
            "bid": quote.shown(quote.bid),
            "ask": quote.shown(quote.ask),
            "spread": quote.shown(quote.spread),
            "last_price": quote.shown(quote.last_price),
            "daily_high": quote.shown(quote.day_high),
            "daily_low": quote.shown(quote.day_low),
            "data_time": iso_utc(quote.data_time),
            "fetched_at": iso_utc(quote.fetched_at) if quote.fetched_at else None,
            "data_age_seconds": round(quote.age(now).total_seconds(), 3),
            "timeframe": quote.timeframe.value,
            "plan": str(quote.plan) if quote.plan else quote.plan,
            "source": quote.source,
            "provider": quote.provider,
            "passed_over": _passed_over(refresh, symbol, quote),
            "freshness": (
                registry.newest_bar(symbol, now).describe()
                if quote.timeframe is Timeframe.END_OF_DAY
                else registry.allowance(symbol.tier)
            ),
            **refresh.plan_metadata,
            "api_calls": result.api_calls,
            "budget_waits": result.budget_waits,
            "snapshot_mode": str(result.mode),
            "batch_id": plan.batch_id,
            "batch_kind": str(plan.kind),
            "batch_start": iso_utc(refresh.started_at),
            "batch_symbols": len(plan.symbols),
        },
    )


def _passed_over(refresh: Refresh, spec: SymbolSpec, quote: Quote) -> str:
    """The providers asked before the one that served the quote, and why each did not."""
    fell_back = getattr(refresh.client, "fell_back", None)
    tried = fell_back(spec.symbol) if fell_back else []
    text = "; ".join(f"{name}: {why}" for name, why in tried if name != quote.provider)
    return clip(refresh.client.redact(text), 1000)
