"""Can the budget serve the configuration? Pure arithmetic, checked when the symbols file loads.

Each tier needs one refresh of its symbols every cadence; a refresh costs what its snapshot mode
(or, on a plan without snapshots, its bars) costs: one batch call per 250 tickers, one call per
ticker, or one grouped-daily call per market plus one per index. Averaged over the budget's
window, the tiers together must need no more calls than the window allows. A configuration that
needs more can only fall behind, however the queue orders it, so it is refused (or, by choice,
warned about) with the arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from assets_pipeline.rules.cadence import BudgetShape, TierPolicy, calls_for
from assets_pipeline.rules.taxonomy import AssetType, Tier


@dataclass(frozen=True)
class TierNeed:
    tier: Tier
    tickers: int
    calls_per_refresh: int
    every_seconds: float
    calls_per_window: float


@dataclass(frozen=True)
class Feasibility:
    """The calls per window the tiers need against what the budget allows."""

    needs: tuple[TierNeed, ...]
    limit: int
    window_seconds: float
    mode: str

    @property
    def needed(self) -> float:
        return sum(need.calls_per_window for need in self.needs)

    @property
    def feasible(self) -> bool:
        return self.needed <= self.limit

    def explain(self) -> str:
        """The arithmetic, in one line a person can check."""
        terms = " + ".join(
            f"{n.tier.value} {n.calls_per_refresh} call(s) every {n.every_seconds:g}s"
            f" = {n.calls_per_window:.2f}"
            for n in self.needs
        )
        verdict = "fits within" if self.feasible else "is more than"
        return (
            f"the tiers need {self.needed:.2f} calls per {self.window_seconds:g}s window"
            f" ({terms}; {self.mode} mode), which {verdict} the budget of {self.limit}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "needed_calls_per_window": round(self.needed, 3),
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "mode": self.mode,
            "feasible": self.feasible,
        }


def feasibility(
    tiers: Mapping[Tier, TierPolicy],
    tickers: Mapping[Tier, Mapping[str, AssetType]],
    budget: BudgetShape,
    bars_only: bool = False,
) -> Feasibility:
    """What the configuration needs of the budget. `bars_only`: a plan without snapshots."""
    needs = []
    for tier in Tier:
        own = tickers.get(tier, {})
        if not own:
            continue
        cost = bars_cost(own) if bars_only else calls_for(len(own), budget.mode)
        every = tiers[tier].every_seconds
        needs.append(TierNeed(tier, len(own), cost, every, cost * budget.window_seconds / every))
    return Feasibility(tuple(needs), budget.calls, budget.window_seconds, budget.mode)


def bars_cost(tickers: Mapping[str, AssetType]) -> int:
    """Grouped daily: one call per market (forex, crypto); an index: one call of its own."""
    markets = {kind for kind in tickers.values() if kind is not AssetType.INDEX}
    indices = sum(1 for kind in tickers.values() if kind is AssetType.INDEX)
    return len(markets) + indices if tickers else 0
