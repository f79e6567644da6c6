"""A Kraken public REST look-alike on loopback (`Time`, `Ticker`, `OHLC`), to test the provider
over real HTTP. It speaks the recorded wire format (assets_pipeline_tests/data/kraken/): errors in
a 200, result keys as Kraken names pairs (`XXBTZUSD`), the open candle last. Prices come from
`market`; `KrakenFault`s per pair, per path or for a number of requests. Standard library only;
`python -m assets_pipeline.simulator --provider kraken` serves it in the foreground."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from assets_pipeline.simulator import market
from assets_pipeline.simulator.loopback import LoopbackSimulator, Reply, json_reply
from assets_pipeline.simulator.market import Clock

#: The intervals (minutes) Kraken's OHLC documents; any other is `EGeneral:Invalid arguments`.
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
#: Kraken keeps this many candles per pair and interval (the open one included).
OHLC_MAX_ENTRIES = 720
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
#: What each error fault answers inside a 200, as Kraken words it.
ERROR_FAULTS = {
    "rate_limited": "EAPI:Rate limit exceeded",
    "too_many_requests": "EGeneral:Too many requests",
    "unavailable": "EService:Unavailable",
    "invalid_arguments": INVALID_ARGUMENTS,
}
#: Faults that replace the whole answer; faults on one pair's data; faults on the `Time` answer.
REQUEST_FAULTS = frozenset(
    {
        *ERROR_FAULTS,
        "http_429",
        "http_502",
        "timeout",
        "malformed",
        "redirect",
        "bloated",
        "trickle",
    }
)
PAIR_FAULTS = frozenset({"crossed", "negative_price", "wrong_pair", "unknown_pair"})
TIME_FAULTS = frozenset({"future_time", "stale_time"})
#: How far a lying `Time` answer is off, and how large a bloated body is.
TIME_LIE_SECONDS = 3600
BLOAT_BYTES = 25_000_000
_HTML_PAGE = "<html><head><title>{code} {reason}</title></head><body>{reason}</body></html>"


@dataclass(frozen=True)
class Pair:
    """One market as Kraken lists it: asked for by `altname` (or by `key`), answered under `key`."""

    altname: str
    key: str
    base: str
    quote: str

    @property
    def usd(self) -> tuple[str, float]:
        """The market ticker that prices it, and the dollars one unit of its quote is worth."""
        priced = market.crypto_pair(self.base, self.quote)
        assert priced is not None, self
        return priced


#: The pairs served: legacy ones under their X/Z names (as the vendor's examples answer XBTUSD),
#: newer ones under their altname (as the recorded XBTUSDT answer shows).
PAIRS = (
    Pair("XBTUSD", "XXBTZUSD", "BTC", "USD"),
    Pair("ETHUSD", "XETHZUSD", "ETH", "USD"),
    Pair("XBTUSDT", "XBTUSDT", "BTC", "USDT"),
    Pair("ETHUSDT", "ETHUSDT", "ETH", "USDT"),
    Pair("SOLUSD", "SOLUSD", "SOL", "USD"),
)


def find_pair(name: str) -> Pair | None:
    """The pair asked for by its altname or its key; None if Kraken would not know it."""
    return next((p for p in PAIRS if name in (p.altname, p.key)), None)


@dataclass(frozen=True)
class KrakenFault:
    """One injected misbehaviour: on every request (`pair` None) or those naming `pair` (an
    altname), optionally only under `path_prefix`, until cleared (`count` None) or for `count`
    matching requests. `delay` is how long a `timeout` fault waits before answering."""

    kind: str
    pair: str | None = None
    count: int | None = None
    path_prefix: str | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_FAULTS | PAIR_FAULTS | TIME_FAULTS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be at least 1, or None for forever")


@dataclass(frozen=True)
class KrakenRequest:
    """One logged request: when it arrived (the simulator's clock), its path, query and status."""

    at: float
    path: str
    query: dict[str, str]
    status: int


@dataclass
class _Call:
    """What a renderer needs: the time, the asked pairs' names, and the faults that apply."""

    now: float
    query: dict[str, str]
    faults: list[KrakenFault] = field(default_factory=list)

    def has(self, kind: str, pair: Pair | None = None) -> bool:
        return any(
            f.kind == kind and (f.pair is None or (pair is not None and f.pair == pair.altname))
            for f in self.faults
        )


def _json(payload: Any, status: int = 200) -> Reply:
    return json_reply(status, payload)


def _errors(*messages: str) -> Reply:
    """A refused request: Kraken answers 200 with only `error` (docs: Spot REST introduction)."""
    return _json({"error": list(messages)})


def _asked(query: dict[str, str]) -> list[str]:
    return [name for name in query.get("pair", "").split(",") if name]


def _rfc1123(now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return f"{moment:%a}, {moment.day:2d} {moment:%b %y %H:%M:%S} +0000"


def _render_time(call: _Call) -> Reply:
    now = call.now
    if call.has("future_time"):
        now += TIME_LIE_SECONDS
    if call.has("stale_time"):
        now -= TIME_LIE_SECONDS
    return _json({"error": [], "result": {"unixtime": int(now), "rfc1123": _rfc1123(now)}})


def _known_pairs(call: _Call) -> list[Pair] | None:
    """The asked pairs (every pair when none is named), or None if any is unknown: Kraken fails
    the whole request then, not only that pair."""
    names = _asked(call.query) or [p.altname for p in PAIRS]
    pairs = [find_pair(name) for name in names]
    if any(p is None or call.has("unknown_pair", p) for p in pairs):
        return None
    return [p for p in pairs if p is not None]


def _price(value: float) -> str:
    return f"{value:.5f}"


def _ticker_item(call: _Call, pair: Pair) -> dict[str, Any]:
    """Kraken's ticker object for `pair`: best ask and bid, last trade, today's (since 00:00 UTC)
    and the last 24 hours' volume, VWAP, trades, low and high, and today's open."""
    ticker, usd = pair.usd
    now = call.now
    quote = market.quote(ticker, now)
    bid, ask = quote.bid / usd, quote.ask / usd
    if call.has("crossed", pair):
        bid, ask = ask * 1.001, bid
    last = market.price(ticker, now) / usd
    if call.has("negative_price", pair):
        last = -last
    today = market.day_bar(ticker, now)
    day = market.bar(ticker, now - market.DAY_SECONDS, now, now)
    return {
        "a": [_price(ask), "1", "1.000"],
        "b": [_price(bid), "1", "1.000"],
        "c": [_price(last), f"{market.trade_size(ticker, now):.8f}"],
        "v": [f"{today.volume:.8f}", f"{day.volume:.8f}"],
        "p": [_price(today.vwap / usd), _price(day.vwap / usd)],
        "t": [today.transactions, day.transactions],
        "l": [_price(today.low / usd), _price(day.low / usd)],
        "h": [_price(today.high / usd), _price(day.high / usd)],
        "o": _price(today.open / usd),
    }


def _answer_key(call: _Call, pair: Pair) -> str:
    """The key `pair` is answered under: its own, or another pair's under a `wrong_pair` fault."""
    if call.has("wrong_pair", pair):
        return next(
            p.key for p in PAIRS if p.key != pair.key and p.altname not in _asked(call.query)
        )
    return pair.key


def _render_ticker(call: _Call) -> Reply:
    pairs = _known_pairs(call)
    if pairs is None:
        return _errors(UNKNOWN_PAIR)
    result = {_answer_key(call, pair): _ticker_item(call, pair) for pair in pairs}
    return _json({"error": [], "result": result})


def _candle(pair: Pair, start: float, step: int, now: float) -> list[Any]:
    """`[time, open, high, low, close, vwap, volume, count]`, prices as strings, as Kraken sends."""
    ticker, usd = pair.usd
    bar = market.bar(ticker, start, start + step, now)
    prices = (bar.open, bar.high, bar.low, bar.close, bar.vwap)
    known = market.instrument(ticker)
    decimals = known.decimals if known is not None else 2
    return [
        int(start),
        *(f"{value / usd:.{decimals}f}" for value in prices),
        f"{bar.volume:.8f}",
        bar.transactions,
    ]


def _render_ohlc(call: _Call) -> Reply:
    """The pair's candles since `since` (at most the last 720), the open one always last, and
    `last`: the start of the newest committed candle (the `since` for the next poll)."""
    names = _asked(call.query)
    interval = call.query.get("interval", "1")
    if len(names) != 1 or not interval.isdigit() or int(interval) not in OHLC_INTERVALS:
        return _errors(INVALID_ARGUMENTS)
    pair = find_pair(names[0])
    if pair is None or call.has("unknown_pair", pair):
        return _errors(UNKNOWN_PAIR)
    step = int(interval) * 60
    current = int(call.now - call.now % step)
    first = current - (OHLC_MAX_ENTRIES - 1) * step
    since = call.query.get("since", "")
    if since.isdigit():
        first = max(first, int(since) - int(since) % step)
    candles = [_candle(pair, s, step, call.now) for s in range(first, current + 1, step)]
    result = {_answer_key(call, pair): candles, "last": current - step}
    return _json({"error": [], "result": result})


#: The endpoints served, by path.
ROUTES: dict[str, Callable[[_Call], Reply]] = {
    "/0/public/Time": _render_time,
    "/0/public/Ticker": _render_ticker,
    "/0/public/OHLC": _render_ohlc,
}


def _request_fault_reply(kinds: set[str]) -> Reply | None:
    """The answer a request-level fault puts in place of the endpoint's, if any."""
    for kind, message in ERROR_FAULTS.items():
        if kind in kinds:
            return _errors(message)
    if "http_429" in kinds:
        return Reply(
            429, _HTML_PAGE.format(code=429, reason="Too Many Requests").encode(), "text/html"
        )
    if "http_502" in kinds:
        return Reply(502, _HTML_PAGE.format(code=502, reason="Bad Gateway").encode(), "text/html")
    if "redirect" in kinds:
        return Reply(302, b"", headers={"Location": "https://elsewhere.example/0/public/Ticker"})
    if "trickle" in kinds:
        return Reply(200, b" " * 1_000_000, trickle=True)
    return None


class KrakenSimulator(LoopbackSimulator[KrakenFault, KrakenRequest]):
    """Kraken's public REST market data on loopback, with a request log and injectable faults."""

    thread_name = "kraken-simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Clock = time.time) -> None:
        """Configure; nothing listens until `start()`. `clock` gives the simulator's now."""
        super().__init__(host, port, clock)

    def _faults_for(self, path: str, names: list[str]) -> list[KrakenFault]:
        """The faults matching this request; counted ones are spent by it."""
        return self._take_faults(
            lambda fault: (
                (fault.path_prefix is None or path.startswith(fault.path_prefix))
                and (fault.pair is None or fault.pair in names)
            )
        )

    def respond(self, path: str, query: dict[str, str]) -> Reply:
        """The answer to one GET, faults applied, logged."""
        now = self.clock()
        faults = self._faults_for(path, _asked(query))
        kinds = {f.kind for f in faults}
        route = ROUTES.get(path)
        reply = _request_fault_reply(kinds)
        if reply is None and route is None:
            reply = Reply(
                404, _HTML_PAGE.format(code=404, reason="Not Found").encode(), "text/html"
            )
        if reply is None:
            reply = route(_Call(now, query, faults))  # type: ignore[misc]
            if "malformed" in kinds:
                reply.body = reply.body[: max(1, len(reply.body) // 2)]
            if "bloated" in kinds:
                reply.body = reply.body[:-1] + b" " * BLOAT_BYTES + reply.body[-1:]
        reply.delay = max((f.delay for f in faults if f.kind == "timeout"), default=0.0)
        self._record(KrakenRequest(now, path, dict(query), reply.status))
        return reply

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one GET (the handler's) and write the reply."""
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        self._send(handler, self.respond(split.path, query))
