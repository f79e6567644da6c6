"""How the budget is shared: the critical tier's reserve. Pure arithmetic, no I/O.

Critical refreshes must never wait on secondary or backfill traffic. So every non-critical call
is taken only while more than `reserve` slots stay free in the window, where `reserve` is what
one refresh of the direct (critical) tiers costs. The budget store enforces it atomically
(`PolygonBudget(reserve=...)`); the drain sensor uses the same number to size its batches. As long
as the critical cadence is at least one window long (5 minutes against 60 seconds by default),
the critical refresh always finds its slots free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from assets_pipeline.polygon.client import V3_MAX_TICKERS
from assets_pipeline.registry import Registry, SymbolSpec


def refresh_cost(specs: Iterable[SymbolSpec], mode: str) -> int:
    """API calls one refresh of these symbols takes (without retries)."""
    tickers = {spec.polygon_ticker for spec in specs}
    if not tickers:
        return 0
    if mode == "batch":
        return math.ceil(len(tickers) / V3_MAX_TICKERS)
    return len(tickers)


def direct_specs(registry: Registry) -> list[SymbolSpec]:
    direct = {tier for tier, policy in registry.tiers.items() if policy.refresh == "direct"}
    return [spec for spec in registry if spec.tier in direct]


def critical_reserve(registry: Registry, mode: str) -> int:
    """Slots every non-critical caller leaves free for the next critical refresh."""
    return refresh_cost(direct_specs(registry), mode)


def secondary_slots(remaining: int, reserve: int) -> int:
    """Calls the queue may spend now: what is free beyond the reserve."""
    return max(0, remaining - reserve)
