"""Asset checks: freshness (and the quote's own age) on a cadence, quality on every write.

The freshness checks run in their own job (`check_freshness`) on a schedule, reading only the
trading database: they never call Polygon. A stale symbol's `data_sync_status` becomes `stale`, so
the platform sees it without Dagster; the next successful update sets it back to `success`. Only a
sync the check judged is marked: a quote committed after the check read the status stays
`success`.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from assets_pipeline.config.registry import Registry
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.defs.runs import cadence_definition
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import format_duration
from assets_pipeline.rules.quality import Freshness, assess_freshness

FRESH = "fresh"
QUOTE_AGE = "quote_age"
CHECK_JOB = "check_freshness"


def build_freshness_checks(registry: Registry) -> dg.AssetChecksDefinition:
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
    by_symbol = {spec.symbol: spec for spec in registry}

    @dg.multi_asset_check(specs=specs, can_subset=True, name="freshness_checks")
    def freshness_checks(
        context: dg.AssetCheckExecutionContext, database: TradingDatabase
    ) -> Iterator[dg.AssetCheckResult]:
        store = database.quote_store()
        now = clock.utcnow()
        selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
        # every configured symbol has a sync status row, so one never refreshed can show `stale`
        store.register_symbols(by_symbol[s] for s in selected)
        stale: dict[str, dt.datetime | None] = {}  # symbol -> the last sync judged stale
        for symbol in sorted(selected):
            spec = by_symbol[symbol]
            status = store.sync_status(symbol) or {}
            latest = store.latest_quote(symbol)
            freshness = assess_freshness(
                spec.asset_type,
                status.get("last_sync_timestamp"),
                latest.quote_time if latest else None,
                now,
                registry.market_hours,
                registry.stale_after(spec.tier),
                registry.quality.max_quote_age_seconds,
            )
            metadata = {**freshness.metadata(), "sync_status": status.get("sync_status")}
            if freshness.stale:
                stale[symbol] = status.get("last_sync_timestamp")
            key = quote_asset_key(symbol)
            if dg.AssetCheckKey(key, FRESH) in context.selected_asset_check_keys:
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name=FRESH,
                    passed=not freshness.stale,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata=metadata,
                    description=_fresh_text(symbol, freshness),
                )
            if dg.AssetCheckKey(key, QUOTE_AGE) in context.selected_asset_check_keys:
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name=QUOTE_AGE,
                    passed=not freshness.quote_lagging,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata=metadata,
                )
        # only where the sync is still the one judged: a quote stored meanwhile stays `success`
        marked = store.mark_stale({by_symbol[s]: seen for s, seen in stale.items()})
        if stale:
            context.log.warning(
                f"stale: {', '.join(stale)}; sync status set to 'stale' for {marked} of them"
            )

    return freshness_checks


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
