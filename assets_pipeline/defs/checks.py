"""Asset checks: their specs, and how they are judged. Checks only read.

`quote_quality` is judged from each quote as it is stored; `fresh` and `quote_age` from one read
of the trading database (`judge_freshness`), after the step's writes or alone in the
`check_freshness` job. The stale verdicts go to `refresh.mark_stale`, the one writer."""

import datetime as dt
from collections.abc import Container, Iterator, Set
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.defs.keys import QUALITY_CHECK, quote_asset_key
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.defs.runs import cadence_definition
from assets_pipeline.persistence.provider_state import serving
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import format_duration
from assets_pipeline.rules.quality import Freshness, assess_freshness, assess_quality
from assets_pipeline.rules.quotes import Quote

FRESH = "fresh"
QUOTE_AGE = "quote_age"
FRESHNESS_CHECKS = (FRESH, QUOTE_AGE)
#: A critical symbol's check that a fallback has not served it too long.
PROVIDER_CHECK = "primary_provider"
CHECK_JOB = "check_freshness"


def check_specs(registry: Registry, symbols: list[SymbolSpec]) -> list[dg.AssetCheckSpec]:
    """The symbols' checks: quality, freshness and quote age; for the critical tier's, the
    provider serving them."""
    return [
        *quality_check_specs(registry, symbols),
        *_freshness_specs(registry, symbols),
        *_provider_specs(registry, symbols),
    ]


def _provider_specs(registry: Registry, symbols: list[SymbolSpec]) -> list[dg.AssetCheckSpec]:
    direct = {spec.symbol for spec in registry.direct()}
    after = format_duration(registry.fallback.alert_after_seconds)
    return [
        dg.AssetCheckSpec(
            PROVIDER_CHECK,
            asset=quote_asset_key(spec.symbol),
            description=(
                f"Fails when a fallback has served {spec.symbol} for longer than {after}"
                f" (`providers.alert_after`): its providers in order are"
                f" {', '.join(registry.chain(spec))}, the first that can serve it live is"
                " its primary."
            ),
        )
        for spec in symbols
        if spec.symbol in direct
    ]


def judge_providers(
    registry: Registry, database: TradingDatabase, selected: Set[dg.AssetCheckKey]
) -> list[dg.AssetCheckResult]:
    """The selected `primary_provider` checks, from one read of the database; writes nothing."""
    symbols = sorted({key.asset_key.path[-1] for key in selected if key.name == PROVIDER_CHECK})
    if not symbols:
        return []
    found = serving(database.engine(), symbols)
    now, limit = clock.utcnow(), dt.timedelta(seconds=registry.fallback.alert_after_seconds)
    results = []
    for symbol in symbols:
        held = found.get(symbol)
        since = held.fallback_since if held else None
        too_long = since is not None and now - since > limit
        if held is None:
            text = f"{symbol}: no quote stored yet"
        elif since is None:
            text = f"{symbol}: served by {held.provider}, its primary"
        else:
            minutes = (now - since).total_seconds() / 60
            text = (
                f"{symbol}: served by {held.provider}, a fallback, for {minutes:.1f} minutes"
                f" (its primary is {held.primary}; fails past"
                f" {format_duration(limit.total_seconds())})"
            )
        results.append(
            dg.AssetCheckResult(
                asset_key=quote_asset_key(symbol),
                check_name=PROVIDER_CHECK,
                passed=not too_long,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "provider": held.provider if held else None,
                    "primary": held.primary if held else None,
                    "fallback_since": since.isoformat() if since else None,
                },
                description=text,
            )
        )
    return results


def quality_check_specs(registry: Registry, symbols: list[SymbolSpec]) -> list[dg.AssetCheckSpec]:
    """Checked by the refresh itself, for each quote it is about to store."""
    policy = registry.quality
    description = (
        f"Soft rules for each new quote: spread within {policy.max_spread_bps:g} bp, a jump from"
        f" the previous quote within {policy.max_jump_pct:g}%, a quote time newer than the"
        " stored one. Warns with the numbers; hard violations were already rejected before the"
        " write."
    )
    return [
        dg.AssetCheckSpec(QUALITY_CHECK, asset=quote_asset_key(s.symbol), description=description)
        for s in symbols
    ]


def quality_result(
    symbol: SymbolSpec, quote: Quote, previous: Quote | None, registry: Registry
) -> dg.AssetCheckResult:
    """The `quote_quality` check of a quote about to be stored (a warning, never an error)."""
    verdict = assess_quality(quote, previous, registry.quality)
    return dg.AssetCheckResult(
        asset_key=quote_asset_key(symbol.symbol),
        check_name=QUALITY_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**verdict.metadata, "problems": "; ".join(verdict.problems) or "none"},
        description="; ".join(verdict.problems) or None,
    )


