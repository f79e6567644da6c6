"""Hostile symbols files are refused quickly, naming the file, the place and the problem, and no
error quotes more than a short excerpt of what it found."""

from __future__ import annotations

import pytest
import yaml

from assets_pipeline.config.registry import RegistryError, load_registry
from assets_pipeline_tests.conftest import symbol_entry


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level refers nine times to the one before."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    body = yaml.safe_dump({"symbols": [symbol_entry()]})
    return "\n".join(lines) + "\n" + body.replace("name: Euro / US Dollar", f"name: *a{levels}")


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "symbols.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 2: an alias (*a0)")
    assert len(message) < 300


def test_a_huge_value_is_quoted_as_a_short_excerpt(tmp_path):
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump({"symbols": [symbol_entry(symbol="X" * 100_000)]}))
    with pytest.raises(RegistryError, match=r"symbols\[0\].*field 'symbol'") as info:
        load_registry(path)
    assert len(str(info.value)) < 400  # not the 100,000 characters


def test_a_file_without_a_critical_symbol_loads_and_builds_its_definitions(tmp_path):
    from assets_pipeline.location import build_definitions

    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump({"symbols": [symbol_entry(tier="high")]}))
    defs = build_definitions(load_registry(path))
    names = {s.name for s in defs.get_repository_def().sensor_defs}
    assert "refresh_at_market_open" in names and "refresh_queue_drain" in names


XAUUSD_TWICE_TIERED = """\
symbols:
  - symbol: XAUUSD
    polygon_ticker: C:XAUUSD
    asset_type: forex
    tier: critical
    name: Gold / US Dollar
    tier: low
"""


@pytest.mark.parametrize(
    "text, message",
    [
        # issue 17: the last `tier:` won, and XAUUSD was silently demoted to low
        (XAUUSD_TWICE_TIERED, "line 7: the key 'tier' is written twice in one mapping"),
        ("symbols: []\nsymbols: []\n", "line 2: the key 'symbols' is written twice"),
        (  # anywhere in the document, however deep
            "symbols: []\ntiers:\n  low:\n    every: 1h\n    every: 2h\n",
            "line 5: the key 'every' is written twice",
        ),
        ("{a: 1, b: 2, a: 3}\n", "line 1: the key 'a' is written twice"),
        ("symbols: []\n1: x\n0x1: y\n", "line 3: the key 1 is written twice"),
    ],
)
def test_a_key_written_twice_is_refused_naming_it_and_its_lines(tmp_path, text, message):
    path = tmp_path / "symbols.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "data, where",
    [
        (b"symbols:\n  - symbol: \xff\n", "line 2, column 13 (byte offset 21): not UTF-8"),
        (b"\xc3(symbols: []\n", "line 1, column 1 (byte offset 0): not UTF-8"),
        # Latin-1, as a Windows editor may save it
        ("symbols: []\n# caf\u00e9\n".encode("latin-1"), "line 2, column 6 (byte offset 17)"),
    ],
)
def test_a_file_not_in_utf8_is_refused_naming_the_line_and_byte(tmp_path, data, where):
    path = tmp_path / "symbols.yaml"
    path.write_bytes(data)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert str(info.value).startswith(f"{path}: {where}")


def test_the_same_key_in_different_mappings_is_no_duplicate(tmp_path):
    path = tmp_path / "symbols.yaml"
    path.write_text(yaml.safe_dump({"symbols": [symbol_entry(), symbol_entry(symbol="GBPUSD")]}))
    assert [s.symbol for s in load_registry(path)] == ["EURUSD", "GBPUSD"]
