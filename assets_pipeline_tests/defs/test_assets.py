"""The asset factory: each entry of the symbols file becomes an asset, in its tier's group."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from assets_pipeline.config.registry import load_registry
from assets_pipeline_tests.conftest import symbol_entry as entry


def test_adding_a_symbol_is_one_entry_and_it_becomes_an_asset(tmp_path):
    from assets_pipeline.definitions import build_definitions

    document = yaml.safe_load(Path(load_registry().source).read_text())
    document["symbols"].append(
        entry(symbol="NZDUSD", polygon_ticker="C:NZDUSD", tier="low", base_asset="NZD")
    )
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump(document))
    defs = build_definitions(load_registry(path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "quotes/NZDUSD" in keys and len(keys) == 10
    key = dg.AssetKey(["quotes", "NZDUSD"])
    assert defs.resolve_assets_def(key).specs_by_key[key].group_name == "low"
