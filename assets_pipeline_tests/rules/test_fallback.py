"""Which provider a symbol is asked of: the symbols file's order, per market and per symbol,
live before end of day, the recently failed and the busy last, and a circuit's schedule."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.config.registry import RegistryError, parse_registry
from assets_pipeline.rules.fallback import (
    DEFAULT_CHAINS,
    Candidate,
    Circuit,
    FallbackError,
    order,
    parse_fallback,
    primary,
)
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline_tests.conftest import symbol_entry

T = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_each_market_defaults_to_its_free_live_providers_then_polygon():
    assert DEFAULT_CHAINS[AssetType.FOREX] == ("oanda", "polygon")
    assert DEFAULT_CHAINS[AssetType.CRYPTO] == ("kraken", "bitstamp", "polygon")
    assert DEFAULT_CHAINS[AssetType.INDEX] == ("polygon",)


def test_a_symbol_takes_its_own_list_else_its_markets_from_the_file():
    registry = parse_registry(
        {
            "symbols": [
                symbol_entry(),
                symbol_entry(symbol="GBPUSD", polygon_ticker="C:GBPUSD", providers=["polygon"]),
            ],
            "providers": {"markets": {"forex": ["polygon", "oanda"]}},
        }
    )
    assert registry.chain(registry.get("EURUSD")) == ("polygon", "oanda")
    assert registry.chain(registry.get("GBPUSD")) == ("polygon",)


@pytest.mark.parametrize(
    ("providers", "problem"),
    [
        (["bloomberg"], "unknown provider 'bloomberg'"),
        (["oanda", "oanda"], "a provider is named twice"),
        ([], "expected a non-empty list"),
        ("oanda", "expected a non-empty list"),
    ],
)
def test_a_bad_provider_list_names_the_symbol_and_the_field(providers, problem):
    with pytest.raises(RegistryError) as error:
        parse_registry({"symbols": [symbol_entry(providers=providers)]}, source="s.yaml")
    assert "s.yaml: symbols[0] (EURUSD): field 'providers'" in str(error.value)
    assert problem in str(error.value)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"markets": {"bonds": ["polygon"]}}, "providers.markets: unknown market 'bonds'"),
        ({"markets": {"forex": ["nope"]}}, "providers.markets.forex: unknown provider"),
        ({"retry_after": "soon"}, "providers.retry_after"),
        ({"alert_after": 0}, "providers.alert_after"),
        ({"circuit": "5m"}, "providers: a mapping of"),
    ],
)
def test_a_bad_providers_section_says_which_key(section, problem):
    with pytest.raises(RegistryError) as error:
        parse_registry({"symbols": [symbol_entry()], "providers": section}, source="s.yaml")
    assert f"s.yaml: {problem}" in str(error.value)


def test_the_providers_section_sets_the_circuit_hysteresis_and_alert_times():
    policy = parse_fallback({"retry_after": "2m", "return_after": "20m", "alert_after": "1h"}, "f")
    assert (policy.retry_after_seconds, policy.return_after_seconds) == (120.0, 1200.0)
    assert policy.alert_after_seconds == 3600.0


def test_live_providers_come_before_end_of_day_whatever_the_files_order():
    candidates = [Candidate("polygon", live=False), Candidate("kraken", live=True)]
    assert order(candidates) == ["kraken", "polygon"]


def test_a_provider_that_failed_the_symbol_lately_is_asked_after_the_others():
    candidates = [Candidate("oanda", held=True), Candidate("polygon")]
    assert order(candidates) == ["polygon", "oanda"]


def test_a_provider_without_a_free_slot_is_asked_after_those_with_one():
    candidates = [Candidate("oanda", busy=True), Candidate("polygon")]
    assert order(candidates) == ["polygon", "oanda"]


def test_live_counts_before_hysteresis_a_day_old_close_is_never_preferred():
    candidates = [Candidate("oanda", held=True), Candidate("polygon", live=False)]
    assert order(candidates) == ["oanda", "polygon"]


def test_the_primary_is_the_first_usable_live_provider():
    assert primary(("polygon", "oanda"), {"polygon", "oanda"}, {"oanda"}) == "oanda"
    assert primary(("oanda", "polygon"), {"polygon"}, {"polygon"}) == "polygon"
    assert primary(("polygon",), {"polygon"}, set()) == "polygon"
    assert primary(("kraken",), set(), set()) is None


def test_a_circuit_stays_open_for_retry_after_then_is_asked_again():
    circuit = Circuit(T, "RetryableError: HTTP 503")
    assert circuit.is_open(T + dt.timedelta(seconds=299), 300)
    assert not circuit.is_open(T + dt.timedelta(seconds=300), 300)
    assert circuit.describe(T, 300).startswith("open until 2026-11-25T12:05:00")
    assert not Circuit().is_open(T, 300)


def test_a_circuit_is_kept_as_a_message_and_read_back():
    circuit = Circuit(T, "ConnectionRefusedError")
    assert Circuit.from_message(circuit.as_message()) == circuit
    assert Circuit.from_message("not json") == Circuit()


def test_a_fallback_policy_error_is_a_value_error_naming_the_file():
    with pytest.raises(FallbackError, match=r"^f: providers"):
        parse_fallback(["oanda"], "f")
