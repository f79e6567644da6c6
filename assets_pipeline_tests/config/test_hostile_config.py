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
