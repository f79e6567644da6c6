"""The symbols file's tiers and queue: their cadences, the critical reserve, and the staleness they
imply. Each tier's `stale_after` follows from how it is refreshed, so a healthy system never calls
a symbol stale, and a file that sets a threshold no refresh could meet is refused when it loads."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from assets_pipeline.budget.fairness import Caller, critical_gap
from assets_pipeline.config.registry import (
    RegistryError,
    Tier,
    load_registry,
    parse_registry,
    refresh_cost,
)
from assets_pipeline.rules.cadence import BudgetShape, parse_queue, parse_tiers
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline_tests.conftest import REPO, symbol_entry


def default_document() -> dict:
    import yaml

    return yaml.safe_load(Path(load_registry().source).read_text())


@pytest.mark.parametrize(
    ("budget", "expected_minutes"),
    [
        # batch: one call refreshes every queued symbol; a window at most to get it
        (BudgetShape(5, 60, "batch"), {"critical": 10, "high": 32.25, "medium": 32.25}),
        # per_ticker: 3 high tickers, then 3 medium ones, at the 2 calls a minute left after
        # the critical tier's 3-call reserve: high drains in 2 windows, medium in 3
        (BudgetShape(5, 60, "per_ticker"), {"critical": 10, "high": 33.25, "medium": 34.25}),
        # a paid plan's budget drains everything in one window whatever the mode
        (BudgetShape(6000, 60, "per_ticker"), {"critical": 10, "high": 32.25, "medium": 32.25}),
    ],
)
def test_stale_after_defaults_to_the_cadence_plus_the_time_the_queue_needs(
    budget, expected_minutes
):
    registry = parse_registry(default_document(), "symbols.yaml", budget)
    got = {tier: registry.stale_after(Tier(tier)) / 60 for tier in expected_minutes}
    assert got == expected_minutes
    for tier in expected_minutes:  # never shorter than the cadence: the bug this replaces
        assert registry.stale_after(Tier(tier)) > registry.tiers[Tier(tier)].every_seconds


def test_a_stale_after_set_in_the_file_is_kept_if_the_cadence_can_meet_it():
    document = {"symbols": [symbol_entry()], "tiers": {"critical": {"stale_after": "7m"}}}
    assert parse_registry(document, "s.yaml").stale_after(Tier.CRITICAL) == 420


def test_a_stale_after_shorter_than_the_cadence_is_refused_with_the_arithmetic():
    document = {
        "symbols": [symbol_entry()],
        "tiers": {"high": {"refresh": "queued", "every": "30m", "stale_after": "15m"}},
    }
    with pytest.raises(RegistryError) as info:
        parse_registry(document, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: tiers.high.stale_after: 15m is shorter than")
    assert "every 30m" in message


def _bench_staleness():
    spec = importlib.util.spec_from_file_location(
        "bench_staleness", REPO / "bench/bench_staleness.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["batch", "per_ticker"])
def test_a_healthy_cycle_never_calls_a_symbol_stale(mode):
    # Six simulated hours of this project's own scheduling at 5 calls a minute (the decision
    # code is the real one: fairness.decide, the queue rules, the reserve; see
    # bench/bench_staleness.py), then the `fresh` rule applied at every minute to every symbol
    # with the derived defaults: no symbol is ever stale.
    bench = _bench_staleness()
    registry = parse_registry(default_document(), "symbols.yaml", BudgetShape(5, 60, mode))
    cfg = argparse.Namespace(
        calls=5,
        window=60.0,
        call_seconds=0.5,
        failure_rate=0.0,
        seed=1,
        run_start=5.0,
        span=6 * 3600.0,
    )
    outcome = bench.simulate_ours(registry, mode, cfg)
    stale = []
    for spec in registry:
        updates = sorted(outcome.updates.get(spec.symbol, []))
        assert updates, f"{spec.symbol} was never refreshed"
        for minute in range(int(updates[0]) // 60 + 1, int(cfg.span) // 60):
            last = max(u for u in updates if u <= minute * 60)
            if minute * 60 - last > registry.stale_after(spec.tier):
                stale.append((spec.symbol, minute))
    assert stale == []


def test_stale_after_is_set_per_tier_in_the_symbols_file():
    document = {
        "symbols": [symbol_entry(name="x")],
        "tiers": {"critical": {"stale_after": "5m"}},
    }
    registry = parse_registry(document, "s.yaml")
    assert registry.stale_after(Tier.CRITICAL) == 300
    document["quality"] = {"max_spread_bps": -1}
    with pytest.raises(
        RegistryError, match=r"quality\.max_spread_bps: -1 is not a positive number"
    ):
        parse_registry(document, "s.yaml")


def test_the_default_cadences_are_the_reference_designs(registry):
    critical = registry.tiers[Tier.CRITICAL]
    assert (critical.refresh, critical.every_seconds, critical.cron) == (
        "direct",
        300,
        "*/5 * * * *",
    )
    assert all(
        registry.tiers[t].refresh == "queued" and registry.tiers[t].every_seconds == 1800
        for t in (Tier.HIGH, Tier.MEDIUM, Tier.LOW)
    )
    assert (
        registry.queue.drain_every_seconds,
        registry.queue.max_size,
        registry.queue.max_retries,
    ) == (15, 1000, 3)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"tiers": {"urgent": {"every": "5m"}}}, r"tiers.urgent: unknown tier"),
        ({"tiers": {"high": {"every": "soon"}}}, r"tiers.high.every: 'soon' is not a duration"),
        (
            {"tiers": {"high": {"refresh": "push"}}},
            r"tiers.high.refresh: 'push' is not 'direct' or 'queued'",
        ),
        ({"queue": {"max_size": 0}}, r"queue.max_size: must be at least 1"),
        ({"queue": {"max_retries": -1}}, r"queue.max_retries: -1 is not a whole number"),
    ],
)
def test_bad_cadence_settings_name_the_file_and_field(section, expected):
    document = {
        "symbols": [symbol_entry(name="x")],
        **section,
    }
    with pytest.raises(RegistryError, match=expected):
        parse_registry(document, source="sym.yaml")
    assert parse_tiers(None, "x") and parse_queue(None, "x")


def test_the_critical_reserve_is_one_refresh_of_the_direct_tiers(registry):
    critical = registry.in_tier(Tier.CRITICAL)
    assert refresh_cost(critical, "batch") == 1
    assert refresh_cost(critical, "per_ticker") == 3
    assert registry.critical_reserve("batch") == 1
    assert registry.critical_reserve("per_ticker") == 3
    assert critical_gap([300.0]) == 240  # every 5 minutes, less a minute of slack
    assert registry.secondary_caller("per_ticker") == Caller(False, 3, 240)


def test_on_day_bars_the_critical_reserve_is_one_grouped_call_per_market(registry):
    # XAUUSD and EURUSD are forex, BTCUSD crypto: two grouped-daily calls, whatever the mode
    bars = {AssetType.FOREX, AssetType.CRYPTO}
    assert registry.critical_reserve("per_ticker", bars) == 2
    assert registry.critical_reserve("batch", bars) == 2
    # forex on bars, crypto on snapshots: one grouped call and one snapshot call
    assert registry.critical_reserve("per_ticker", {AssetType.FOREX}) == 2
    assert registry.secondary_caller("per_ticker", bars) == Caller(False, 2, 240)


@pytest.mark.parametrize(
    ("plan", "allowance"),
    [
        ("free", "end-of-day plan: the newest session close, fetched once published (30m after"),
        ("paid", "live plan: data at most 10m old in open-market time"),
        ("auto", "with snapshots, data at most 10m old in open-market time; on end-of-day bars"),
    ],
)
def test_each_tier_says_what_freshness_its_plan_allows(registry, plan, allowance):
    assert dataclasses.replace(registry, plan=plan).allowance(Tier.CRITICAL).startswith(allowance)


def test_each_tier_says_when_it_spends_calls_on_its_plan(registry):
    free, paid = (dataclasses.replace(registry, plan=p) for p in ("free", "paid"))
    assert free.cadence(Tier.HIGH) == (
        "end-of-day plan: one call per market once a session's bar is published, none in between"
    )
    assert paid.cadence(Tier.CRITICAL) == "live plan: every 5m through its own schedule"
    assert paid.cadence(Tier.HIGH) == "live plan: every 30m through the queue"
