"""A history backfill: fetch each symbol's range, store its bars, tell each day apart.

`Backfill.days_of` writes each symbol's bars to `trading.price_bars` as they arrive and yields its
days, each with its own bars; a symbol that cannot be fetched is in `failed`, its days left
missing. It writes nothing else: never the live quote, its sync status or events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.history.days import DayHistory, by_day
from assets_pipeline.history.fetch import fetch_history
from assets_pipeline.history.store import write_bars
from assets_pipeline.polygon.client import PolygonClient

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass
class Backfill:
    """One run's backfill over `days` (UTC, past days only), in bars of `bar_seconds`."""

    client: PolygonClient
    engine: sa.Engine
    days: Sequence[dt.date]
    bar_seconds: int
    run_id: str | None = None
    #: The symbols whose bars could not be fetched, with why (redacted): their days stay missing.
    failed: dict[str, str] = field(default_factory=dict)
    #: Bars written by the whole run, over every symbol and day.
    bars: int = 0
    symbols: int = 0

    def days_of(self, specs: Sequence[SymbolSpec]) -> Iterator[list[DayHistory]]:
        """Each fetched symbol's days, oldest first, once its bars are stored."""
        for spec, answer in fetch_history(self.client, specs, self.days, self.bar_seconds):
            if isinstance(answer, Exception):
                self.failed[spec.symbol] = self.client.redact(str(answer))
                continue
            self.bars += write_bars(self.engine, answer, run_id=self.run_id)
            self.symbols += 1
            yield by_day(spec.symbol, answer, self.days, self.bar_seconds)

    def totals(self) -> str:
        """The run's totals, for its log line and run tag (never a partition's metadata)."""
        return (
            f"{min(self.days)} to {max(self.days)}: {len(self.days)} day(s),"
            f" {self.symbols} of {self.symbols + len(self.failed)} symbol(s), {self.bars} bar(s),"
            f" {self.client.calls} API call(s), {self.client.budget.waits} budget wait(s)"
        )
