"""Can the budget serve the configuration? Pure arithmetic, checked when the symbols file loads.

Each tier needs one refresh of its symbols every cadence, at its snapshot mode's cost (one call
per 250 tickers, or one per ticker), or on end-of-day bars one call per market plus one per index.
Averaged over the budget's window, the tiers together must need no more calls than it allows; a
configuration that needs more is refused (or, by choice, warned about) with the arithmetic."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Set
from dataclasses import dataclass

from assets_pipeline.rules.cadence import BudgetShape, TierPolicy, calls_for
from assets_pipeline.rules.taxonomy import AssetType, Tier

#: How often a market on end-of-day bars has a new bar: once a day.
BAR_SECONDS = 86400.0


@dataclass(frozen=True)
class TierNeed:
    tier: Tier
    tickers: int
    calls_per_refresh: int
    every_seconds: float
    calls_per_window: float
    #: Of `calls_per_refresh`, those for markets on end-of-day bars (spent once a day).
    bar_calls: int = 0


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
        """The arithmetic, in one line a person can check (every asset's metadata shows it)."""
        return self._explanation

    @functools.cached_property
    def _explanation(self) -> str:
        terms = " + ".join(_term(n) for n in self.needs)
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


def _term(need: TierNeed) -> str:
    """One tier's share of the arithmetic."""
    snapshots = need.calls_per_refresh - need.bar_calls
    parts = []
    if snapshots:
        parts.append(f"{snapshots} call(s) every {need.every_seconds:g}s")
    if need.bar_calls:
        parts.append(f"{need.bar_calls} call(s) once a day on end-of-day bars")
    return f"{need.tier.value} {' and '.join(parts)} = {need.calls_per_window:.2f}"


def feasibility(
    tiers: Mapping[Tier, TierPolicy],
    tickers: Mapping[Tier, Mapping[str, AssetType]],
    budget: BudgetShape,
    bars: Set[AssetType] = frozenset(),
) -> Feasibility:
    """What the configuration needs of the budget, its `bars` markets on end-of-day bars."""
    needs = []
    window = budget.window_seconds
    for tier in Tier:
        own = tickers.get(tier, {})
        if not own:
            continue
        on_bars = {t: kind for t, kind in own.items() if kind in bars}
        snapshots = calls_for(len(own) - len(on_bars), budget.mode)
        bar_calls = bars_cost(on_bars)
        every = tiers[tier].every_seconds
        per_window = snapshots * window / every + bar_calls * window / BAR_SECONDS
        needs.append(TierNeed(tier, len(own), snapshots + bar_calls, every, per_window, bar_calls))
    mode = (
        "end-of-day bars"
        if bars and not any(n.bar_calls < n.calls_per_refresh for n in needs)
        else budget.mode
    )
    return Feasibility(tuple(needs), budget.calls, budget.window_seconds, mode)


def bars_cost(tickers: Mapping[str, AssetType]) -> int:
    """Grouped daily: one call per market (forex, crypto); an index: one call of its own."""
    markets = {kind for kind in tickers.values() if kind is not AssetType.INDEX}
    indices = sum(1 for kind in tickers.values() if kind is AssetType.INDEX)
    return len(markets) + indices if tickers else 0
