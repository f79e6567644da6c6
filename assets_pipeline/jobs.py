"""Jobs that refresh quotes: everything, or one tier. Each is one run and one step."""

from __future__ import annotations

import dagster as dg

from assets_pipeline.assets import QUOTES_PREFIX
from assets_pipeline.batches import CRITICAL, MANUAL, QUEUE, run_tags
from assets_pipeline.registry import Registry, Tier


def refresh_all_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "refresh_quotes",
        selection=dg.AssetSelection.key_prefixes([QUOTES_PREFIX]),
        description="Refresh every configured symbol's quote (today's partition).",
        tags=run_tags(MANUAL),
    )


def refresh_queue_job() -> dg.UnresolvedAssetJobDefinition:
    """What the drain sensor launches, each run with the batch's symbols as its selection."""
    return dg.define_asset_job(
        "refresh_queue",
        selection=dg.AssetSelection.key_prefixes([QUOTES_PREFIX]),
        description="Refresh a batch of queued symbols (the drain sensor picks them).",
        tags=run_tags(QUEUE),
    )


def refresh_tier_jobs(registry: Registry) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            f"refresh_{tier.value}",
            selection=dg.AssetSelection.groups(tier.value),
            description=f"Refresh the {tier.value} tier's quotes (today's partition).",
            tags=run_tags(
                CRITICAL if registry.tiers[tier].refresh == "direct" else MANUAL, tier=tier.value
            ),
        )
        for tier in Tier
        if registry.in_tier(tier)
    ]
