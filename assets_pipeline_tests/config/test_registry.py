"""The symbol registry: the shipped defaults, and a clear error for each kind of bad entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from assets_pipeline.config.registry import (
    AssetType,
    RegistryError,
    Tier,
    load_registry,
    parse_registry,
)
from assets_pipeline_tests.conftest import symbol_entry as entry


def test_default_registry_has_the_nine_symbols_in_their_tiers(registry):
    tiers = {t: [s.symbol for s in registry.in_tier(t)] for t in Tier}
    assert tiers == {
        Tier.CRITICAL: ["XAUUSD", "EURUSD", "BTCUSD"],
        Tier.HIGH: ["ETHUSDT", "GBPUSD", "USDJPY"],
        Tier.MEDIUM: ["XAGUSD", "AUDUSD", "USDCAD"],
        Tier.LOW: [],
    }
    xau, eur, btc = (registry.get(s) for s in ("XAUUSD", "EURUSD", "BTCUSD"))
    assert (xau.polygon_ticker, xau.asset_type, xau.price_precision) == (
        "C:XAUUSD",
        AssetType.FOREX,
        2,
    )
    assert (eur.polygon_ticker, eur.price_precision) == ("C:EURUSD", 5)
    assert (btc.polygon_ticker, btc.asset_type, btc.price_precision) == (
        "X:BTCUSD",
        AssetType.CRYPTO,
        2,
    )


def test_ethusdt_is_priced_by_the_documented_usd_pair(registry):
    # No USDT-quoted crypto ticker is documented by Polygon; X:ETHUSD is.
    spec = registry.get("ETHUSDT")
    assert spec.polygon_ticker == "X:ETHUSD"
    assert spec.quote_asset == "USDT"


def test_assets_config_overrides_the_packaged_file(tmp_path, monkeypatch):
    path = tmp_path / "symbols.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "symbols": [
                    entry(symbol="SPX", polygon_ticker="I:SPX", asset_type="index", tier="low")
                ]
            }
        )
    )
    monkeypatch.setenv("ASSETS_CONFIG", str(path))
    registry = load_registry()
    assert [s.symbol for s in registry] == ["SPX"]
    assert registry.source == str(path)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        # the same symbol twice
        (
            [entry(), entry(polygon_ticker="C:EURUSD")],
            r"symbols\[1\] \(EURUSD\): field 'symbol': duplicate of symbols\[0\]",
        ),
        # two symbols Dagster would give one output name (BRK.B and BRK_B are quotes__BRK_B)
        (
            [
                entry(symbol="BRK.B", polygon_ticker="C:EURUSD"),
                entry(symbol="BRK_B", polygon_ticker="C:GBPUSD"),
            ],
            r"symbols\[1\] \(BRK_B\): field 'symbol': same Dagster name as BRK.B, symbols\[0\]",
        ),
        # a crypto ticker on a forex entry
        (
            [entry(polygon_ticker="X:EURUSD")],
            r"symbols\[0\] \(EURUSD\): field 'polygon_ticker': 'X:EURUSD' does not fit asset_type 'forex'",
        ),
        # an index without the I: prefix
        (
            [entry(asset_type="index", polygon_ticker="SPX")],
            r"field 'polygon_ticker': 'SPX' does not fit asset_type 'index'",
        ),
        # lower case, and too long
        ([entry(symbol="eurusd")], r"field 'symbol': 'eurusd' does not match"),
        ([entry(symbol="A" * 21)], r"field 'symbol': 'A{21}' does not match"),
        # an unknown tier
        (
            [entry(tier="urgent")],
            r"field 'tier': unknown tier 'urgent' \(expected one of critical, high, medium, low\)",
        ),
        # precisions that are not small non-negative integers
        ([entry(price_precision=-1)], r"field 'price_precision': -1 is outside 0..10"),
        ([entry(price_precision=2.5)], r"field 'price_precision': 2.5 is not an integer"),
        ([entry(price_precision="5")], r"field 'price_precision': '5' is not an integer"),
        # a missing field and a misspelt one
        ([{k: v for k, v in entry().items() if k != "name"}], r"field 'name': missing"),
        ([entry(teir="high")], r"field 'teir': unknown field"),
        # an unknown asset type
        ([entry(asset_type="stock")], r"field 'asset_type': unknown type 'stock'"),
    ],
)
def test_bad_entries_are_rejected_naming_file_entry_and_field(tmp_path: Path, entries, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"symbols": entries}))
    with pytest.raises(RegistryError, match=expected) as info:
        load_registry(path)
    assert str(info.value).startswith(f"{path}: symbols[")


def test_unreadable_and_invalid_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RegistryError, match=f"{missing}: cannot read"):
        load_registry(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("symbols: [\n")
    with pytest.raises(RegistryError, match=f"{broken}: not valid YAML"):
        load_registry(broken)
    with pytest.raises(RegistryError, match="'symbols' must be a non-empty list"):
        parse_registry({"symbols": []})


def test_a_configuration_the_budget_cannot_serve_is_refused_with_the_arithmetic(
    tmp_path, monkeypatch
):
    import yaml

    from assets_pipeline.config.settings import Settings
    from assets_pipeline_tests.conftest import symbol_entry

    entries = [
        symbol_entry(symbol=f"S{i:03d}", polygon_ticker=f"C:S{i:03d}", tier="high")
        for i in range(500)
    ]
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump({"symbols": entries}))
    per_ticker = Settings.from_env({"POLYGON_SNAPSHOT_MODE": "per_ticker"})
    with pytest.raises(RegistryError, match=r"needs? 16\.67 calls per 60s window") as info:
        load_registry(path, settings=per_ticker)
    assert "POLYGON_BUDGET_CHECK=warn" in str(info.value)
    warned = Settings.from_env(
        {"POLYGON_SNAPSHOT_MODE": "per_ticker", "POLYGON_BUDGET_CHECK": "warn"}
    )
    assert not load_registry(path, settings=warned).feasibility.feasible  # loads, and says so
    assert load_registry(path, settings=Settings.from_env({})).feasibility.feasible  # batch
