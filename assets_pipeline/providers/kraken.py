"""The Kraken provider: live crypto quotes and day bars from Kraken's public REST data, no key.

Quotes: a `Time` call, then one `Ticker` call per `tickers_per_call` pairs, each quote timed by
Kraken's clock (the ticker has none). Day bars: one `OHLC` call (1440 minutes), open days never
returned. Each request is paid from the budget before it is sent (`http/paid.py`); a retry pays
again; a rate limit (a 429, or in a 200) pauses the budget. Why: docs/providers.md."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.http.errors import MalformedResponse, PolygonError, TickerNotFound
from assets_pipeline.http.transport import api_target
from assets_pipeline.polygon.parsing import Bar, load_json
from assets_pipeline.providers import kraken_wire as wire
from assets_pipeline.providers.keyless import HEADERS, KeylessProvider
from assets_pipeline.rules import clock
from assets_pipeline.rules.providers import BASE_URLS, ProviderName
from assets_pipeline.rules.quotes import (
    DEFAULT_MAX_FUTURE_SKEW,
    Quote,
    QuoteRejected,
    validate_quote,
)
from assets_pipeline.rules.taxonomy import AssetType

KRAKEN_BASE_URL = BASE_URLS[ProviderName.KRAKEN]
#: Every public market-data path starts so; nothing else is ever asked.
PUBLIC_PREFIX = ("/0/public/",)
#: Pairs per `Ticker` call: the vendor documents no cap (a comma-separated list); this keeps the
#: URL short and one unknown pair's cost (each pair asked again alone) small.
TICKER_PAIRS_PER_CALL = 20
#: Kraken's clock may lag ours by this much (a cached `Time` answer, the request's own trip);
#: a "now" older than that is not now, and no quote is timed by it.
MAX_CLOCK_LAG = dt.timedelta(seconds=120)
DAY_MINUTES = 1440

log = logging.getLogger(__name__)


class KrakenProvider(KeylessProvider):
    """Kraken's public market data within the budget it is given (the `Provider` protocol)."""

    vendor = "Kraken"

    name = ProviderName.KRAKEN
    tickers_per_call = TICKER_PAIRS_PER_CALL

    default_base_url = KRAKEN_BASE_URL

    def instrument(self, spec: SymbolSpec) -> str | None:
        """Kraken's altname for a crypto symbol (BTCUSD -> `XBTUSD`, ETHUSDT -> `ETHUSDT`), from
        its base and quote assets; None for anything that is not crypto."""
        if spec.asset_type is not AssetType.CRYPTO:
            return None
        return wire.pair_for(spec.base_asset, spec.quote_asset)

    # --- quotes ------------------------------------------------------------------------------

    def fetch_quotes(self, instruments: Sequence[str]) -> dict[str, Quote | Exception]:
        """Each pair's validated quote, or the error that stopped it: per chunk of
        `tickers_per_call`, Kraken's clock, then one `Ticker` call for the chunk."""
        pairs = wire.unique(instruments)
        out: dict[str, Quote | Exception] = {}
        for start in range(0, len(pairs), self.tickers_per_call):
            chunk = pairs[start : start + self.tickers_per_call]
            try:
                data_time = self.server_time()
                answers = self._ticker(chunk, data_time)
            except (PolygonError, BudgetError) as exc:
                answers = {pair: exc for pair in chunk}
            out.update({pair: _checked(answers[pair]) for pair in chunk})
        return out

    def server_time(self) -> dt.datetime:
        """Kraken's clock, asked now: what every quote of the next `Ticker` call is timed by.
        Ahead of ours by more than the allowed skew, or behind by more than `MAX_CLOCK_LAG`, it
        is refused (`MalformedResponse`), so no quote ever carries it."""
        moment = wire.server_time(self.get_json("/0/public/Time"))
        now = clock.utcnow()
        if moment > now + DEFAULT_MAX_FUTURE_SKEW or moment < now - MAX_CLOCK_LAG:
            raise MalformedResponse(
                f"Kraken's clock reads {moment:%Y-%m-%dT%H:%M:%SZ}, ours {now:%Y-%m-%dT%H:%M:%SZ}:"
                " not the time of its answers"
            )
        return moment

    def _ticker(self, pairs: list[str], data_time: dt.datetime) -> dict[str, Quote | Exception]:
        """One `Ticker` call for `pairs`. Kraken refuses a whole list for one unknown pair, so
        then each pair is asked alone (each paid), and one unknown pair stops only itself."""
        try:
            alone = pairs[0] if len(pairs) == 1 else None
            body = self.get_json("/0/public/Ticker", {"pair": ",".join(pairs)}, alone)
        except TickerNotFound:
            if len(pairs) == 1:
                raise
            return {pair: self._alone(pair, data_time) for pair in pairs}
        return wire.ticker_answers(body, pairs, data_time)

    def _alone(self, pair: str, data_time: dt.datetime) -> Quote | Exception:
        try:
            return self._ticker([pair], data_time)[pair]
        except (PolygonError, BudgetError) as exc:
            exc_with_pair(exc, pair)
            return exc

    # --- day bars ----------------------------------------------------------------------------

    def fetch_day_bars(self, instrument: str, first: dt.date, last: dt.date) -> list[Bar]:
        """The pair's closed UTC days from `first` to `last`, oldest first, in one `OHLC` call.
        Today's candle is open (Kraken lists it last, uncommitted) and is never returned; Kraken
        keeps 720 candles, so days older than that are absent, not an error."""
        newest = min(last, clock.today() - dt.timedelta(days=1))
        if first > newest:
            return []
        start = dt.datetime.combine(first, dt.time(), dt.UTC)
        since = int(start.timestamp()) - wire.DAY_SECONDS  # the candle before `first` starts then
        params = {"pair": instrument, "interval": DAY_MINUTES, "since": since}
        body = self.get_json("/0/public/OHLC", params, instrument)
        bars = wire.ohlc_bars(body, instrument, DAY_MINUTES * 60)
        return [bar for bar in bars if first <= bar.start.date() <= newest]

    # --- one request -------------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None, pair: str | None = None):  # noqa: ANN201
        """GET a public path and return its body, once Kraken's `error` list is empty; what is
        retryable (a rate limit, the service, the network, a broken body) is tried again, each
        attempt paid from the budget; a rate limit first pauses every caller of the budget."""
        target = api_target(path, params, PUBLIC_PREFIX)
        return self._retrying(path, pair, lambda: self._attempt(target, pair))

    def _attempt(self, target: str, pair: str | None) -> Any:
        """One paid request (`_paid_get`), its answer read as Kraken's."""
        answer = self._paid_get(target, pair, HEADERS, self.timeouts)
        if answer.status != 200:
            raise wire.http_error(answer.status, answer.body, pair)
        try:
            body = load_json(answer.body, unique_keys=True)
        except MalformedResponse as exc:
            exc.ticker = pair
            raise
        wire.result_of(body, pair)  # an error inside the 200 is raised here, to be retried or not
        return body


def exc_with_pair(exc: Exception, pair: str) -> None:
    """Name the pair an error is about, when it is one of ours."""
    if isinstance(exc, PolygonError):
        exc.ticker = pair


def _checked(answer: Quote | Exception) -> Quote | Exception:
    """A quote that passes the hard rules, as fetched now under the public plan; or the reason
    it does not (`QuoteRejected`), or the error it already was."""
    if not isinstance(answer, Quote):
        return answer
    now = clock.utcnow()
    try:
        return validate_quote(answer, now).fetched(now, wire.PLAN)
    except QuoteRejected as exc:
        return exc
