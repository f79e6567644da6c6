"""Asset checks: freshness (and the quote's own age) on a cadence, quality on every write.

The freshness checks run in their own job (`check_freshness`) on a schedule, reading only the
trading database: they never call Polygon. A stale symbol's `data_sync_status` becomes `stale`, so
the platform sees it without Dagster; the next successful update sets it back to `success`. Only a
sync the check judged is marked: a quote committed after the check read the status stays
`success`.
"""

import datetime as dt
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.defs.runs import cadence_definition
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import format_duration
from assets_pipeline.rules.quality import Freshness, assess_freshness
from assets_pipeline.rules.quotes import Quote

FRESH = "fresh"
QUOTE_AGE = "quote_age"
CHECK_JOB = "check_freshness"


def build_freshness_checks(registry: Registry) -> dg.AssetChecksDefinition:
    """Each symbol's `fresh` and `quote_age` checks, as one subsettable multi-asset check."""
    by_symbol = {spec.symbol: spec for spec in registry}

    @dg.multi_asset_check(specs=_check_specs(registry), can_subset=True, name="freshness_checks")
    def freshness_checks(
        context: dg.AssetCheckExecutionContext, database: TradingDatabase
    ) -> Iterator[dg.AssetCheckResult]:
        store = database.quote_store()
        now = clock.utcnow()
        selected = context.selected_asset_check_keys
        symbols = {key.asset_key.path[-1] for key in selected}
        # every configured symbol has a sync status row, so one never refreshed can show `stale`
        store.register_symbols(by_symbol[s] for s in symbols)
        stale: dict[SymbolSpec, dt.datetime | None] = {}  # -> the last sync judged stale
        for symbol in sorted(symbols):
            spec = by_symbol[symbol]
            state = _read_state(store, symbol)
            freshness = _judge(spec, state, now, registry)
            if freshness.stale:
                stale[spec] = state.last_sync
            yield from _results(symbol, state, freshness, selected)
        _mark_stale(context, store, stale)

    return freshness_checks


def _check_specs(registry: Registry) -> list[dg.AssetCheckSpec]:
    specs = []
    for spec in registry:
        policy = registry.tiers[spec.tier]
        key = quote_asset_key(spec.symbol)
        specs.append(
            dg.AssetCheckSpec(
                FRESH,
                asset=key,
                description=(
                    f"Stale when the last successful update is older than"
                    f" {registry.stale_after(spec.tier) / 60:g} minutes of open-market time"
                    f" ({spec.tier.value} tier, refreshed every"
                    f" {format_duration(policy.every_seconds)}); never while the market is closed."
                ),
            )
        )
        specs.append(
            dg.AssetCheckSpec(
                QUOTE_AGE,
                asset=key,
                description=(
                    "Warns when the quote's own time lags more than"
                    f" {format_duration(registry.quality.max_quote_age_seconds)} of open-market"
                    " time (a delayed feed), even if we fetched it recently."
                ),
            )
        )
    return specs


@dataclass(frozen=True)
class _State:
    """What the database says about one symbol: its sync status row and its stored quote."""

    status: dict[str, Any]  # empty when the symbol has no sync status row
    latest: Quote | None

    @property
    def last_sync(self) -> dt.datetime | None:
        return self.status.get("last_sync_timestamp")


def _read_state(store: QuoteStore, symbol: str) -> _State:
    return _State(store.sync_status(symbol) or {}, store.latest_quote(symbol))


def _judge(spec: SymbolSpec, state: _State, now: dt.datetime, registry: Registry) -> Freshness:
    return assess_freshness(
        spec.asset_type,
        state.last_sync,
        state.latest.quote_time if state.latest else None,
        now,
        registry.market_hours,
        registry.stale_after(spec.tier),
        registry.quality.max_quote_age_seconds,
    )


def _results(
    symbol: str, state: _State, freshness: Freshness, selected: Container[dg.AssetCheckKey]
) -> Iterator[dg.AssetCheckResult]:
    """The symbol's selected check results: `fresh` fails when stale, `quote_age` warns."""
    metadata = {**freshness.metadata(), "sync_status": state.status.get("sync_status")}
    key = quote_asset_key(symbol)
    if dg.AssetCheckKey(key, FRESH) in selected:
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=FRESH,
            passed=not freshness.stale,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=_fresh_text(symbol, freshness),
        )
    if dg.AssetCheckKey(key, QUOTE_AGE) in selected:
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=QUOTE_AGE,
            passed=not freshness.quote_lagging,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
        )


def _mark_stale(
    context: dg.AssetCheckExecutionContext,
    store: QuoteStore,
    stale: Mapping[SymbolSpec, dt.datetime | None],
) -> None:
    """Sync status -> `stale` for the symbols judged stale (each with the last sync judged)."""
    # only where the sync is still the one judged: a quote stored meanwhile stays `success`
    marked = store.mark_stale(stale)
    if stale:
        context.log.warning(
            f"stale: {', '.join(s.symbol for s in stale)};"
            f" sync status set to 'stale' for {marked} of them"
        )


def _fresh_text(symbol: str, freshness: Freshness) -> str:
    if not freshness.market_open:
        return f"{symbol}: market closed, no alarm"
    age = freshness.open_sync_age_seconds
    if age is None:
        return f"{symbol}: never refreshed while its market trades"
    return f"{symbol}: last update {age / 60:.1f} open-market minutes ago"


def freshness_job(checks: dg.AssetChecksDefinition) -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        CHECK_JOB,
        selection=dg.AssetSelection.checks(checks),
        description="Evaluate every symbol's freshness and quote-age checks (no API call).",
        tags={"dagster/priority": "8"},
    )


def freshness_schedule(registry: Registry) -> dg.ScheduleDefinition | dg.SensorDefinition:
    """The checks' own cadence (every 5 minutes by default: `quality.check_every`)."""
    every = registry.quality.check_every_seconds
    return cadence_definition(
        f"check_freshness_every_{format_duration(every)}",
        every,
        CHECK_JOB,
        "Evaluate the freshness checks: reads the database only, never Polygon.",
        lambda _context, _database: dg.RunRequest(),
    )
