"""Polygon as one `Provider`: the existing `PolygonClient` behind the provider contract. Quotes
go through the client's own refresh path (`iter_fetch`: batches, the plan learnt from 403s, day
bars where snapshots are refused); day bars through its range endpoint (`polygon/ranges.py`).
The refresh still drives the client itself: it moves onto this contract with the fallback."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.http.errors import TickerNotFound
from assets_pipeline.polygon.client import V3_MAX_TICKERS, FetchResult, PolygonClient
from assets_pipeline.polygon.parsing import Bar
from assets_pipeline.polygon.ranges import range_bars
from assets_pipeline.rules.plans import LearntPlan, Plan, SnapshotMode
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, Timeframe
from assets_pipeline.rules.taxonomy import AssetType, Tier

DAY_SECONDS = 86_400


class PolygonProvider:
    """Polygon's snapshots and bars within the client's budget (the `Provider` protocol)."""

    name = ProviderName.POLYGON

    def __init__(self, client: PolygonClient, learnt: LearntPlan | None = None) -> None:
        self.client = client
        #: The plan as configured or learnt (`PolygonResource.learnt()`); None: the client's own.
        self.learnt = learnt or LearntPlan(client.plan.value, SnapshotMode.BATCH.value)

    @property
    def mode(self) -> SnapshotMode:
        return SnapshotMode.parse(self.learnt.mode, "the learnt snapshot mode")

    @property
    def timeframe(self) -> Timeframe:
        """End of day on a plan without snapshots (free, or every market learnt refused);
        else real time (a delayed plan's snapshots say so of themselves)."""
        no_snapshots = set(self.learnt.bars) >= set(AssetType)
        if Plan.parse(self.learnt.plan, "the learnt plan") is Plan.FREE or no_snapshots:
            return Timeframe.END_OF_DAY
        return Timeframe.REAL_TIME

    @property
    def tickers_per_call(self) -> int:
        """The batch size: one `/v3/snapshot` call takes 250 tickers; per ticker, one."""
        return V3_MAX_TICKERS if self.mode is SnapshotMode.BATCH else 1

    def instrument(self, spec: SymbolSpec) -> str | None:
        return spec.polygon_ticker

    def fetch_quotes(self, instruments: Sequence[str]) -> dict[str, Quote | Exception]:
        """Each ticker's validated quote or its error, through the client's refresh path."""
        out: dict[str, Quote | Exception] = {}
        specs = []
        for ticker in dict.fromkeys(instruments):
            kind = AssetType.of_ticker(ticker)
            if kind is None:
                out[ticker] = TickerNotFound(f"{ticker} names no Polygon market", ticker=ticker)
            else:
                specs.append(_stand_in(ticker, kind))
        for spec, answer in self.client.iter_fetch(specs, self.mode, FetchResult()):
            is_quote = isinstance(answer, Quote)
            out[spec.symbol] = dataclasses.replace(answer, symbol="") if is_quote else answer
        return out

    def fetch_day_bars(self, instrument: str, first: dt.date, last: dt.date) -> list[Bar]:
        return range_bars(self.client, instrument, first, last, DAY_SECONDS)

    def close(self) -> None:
        self.client.close()


def _stand_in(ticker: str, kind: AssetType) -> SymbolSpec:
    """A symbol named by its ticker, for the client's refresh path (which fetches symbols)."""
    return SymbolSpec(
        symbol=ticker,
        polygon_ticker=ticker,
        asset_type=kind,
        tier=Tier.CRITICAL,
        name=ticker,
        base_asset="",
        quote_asset="",
        price_precision=None,  # type: ignore[arg-type]  # the vendor's digits, as Kraken's
    )
