"""Budget feasibility, pure: what the tiers need per window against what the budget allows."""

from __future__ import annotations

from assets_pipeline.rules.cadence import DEFAULT_TIERS, BudgetShape
from assets_pipeline.rules.feasibility import feasibility
from assets_pipeline.rules.taxonomy import AssetType, Tier


def tickers(tier: Tier, count: int, kind: AssetType = AssetType.FOREX) -> dict:
    return {tier: {f"C:T{i:04d}": kind for i in range(count)}}


def test_the_default_symbols_need_little_of_the_free_budget():
    need = {
        Tier.CRITICAL: {
            "C:XAUUSD": AssetType.FOREX,
            "C:EURUSD": AssetType.FOREX,
            "X:BTCUSD": AssetType.CRYPTO,
        },
        Tier.HIGH: {f"C:H{i}": AssetType.FOREX for i in range(3)},
    }
    found = feasibility(DEFAULT_TIERS, need, BudgetShape(5, 60, "per_ticker"))
    # critical: 3 calls every 300 s = 0.6 a minute; high: 3 every 1800 s = 0.1
    assert round(found.needed, 3) == 0.7 and found.feasible
    assert "critical 3 call(s) every 300s = 0.60" in found.explain()


def test_500_symbols_one_call_each_every_30_minutes_cannot_fit_5_a_minute():
    found = feasibility(DEFAULT_TIERS, tickers(Tier.HIGH, 500), BudgetShape(5, 60, "per_ticker"))
    assert round(found.needed, 2) == 16.67 and not found.feasible
    assert "which is more than the budget of 5" in found.explain()


def test_batch_mode_or_a_plan_of_bars_serves_the_same_500_symbols():
    batch = feasibility(DEFAULT_TIERS, tickers(Tier.HIGH, 500), BudgetShape(5, 60, "batch"))
    bars = feasibility(
        DEFAULT_TIERS,
        tickers(Tier.HIGH, 500),
        BudgetShape(5, 60, "per_ticker"),
        bars={AssetType.FOREX, AssetType.CRYPTO},
    )
    assert batch.feasible and round(batch.needed, 3) == 0.067  # 2 calls every 30 minutes
    assert bars.feasible and bars.needs[0].calls_per_refresh == 1  # one grouped call for forex
    # ... once a day, when a new bar exists: 1 call per 1,440 windows
    assert round(bars.needed, 5) == round(60 / 86400, 5)
    assert "high 1 call(s) once a day on end-of-day bars" in bars.explain()
    assert "end-of-day bars" in bars.mode
