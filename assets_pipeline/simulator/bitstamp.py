"""A Bitstamp public REST v2 look-alike on loopback (`ticker/{pair}/`, `ohlc/{pair}/`), to test the
provider over real HTTP. It speaks the recorded wire format (assets_pipeline_tests/data/bitstamp/):
flat string-valued tickers timed by `timestamp`, candles under `data.ohlc`, a 404 for an unknown
pair. Prices come from `market`; `BitstampFault`s per pair or for a number of requests. Standard
library only; `python -m assets_pipeline.simulator --provider bitstamp` serves it in front."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from assets_pipeline.simulator import market
from assets_pipeline.simulator.loopback import LoopbackSimulator, Reply, json_reply
from assets_pipeline.simulator.market import Clock

#: The steps (seconds) Bitstamp's `ohlc` documents; any other is refused as a bad request.
OHLC_STEPS = (60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 259200)
#: The most candles one `ohlc` answer holds (Bitstamp's documented maximum of `limit`).
OHLC_MAX_LIMIT = 1000
#: Faults that replace the whole answer; faults on one pair's ticker.
REQUEST_FAULTS = frozenset(
    {"http_429", "http_5xx", "timeout", "malformed", "redirect", "rate_limited"}
)
PAIR_FAULTS = frozenset({"stale", "future", "crossed", "negative_price", "number_price"})
UNKNOWN_PAIR = "unknown_pair"
#: How far a lying `timestamp` is off: an hour.
TIME_LIE_SECONDS = 3600
_PATH = re.compile(r"/api/v2/(ticker|ohlc)/([a-z0-9]+)/")
_HTML_PAGE = "<html><head><title>{code} {reason}</title></head><body>{reason}</body></html>"

#: The pairs served, by Bitstamp's market symbol: base and quote asset (as its markets list them).
PAIRS = {
    "btcusd": ("BTC", "USD"),
    "ethusd": ("ETH", "USD"),
    "btcusdt": ("BTC", "USDT"),
    "ethusdt": ("ETH", "USDT"),
    "solusd": ("SOL", "USD"),
}


@dataclass(frozen=True)
class BitstampFault:
    """One injected misbehaviour: on every request (`pair` None) or those naming `pair`, until
    cleared (`count` None) or for `count` matching requests; `endpoint` (`ticker`, `ohlc`) limits
    it to one. `delay` is how long a `timeout` fault waits before answering."""

    kind: str
    pair: str | None = None
    count: int | None = None
    endpoint: str | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_FAULTS | PAIR_FAULTS | {UNKNOWN_PAIR}:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be at least 1, or None for forever")


@dataclass(frozen=True)
class BitstampRequest:
    """One logged request: when it arrived (the simulator's clock), its path, query and status."""

    at: float
    path: str
    query: dict[str, str]
    status: int


def _json(payload: Any, status: int = 200) -> Reply:
    return json_reply(status, payload)


def _page(status: int, reason: str) -> Reply:
    return Reply(status, _HTML_PAGE.format(code=status, reason=reason).encode(), "text/html")


def _usd(pair: str) -> tuple[str, float]:
    priced = market.crypto_pair(*PAIRS[pair])
    assert priced is not None, pair
    return priced


def _price(value: float) -> str:
    return f"{value:.2f}"


def _render_ticker(pair: str, now: float, kinds: set[str]) -> Reply:
    """Bitstamp's ticker: last trade, best bid and ask, the day's first price, the last 24 hours'
    high, low, volume and VWAP, all strings, timed by `timestamp` (seconds, a string)."""
    ticker, usd = _usd(pair)
    stamp = now - TIME_LIE_SECONDS if "stale" in kinds else now
    stamp += TIME_LIE_SECONDS if "future" in kinds else 0
    quote = market.quote(ticker, now)
    bid, ask = quote.bid / usd, quote.ask / usd
    if "crossed" in kinds:
        bid, ask = ask * 1.001, bid
    last = market.price(ticker, now) / usd
    today = market.day_bar(ticker, now)
    day = market.bar(ticker, now - market.DAY_SECONDS, now, now)
    item: dict[str, Any] = {
        "timestamp": str(int(stamp)),
        "open": _price(today.open / usd),
        "high": _price(day.high / usd),
        "low": _price(day.low / usd),
        "last": _price(last),
        "volume": f"{day.volume:.8f}",
        "vwap": _price(day.vwap / usd),
        "bid": _price(bid),
        "ask": _price(ask),
        "side": "0",
        "open_24": _price(day.open / usd),
        "percent_change_24": f"{(last / (day.open / usd) - 1) * 100:.2f}",
    }
    if "negative_price" in kinds:
        item["last"] = f"-{item['last']}"
    if "number_price" in kinds:
        item["bid"] = round(bid, 2)  # a JSON number where Bitstamp writes a string
    return _json(item)


def _render_ohlc(pair: str, now: float, query: dict[str, str]) -> Reply:
    """Candles of `step` seconds from `start` (else the last `limit`, ending with the running
    one), at most `limit`, oldest first; the running candle is listed, cut at now."""
    step, limit, start = (query.get(k, "") for k in ("step", "limit", "start"))
    if not step.isdigit() or int(step) not in OHLC_STEPS or not limit.isdigit():
        return _json(
            {"status": "error", "reason": "Invalid step or limit.", "code": "400.001"}, 400
        )
    size, count = int(step), min(int(limit), OHLC_MAX_LIMIT)
    current = int(now - now % size)
    first = int(start) - int(start) % size if start.isdigit() else current - (count - 1) * size
    ticker, usd = _usd(pair)
    rows = []
    for begin in range(first, min(current, first + (count - 1) * size) + 1, size):
        bar = market.bar(ticker, begin, begin + size, now)
        prices = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
        row = {key: f"{value / usd:.2f}" for key, value in prices.items()}
        rows.append({"timestamp": str(begin), **row, "volume": f"{bar.volume:.8f}"})
    base, quote = PAIRS[pair]
    return _json({"data": {"pair": f"{base}/{quote}", "ohlc": rows}})


def _request_fault_reply(kinds: set[str]) -> Reply | None:
    """The answer a request-level fault puts in place of the endpoint's, if any."""
    if "http_429" in kinds:
        return _page(429, "Too Many Requests")
    if "http_5xx" in kinds:
        return _page(502, "Bad Gateway")
    if "rate_limited" in kinds:
        reason = "Request rejected due to exceeded rate limit."
        return _json({"status": "error", "reason": reason, "code": "400.002"})
    if "redirect" in kinds:
        location = "https://elsewhere.example/api/v2/ticker/btcusd/"
        return Reply(302, b"", headers={"Location": location})
    return None


class BitstampSimulator(LoopbackSimulator[BitstampFault, BitstampRequest]):
    """Bitstamp's public REST market data on loopback, with a request log and injectable faults."""

    thread_name = "bitstamp-simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Clock = time.time) -> None:
        """Configure; nothing listens until `start()`. `clock` gives the simulator's now."""
        super().__init__(host, port, clock)

    def _faults_for(self, endpoint: str, pair: str) -> list[BitstampFault]:
        """The faults matching this request; counted ones are spent by it."""
        return self._take_faults(
            lambda fault: fault.endpoint in (None, endpoint) and fault.pair in (None, pair)
        )

    def respond(self, path: str, query: dict[str, str]) -> Reply:
        """The answer to one GET, faults applied, logged."""
        now = self.clock()
        match = _PATH.fullmatch(path)
        endpoint, pair = match.groups() if match else ("", "")
        faults = self._faults_for(endpoint, pair)
        kinds = {fault.kind for fault in faults}
        reply = _request_fault_reply(kinds)
        if reply is None and (match is None or pair not in PAIRS or UNKNOWN_PAIR in kinds):
            reply = _page(404, "Not Found")
        if reply is None and endpoint == "ticker":
            reply = _render_ticker(pair, now, kinds)
        if reply is None:
            reply = _render_ohlc(pair, now, query)
        if "malformed" in kinds:
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        reply.delay = max((f.delay for f in faults if f.kind == "timeout"), default=0.0)
        self._record(BitstampRequest(now, path, dict(query), reply.status))
        return reply

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one GET (the handler's) and write the reply."""
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        self._send(handler, self.respond(split.path, query))
