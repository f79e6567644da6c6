"""What a source of prices promises a refresh: which symbols it serves and as which instrument,
how current its data is on the configured account, how many instruments one call takes, and its
quotes and day bars, each request paid from its own budget before it is sent. Errors are the
vendor-neutral ones of `http/errors.py`: retryable or permanent, never carrying a secret."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.polygon.parsing import Bar
from assets_pipeline.rules.quotes import Quote, Timeframe


@runtime_checkable
class Provider(Protocol):
    """One source of prices. `name` is its row in `data_sources.api_providers` and the
    `provider` every quote, sync status, history row and event it served carries."""

    name: str
    #: How current its prices are on the configured account (live, delayed or end of day).
    timeframe: Timeframe
    #: The most instruments one quotes request takes.
    tickers_per_call: int

    def instrument(self, spec: SymbolSpec) -> str | None:
        """The provider's name for the symbol (`XBTUSD`, `EUR_USD`), or None: not served."""
        ...

    def fetch_quotes(self, instruments: Sequence[str]) -> dict[str, Quote | Exception]:
        """Each instrument's quote, or the error that stopped it; one failure never stops
        another. As few requests as `tickers_per_call` allows, each paid from the budget."""
        ...

    def fetch_day_bars(self, instrument: str, first: dt.date, last: dt.date) -> list[Bar]:
        """The instrument's day bars from `first` to `last` (UTC days), oldest first."""
        ...

    def close(self) -> None:
        """Release what the provider holds (connections); it is not used again."""
        ...