@dataclass(frozen=True)
class FreshnessVerdicts:
    """The selected freshness checks' results, the symbols judged, and those judged stale (each
    with the last sync judged, so a quote committed meanwhile is not marked)."""

    results: list[dg.AssetCheckResult]
    judged: list[SymbolSpec]
    stale: dict[SymbolSpec, dt.datetime | None]


def judge_freshness(
    registry: Registry, database: TradingDatabase, selected: Set[dg.AssetCheckKey]
) -> FreshnessVerdicts:
    """The selected `fresh` and `quote_age` checks, from one read of the database; writes nothing
    (a symbol with no sync status row is judged as never synced)."""
    symbols = sorted({key.asset_key.path[-1] for key in selected if key.name in FRESHNESS_CHECKS})
    if not symbols:
        return FreshnessVerdicts([], [], {})
    store = database.quote_store()
    now = clock.utcnow()
    statuses, latest = store.sync_statuses(symbols), store.latest_quotes(symbols)
    verdicts = FreshnessVerdicts([], [registry.get(s) for s in symbols], {})
    for spec in verdicts.judged:
        state = _State(statuses.get(spec.symbol) or {}, latest.get(spec.symbol))
        freshness = _judge(spec, state, now, registry)
        if freshness.stale:
            verdicts.stale[spec] = state.last_sync
        verdicts.results.extend(_results(spec.symbol, state, freshness, selected))
    return verdicts


def _freshness_specs(registry: Registry, symbols: list[SymbolSpec]) -> list[dg.AssetCheckSpec]:
    specs = []
    for spec in symbols:
        policy = registry.tiers[spec.tier]
        key = quote_asset_key(spec.symbol)
        specs.append(
            dg.AssetCheckSpec(
                FRESH,
                asset=key,
                description=(
                    f"Fails when the price's own time is older than the plan allows:"
                    f" {registry.allowance(spec.tier)} ({spec.tier.value} tier, refreshed every"
                    f" {format_duration(policy.every_seconds)}). Judged on the market's time,"
                    " never on when we fetched it."
                ),
            )
        )
        specs.append(
            dg.AssetCheckSpec(
                QUOTE_AGE,
                asset=key,
                description=(
                    "Warns when the price's own time lags more than"
                    f" {format_duration(registry.quality.max_data_age_seconds)} of open-market"
                    " time (a delayed feed), even if we fetched it recently; on an end-of-day"
                    " plan, when it is not the newest published close."
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


def _judge(spec: SymbolSpec, state: _State, now: dt.datetime, registry: Registry) -> Freshness:
    return assess_freshness(
        spec.asset_type,
        state.last_sync,
        state.latest.data_time if state.latest else None,
        now,
        registry.market_hours,
        registry.stale_after(spec.tier),
        registry.quality.max_data_age_seconds,
        registry.publication_delay if registry.on_day_bars(state.latest, spec) else None,
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
            description=_age_text(symbol, freshness),
        )


def _age_text(symbol: str, freshness: Freshness) -> str:
    if freshness.end_of_day is not None:
        return _fresh_text(symbol, freshness)
    age = freshness.open_data_age_seconds
    limit = f"warns past {freshness.max_data_age_seconds / 60:g} open-market minutes"
    if age is None or not freshness.market_open:
        return f"{symbol}: no open-market age to judge; {limit}"
    return f"{symbol}: the price is {age / 60:.1f} open-market minutes old; {limit}"


def _fresh_text(symbol: str, freshness: Freshness) -> str:
    if freshness.end_of_day is not None:
        verdict = "behind the plan" if freshness.stale else "as new as the plan allows"
        return f"{symbol}: {verdict}; {freshness.describe()}"
    if not freshness.market_open:
        return f"{symbol}: market closed, no alarm"
    age = freshness.open_data_age_seconds
    if age is None:
        return f"{symbol}: no price yet while its market trades"
    return f"{symbol}: the price is {age / 60:.1f} open-market minutes old"


def freshness_job(registry: Registry) -> "dg.UnresolvedAssetJobDefinition":
    """The checks alone: one step that reads the database and materializes nothing."""
    keys = [
        dg.AssetCheckKey(quote_asset_key(spec.symbol), name)
        for spec in registry
        for name in FRESHNESS_CHECKS
    ]
    direct = registry.direct()
    keys += [dg.AssetCheckKey(quote_asset_key(s.symbol), PROVIDER_CHECK) for s in direct]
    return dg.define_asset_job(
        CHECK_JOB,
        selection=dg.AssetSelection.checks(*keys),
        description="Evaluate every symbol's freshness and quote-age checks, and the critical"
        " symbols' provider checks (no API call).",
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


def check_definitions(registry: Registry) -> dg.Definitions:
    """This area's definitions: the freshness checks' job and its cadence (the checks themselves
    are declared on the quotes multi-asset)."""
    cadence = freshness_schedule(registry)
    if isinstance(cadence, dg.ScheduleDefinition):
        return dg.Definitions(jobs=[freshness_job(registry)], schedules=[cadence])
    return dg.Definitions(jobs=[freshness_job(registry)], sensors=[cadence])
