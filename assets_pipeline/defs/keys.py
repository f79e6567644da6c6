"""The names the Dagster layer gives things: asset keys, output names, IO manager and checks."""

from __future__ import annotations

import re

import dagster as dg

QUOTES_PREFIX = "quotes"
QUOTE_IO_MANAGER_KEY = "quote_io_manager"
QUALITY_CHECK = "quote_quality"


def quote_asset_key(symbol: str) -> dg.AssetKey:
    return dg.AssetKey([QUOTES_PREFIX, symbol])


def output_name(symbol: str) -> str:
    """A Dagster-safe name for a symbol's output (`BRK.B` -> `BRK_2e_B`)."""
    return re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", symbol)
