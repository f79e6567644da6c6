"""How the budget is shared between the critical tier and everything else. Pure, no I/O.

Critical refreshes must never wait on secondary or backfill traffic. A non-critical call must
therefore leave `reserve` slots (what one refresh of the direct tiers costs) free for the next
critical refresh, but only when it would still be in the window at the time that refresh is due.
The store knows when the last critical call was made and expects the next no sooner than
`critical_gap` later: the shortest direct cadence less a slack for run start-up jitter. Calls that
will have expired by then use the budget freely, so secondary symbols get everything the
critical tier does not need instead of losing the reserve in every window. The store applies the
rule atomically (`budget.decide`); the drain sensor asks the same rule how many slots it has.
"""

from __future__ import annotations

from collections.abc import Iterable

from assets_pipeline.budget import Caller
from assets_pipeline.cadence import calls_for
from assets_pipeline.registry import Registry, SymbolSpec


def refresh_cost(specs: Iterable[SymbolSpec], mode: str) -> int:
    """API calls one refresh of these symbols takes (without retries)."""
    return calls_for(len({spec.polygon_ticker for spec in specs}), mode)


def critical_reserve(registry: Registry, mode: str) -> int:
    """Slots every non-critical caller leaves free for the next critical refresh."""
    return refresh_cost(registry.direct(), mode)


def critical_gap(registry: Registry) -> float:
    """The earliest the next critical refresh may come after the last: the shortest direct
    cadence less a slack for late runs (20%, at least 10 s, at most 60 s)."""
    cadences = [p.every_seconds for p in registry.tiers.values() if p.refresh == "direct"]
    if not cadences:
        return 0.0
    every = min(cadences)
    return max(every - min(max(0.2 * every, 10.0), 60.0), 0.0)


def secondary_caller(registry: Registry, mode: str) -> Caller:
    """How non-critical runs (the queue, manual refreshes, backfills) ask the budget."""
    return Caller(
        critical=False,
        reserve=critical_reserve(registry, mode),
        critical_gap=critical_gap(registry),
    )
