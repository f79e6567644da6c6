"""The names the Dagster layer gives things: asset keys, output names, IO manager and checks."""

from __future__ import annotations

import dagster as dg

QUOTES_PREFIX = "quotes"
QUOTE_IO_MANAGER_KEY = "quote_io_manager"
QUALITY_CHECK = "quote_quality"


def quote_asset_key(symbol: str) -> dg.AssetKey:
    """`quotes/<SYMBOL>` (about a microsecond to make: not worth a cache)."""
    return dg.AssetKey([QUOTES_PREFIX, symbol])


def output_name(symbol: str) -> str:
    """The name Dagster gives a symbol's output (`BRK.B` -> `quotes__BRK_B`): the multi-asset is
    built from specs, which name each output after its key. The registry refuses two symbols
    whose names would meet here (`BRK.B` and `BRK_B`)."""
    return quote_asset_key(symbol).to_python_identifier()


def step_name(family: str, n: int) -> str:
    """The name of a family's `n`th multi-asset of up to 250 symbols (from 0): `quotes`, then
    `quotes_2`, `quotes_3`, ...; the same for `history`."""
    return family if n == 0 else f"{family}_{n + 1}"
