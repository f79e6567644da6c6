"""Jobs that refresh quotes: everything, a tier, or a queue batch. Each is one run and one step.

The jobs carry no kind tag: a run of one launched from the UI is a manual run (see
`run_kinds.py`); the schedules and sensors that launch them tag their own runs.

They select the quote assets and their quality checks (evaluated as each quote is stored), but
not the freshness checks, which have their own job and cadence.
"""

from __future__ import annotations

import dagster as dg

from assets_pipeline.config.registry import Registry, SymbolSpec, Tier
from assets_pipeline.defs.keys import QUALITY_CHECK, QUOTES_PREFIX, quote_asset_key


def _refresh(symbols: list[SymbolSpec], assets: dg.AssetSelection) -> dg.AssetSelection:
    quality = [dg.AssetCheckKey(quote_asset_key(s.symbol), QUALITY_CHECK) for s in symbols]
    return assets.without_checks() | dg.AssetSelection.checks(*quality)


def refresh_all_job(registry: Registry) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "refresh_quotes",
        selection=_refresh(list(registry), dg.AssetSelection.key_prefixes([QUOTES_PREFIX])),
        description="Refresh every configured symbol's quote (today's partition).",
    )


def refresh_queue_job(registry: Registry) -> dg.UnresolvedAssetJobDefinition:
    """What the drain sensor launches, each run with the batch's symbols as its selection."""
    return dg.define_asset_job(
        "refresh_queue",
        selection=_refresh(list(registry), dg.AssetSelection.key_prefixes([QUOTES_PREFIX])),
        description="Refresh a batch of queued symbols (the drain sensor picks them).",
    )


def refresh_tier_jobs(registry: Registry) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            f"refresh_{tier.value}",
            selection=_refresh(registry.in_tier(tier), dg.AssetSelection.groups(tier.value)),
            description=f"Refresh the {tier.value} tier's quotes (today's partition).",
        )
        for tier in Tier
        if registry.in_tier(tier)
    ]
