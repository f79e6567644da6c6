"""The Bitstamp provider: live crypto quotes and day bars from Bitstamp's public REST v2, no key.

Quotes: one `ticker/{pair}/` call per pair, each quote timed by the ticker's own `timestamp`. Day
bars: `ohlc/{pair}/` at a step of a day, up to 1000 candles a call, the running day never returned.
Each request is paid from the budget before it is sent (`http/paid.py`); a retry pays again; a
rate limit pauses the budget. Why Bitstamp, as the second crypto source: docs/providers.md."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.http.errors import MalformedResponse, PolygonError, RetryableError
from assets_pipeline.http.transport import api_target
from assets_pipeline.polygon.parsing import Bar, load_json
from assets_pipeline.providers import bitstamp_wire as wire
from assets_pipeline.providers.keyless import HEADERS, KeylessProvider
from assets_pipeline.rules import clock
from assets_pipeline.rules.providers import BASE_URLS, ProviderName
from assets_pipeline.rules.quotes import Quote, QuoteRejected, validate_quote
from assets_pipeline.rules.taxonomy import AssetType

BITSTAMP_BASE_URL = BASE_URLS[ProviderName.BITSTAMP]
#: Every public market-data path starts so; nothing else is ever asked.
PUBLIC_PREFIX = ("/api/v2/",)
#: The most candles one `ohlc` call returns (Bitstamp's documented maximum of `limit`).
MAX_CANDLES = 1000

log = logging.getLogger(__name__)


class BitstampProvider(KeylessProvider):
    """Bitstamp's public market data within the budget it is given (the `Provider` protocol)."""

    vendor = "Bitstamp"

    name = ProviderName.BITSTAMP
    #: `ticker/{pair}/` takes one pair (the all-pairs `ticker/` answer is ~100 times larger).
    tickers_per_call = 1

    default_base_url = BITSTAMP_BASE_URL

    def instrument(self, spec: SymbolSpec) -> str | None:
        """Bitstamp's market symbol for a crypto symbol (BTCUSD -> `btcusd`, ETHUSDT -> `ethusdt`),
        from its base and quote assets; None for anything that is not crypto. A pair Bitstamp
        does not list is asked once and answered 404: `TickerNotFound`, for that pair alone."""
        if spec.asset_type is not AssetType.CRYPTO:
            return None
        return wire.pair_for(spec.base_asset, spec.quote_asset)

    # --- quotes ------------------------------------------------------------------------------

    def fetch_quotes(self, instruments: Sequence[str]) -> dict[str, Quote | Exception]:
        """Each pair's validated quote, or the error that stopped it: one `ticker` call a pair, so
        one pair's failure never touches another's answer."""
        out: dict[str, Quote | Exception] = {}
        down: Exception | None = None  # an outage: the pairs after it are not asked
        for pair in dict.fromkeys(instruments):
            if down is not None:
                why = f"{down.__class__.__name__}: {down}"
                out[pair] = RetryableError(
                    f"not asked: Bitstamp failed before ({why})", ticker=pair
                )
                continue
            try:
                out[pair] = _checked(wire.ticker_quote(pair, self._get_pair(pair, "ticker")))
            except (PolygonError, BudgetError, QuoteRejected) as exc:
                if isinstance(exc, PolygonError):
                    exc.ticker = pair
                out[pair] = exc
                if _an_outage(exc):
                    down = exc
        return out

    def _get_pair(self, pair: str, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        if not wire.is_pair(pair):
            raise MalformedResponse(f"not a Bitstamp pair: {pair[:40]!r}", ticker=pair)
        return self.get_json(f"/api/v2/{endpoint}/{pair}/", params, pair)

    # --- day bars ----------------------------------------------------------------------------

    def fetch_day_bars(self, instrument: str, first: dt.date, last: dt.date) -> list[Bar]:
        """The pair's closed UTC days from `first` to `last`, oldest first, in one `ohlc` call per
        1000 days. Today's candle is running (Bitstamp lists it) and is never returned; a day
        without a candle is absent, not an error."""
        newest = min(last, clock.today() - dt.timedelta(days=1))
        bars: list[Bar] = []
        start = first
        while start <= newest:
            count = min((newest - start).days + 1, MAX_CANDLES)
            since = int(dt.datetime.combine(start, dt.time(), dt.UTC).timestamp())
            params = {"step": wire.DAY_SECONDS, "limit": count, "start": since}
            body = self._get_pair(instrument, "ohlc", params)
            window_end = start + dt.timedelta(days=count - 1)
            bars += [
                bar
                for bar in wire.ohlc_bars(body, instrument, wire.DAY_SECONDS)
                if start <= bar.start.date() <= window_end
            ]
            start = window_end + dt.timedelta(days=1)
        return bars

    # --- one request -------------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None, pair: str | None = None):  # noqa: ANN201
        """GET a public path and return its body, once it holds no error; what is retryable (a
        rate limit, the service, the network, a broken body) is tried again, each attempt paid
        from the budget; a rate limit first pauses every caller of the budget."""
        target = api_target(path, params, PUBLIC_PREFIX)
        return self._retrying(path, pair, lambda: self._attempt(target, pair))

    def _attempt(self, target: str, pair: str | None) -> Any:
        """One paid request (`_paid_get`), its answer read as Bitstamp's."""
        answer = self._paid_get(target, pair, HEADERS, self.timeouts)
        if answer.status != 200:
            raise wire.http_error(answer.status, answer.body, pair)
        try:
            body = load_json(answer.body, unique_keys=True)
        except MalformedResponse as exc:
            exc.ticker = pair
            raise
        error = wire.error_in(body, pair)  # an error inside the 200: retried or not, as it says
        if error is not None:
            raise error
        return body


def _an_outage(exc: Exception) -> bool:
    """Bitstamp itself failed (retries spent, a rate limit, no budget slot), not one pair's
    answer: asking the next pair would only spend its retries too."""
    return isinstance(exc, BudgetError) or (
        isinstance(exc, RetryableError) and not isinstance(exc, MalformedResponse)
    )


def _checked(quote: Quote) -> Quote:
    """A quote that passes the hard rules (not crossed, not in the future beyond the skew, not
    absurdly old), as fetched now under the public plan; else `QuoteRejected`."""
    now = clock.utcnow()
    return validate_quote(quote, now).fetched(now, wire.PLAN)
