"""An OANDA v20 REST look-alike on loopback (fxTrade Practice), for the OANDA provider's tests and
demo: pricing and daily candles, a Bearer token and the account id checked, `errorMessage` bodies,
forex and metals closed over the weekend as OANDA reports them (not tradeable: the last price, at
its own time), injectable faults. Prices come from `market.py`, as the Polygon simulator's do.
Standard library only; the shapes follow assets_pipeline_tests/data/oanda/ (PROVENANCE.md)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from assets_pipeline.simulator import market
from assets_pipeline.simulator.loopback import LoopbackSimulator, Reply, json_reply
from assets_pipeline.simulator.market import Clock
from assets_pipeline.simulator.server import SimulatorRequest, key_id

#: The token and account a test gives its provider by default.
DEFAULT_TOKEN = "practice-token-0123456789abcdef-0123456789abcdef"
DEFAULT_ACCOUNT = "101-004-1234567-001"
UNAUTHORIZED_TEXT = "Insufficient authorization to perform request."
#: Not an OANDA text (none is published for its 429): the simulator's own.
RATE_LIMIT_TEXT = "Too many requests (simulator: over its per-token budget)"
#: A ticker's currency pair as OANDA names it, and the documented candle maximum.
MAX_COUNT = 5000
#: Faults of the whole answer, and faults of one instrument's price in it.
REQUEST_FAULTS = frozenset(
    {"http_500", "http_503", "rate_limited", "timeout", "malformed", "redirect"}
    | {"echo_token", "bloated", "trickle", "misaligned"}
)
ITEM_FAULTS = frozenset(
    {"crossed", "negative_price", "nan_price", "future", "empty_bids", "closed", "unknown"}
    | {"not_asked", "twice"}
)
FUTURE_SHIFT = 3600.0


def invalid(name: str) -> str:
    """OANDA's 400 wording for a bad parameter (as its clients quote it)."""
    return f"Invalid value specified for '{name}'"


@dataclass(frozen=True)
class OandaFault:
    """One injected misbehaviour: for every request (`instrument` None) or those touching one
    instrument; for `count` requests, or until cleared. `delay`: a timeout's pause."""

    kind: str
    instrument: str | None = None
    count: int | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_FAULTS | ITEM_FAULTS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be at least 1, or None for forever")


def _error(status: int, text: str) -> Reply:
    return json_reply(status, {"errorMessage": text})


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def ticker_of(instrument: str) -> str | None:
    """`C:EURUSD` for `EUR_USD`, if the simulated market knows the pair (metals included)."""
    base, sep, quote = instrument.partition("_")
    ticker = f"C:{base}{quote}"
    return ticker if sep and market.is_known(ticker) else None


def stamp(t: float, nanos: str = "417") -> str:
    """RFC 3339 with nine fraction digits, as OANDA writes times (a price's last three digits
    are a fixed 417 ns, so a client must cut the nanoseconds it cannot keep)."""
    micro = math.floor(t * 1_000_000)
    moment = dt.datetime.fromtimestamp(micro // 1_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micro % 1_000_000:06d}{nanos}Z"


def _read_time(value: str, name: str) -> float:
    try:
        head, dot, rest = value.partition(".")
        if dot:
            digits = rest.rstrip("Z")
            value = f"{head}.{digits[:6]}Z" if rest.endswith("Z") else value
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _Refused(_error(400, invalid(name))) from None


@dataclass
class _Call:
    """A request being answered: its time, the faults that apply, the market hours."""

    now: float
    market_hours: bool
    faults: list[OandaFault]

    def has(self, kind: str, instrument: str | None = None) -> bool:
        return any(
            f.kind == kind and (f.instrument is None or f.instrument == instrument)
            for f in self.faults
        )


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _price(instrument: str, ticker: str, call: _Call) -> dict[str, Any]:
    """One `ClientPrice`: tradeable while the market is open, else the last price at its own
    time, marked non-tradeable; item faults change it."""
    open_now = market.is_open(ticker, call.now, call.market_hours) and not call.has(
        "closed", instrument
    )
    tick = call.now if open_now else market.last_tick_time(ticker, call.now, True)
    decimals = market.instrument(ticker).decimals  # type: ignore[union-attr]
    quote, step = market.quote(ticker, tick), 10.0**-decimals
    bid, ask = quote.bid, quote.ask
    if call.has("crossed", instrument):
        bid, ask = ask, bid
    bids = [{"price": _fmt(bid, decimals), "liquidity": 1000000}]
    bids.append({"price": _fmt(bid - step, decimals), "liquidity": 5000000})
    if call.has("negative_price", instrument):
        bids[0]["price"] = "-1.0"
    if call.has("nan_price", instrument):
        bids[0]["price"] = "NaN"
    asks = [{"price": _fmt(ask, decimals), "liquidity": 1000000}]
    asks.append({"price": _fmt(ask + step, decimals), "liquidity": 5000000})
    return {
        "type": "PRICE",
        "time": stamp(tick + (FUTURE_SHIFT if call.has("future", instrument) else 0.0)),
        "bids": [] if call.has("empty_bids", instrument) else bids,
        "asks": asks,
        "closeoutBid": _fmt(bid - 2 * step, decimals),
        "closeoutAsk": _fmt(ask + 2 * step, decimals),
        "status": "tradeable" if open_now else "non-tradeable",
        "tradeable": open_now,
        "instrument": instrument,
    }


def _pricing(query: dict[str, str], call: _Call) -> Reply:
    """`GET /v3/accounts/{accountID}/pricing?instruments=A,B`: a 400 naming `instruments` when
    any is unknown, as OANDA answers the whole request."""
    asked = [i for i in (query.get("instruments") or "").split(",") if i]
    known = {i: ticker_of(i) for i in asked if not call.has("unknown", i)}
    if not asked or any(known.get(i) is None for i in asked):
        return _error(400, invalid("instruments"))
    prices = [_price(i, known[i], call) for i in dict.fromkeys(asked)]  # type: ignore[arg-type]
    if call.has("not_asked"):
        extra = "USD_CHF" if "USD_CHF" not in asked else "NZD_USD"
        prices.append(_price(extra, ticker_of(extra), call))  # type: ignore[arg-type]
    prices += [p for p in prices if call.has("twice", p["instrument"])]
    prices = [p for p in prices if not (call.has("not_asked") and p["instrument"] == asked[0])]
    return json_reply(200, {"time": stamp(call.now), "prices": prices})


def _alignment(query: dict[str, str]) -> tuple[int, ZoneInfo]:
    """`dailyAlignment` (0-23, default 17) in `alignmentTimezone` (default America/New_York)."""
    try:
        hour = int(query.get("dailyAlignment", "17"))
        if not 0 <= hour <= 23:
            raise ValueError(hour)
    except ValueError:
        raise _Refused(_error(400, invalid("dailyAlignment"))) from None
    try:
        return hour, ZoneInfo(query.get("alignmentTimezone") or "America/New_York")
    except (ZoneInfoNotFoundError, ValueError):
        raise _Refused(_error(400, invalid("alignmentTimezone"))) from None


def _span(query: dict[str, str], now: float) -> tuple[float, float]:
    """The candles' span: `from` to `to` (never past now), or `count` days back from now."""
    end = min(_read_time(query["to"], "to"), now) if "to" in query else now
    if "from" in query:
        return _read_time(query["from"], "from"), end
    try:
        count = int(query.get("count", "500"))
    except ValueError:
        raise _Refused(_error(400, invalid("count"))) from None
    if not 1 <= count <= MAX_COUNT:
        raise _Refused(_error(400, invalid("count")))
    return end - count * market.DAY_SECONDS, end


def _days(start: float, end: float, hour: int, zone: ZoneInfo) -> list[tuple[float, float]]:
    """The daily candles (start, end in epoch seconds; a day is 23 or 25 hours when the
    alignment's zone changes its clocks) that overlap [start, end)."""
    day = dt.datetime.fromtimestamp(start, zone).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, zone).date() + dt.timedelta(days=1)
    starts = []
    while day <= last:
        starts.append(dt.datetime.combine(day, dt.time(hour), zone).timestamp())
        day += dt.timedelta(days=1)
    pairs = itertools.pairwise(starts)
    return [(begin, finish) for begin, finish in pairs if finish > start and begin < end]


def _candles(instrument: str, query: dict[str, str], call: _Call) -> Reply:
    """`GET /v3/instruments/{instrument}/candles`, daily granularity only (the one the provider
    asks for): complete candles, and the one still running with `complete: false`."""
    ticker = ticker_of(instrument)
    if ticker is None or call.has("unknown", instrument):
        return _error(400, invalid("instrument"))
    if query.get("granularity", "S5") != "D":
        return _error(400, invalid("granularity"))
    components = query.get("price", "M")
    if not components or set(components) - set("MBA"):
        return _error(400, invalid("price"))
    hour, zone = _alignment(query)
    start, end = _span(query, call.now)
    shift = 3600.0 if call.has("misaligned") else 0.0
    candles = []
    for begin, finish in _days(start, end, hour, zone):
        if not market.window_trades(ticker, begin, finish, call.market_hours):
            continue
        bar = market.bar(ticker, begin, finish, call.now, market_hours=call.market_hours)
        candles.append(_candle(ticker, bar, begin + shift, finish <= call.now, components))
    return json_reply(200, {"instrument": instrument, "granularity": "D", "candles": candles})


def _candle(
    ticker: str, bar: market.Bar, begin: float, complete: bool, components: str
) -> dict[str, Any]:
    decimals = market.instrument(ticker).decimals  # type: ignore[union-attr]
    half = market.SPREAD_FRACTION / 2
    candle: dict[str, Any] = {"complete": complete, "volume": bar.transactions}
    candle["time"] = stamp(begin, nanos="000")
    for letter, name, factor in (("M", "mid", 0.0), ("B", "bid", -half), ("A", "ask", half)):
        if letter in components:
            prices = (bar.open, bar.high, bar.low, bar.close)
            candle[name] = {
                key: _fmt(value * (1 + factor), decimals)
                for key, value in zip("ohlc", prices, strict=True)
            }
    return candle


class OandaSimulator(LoopbackSimulator[OandaFault, SimulatorRequest]):
    """An OANDA v20 REST server on loopback: one practice account and its token, a per-token
    budget (off by default), a request log, injectable faults. `clock` answers epoch seconds;
    `market_hours` closes forex and metals from Friday to Sunday 17:00 New York."""

    thread_name = "oanda-simulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = DEFAULT_TOKEN,
        account_id: str = DEFAULT_ACCOUNT,
        clock: Clock = time.time,
        market_hours: bool = True,
        rate_limit_calls: int | None = None,
        rate_limit_window: float = 1.0,
    ) -> None:
        super().__init__(host, port, clock)
        self.token, self.account_id = token, account_id
        #: Tokens accepted besides `token` (the simulator command's `--keys`).
        self.other_tokens: frozenset[str] = frozenset()
        self.market_hours = market_hours
        self.rate_limit_calls, self.rate_limit_window = rate_limit_calls, rate_limit_window
        self._window: deque[float] = deque()

    # answering

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one request (the handler's), log it, and write the reply."""
        split = urlsplit(handler.path)
        path, query = unquote(split.path), dict(parse_qsl(split.query, keep_blank_values=True))
        token = self._token(handler)
        now = self.clock()
        try:
            reply = self._respond(path, query, token, now)
        except _Refused as refused:
            reply = refused.reply
        except Exception:  # noqa: BLE001 - a bug here must still answer like a server
            reply = _error(500, "Internal Server Error")
        self._record(SimulatorRequest(now, path, query, key_id(token), reply.status))
        self._send(handler, reply)

    @staticmethod
    def _token(handler: BaseHTTPRequestHandler) -> str:
        scheme, _, value = (handler.headers.get("Authorization") or "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    def _respond(self, path: str, query: dict[str, str], token: str, now: float) -> Reply:
        """Token, budget, faults, then the endpoint."""
        if token != self.token and token not in self.other_tokens:
            return _error(401, UNAUTHORIZED_TEXT)
        if not self._admit(now):
            return _error(429, RATE_LIMIT_TEXT)
        route, touched = self._route(path, query)
        faults = self._take_faults(lambda f: f.instrument is None or f.instrument in touched)
        call = _Call(now, self.market_hours, faults)
        reply = _faulted(call, token) or route(call)
        reply.delay = max((f.delay for f in call.faults if f.kind == "timeout"), default=0.0)
        if call.has("malformed") and reply.status == 200:
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        return reply

    def _route(
        self, path: str, query: dict[str, str]
    ) -> tuple[Callable[[_Call], Reply], list[str]]:
        match path.split("/")[1:]:
            case ["v3", "accounts", account, "pricing"]:
                if account != self.account_id:
                    raise _Refused(_error(400, invalid("accountID")))
                touched = (query.get("instruments") or "").split(",")
                return (lambda call: _pricing(query, call)), touched
            case ["v3", "instruments", instrument, "candles"]:
                return (lambda call: _candles(instrument, query, call)), [instrument]
        raise _Refused(_error(404, "The requested URL was not found on this server."))

    def _admit(self, now: float) -> bool:
        """Charge the request to the token's sliding window (a 429 is charged too)."""
        if self.rate_limit_calls is None:
            return True
        with self._lock:
            while self._window and self._window[0] <= now - self.rate_limit_window:
                self._window.popleft()
            self._window.append(now)
            return len(self._window) <= self.rate_limit_calls


def _faulted(call: _Call, token: str) -> Reply | None:
    """The whole answer a request fault puts in place of the endpoint's, if any."""
    if call.has("rate_limited"):
        return _error(429, RATE_LIMIT_TEXT)
    if call.has("http_500"):
        return _error(500, "Internal Server Error")
    if call.has("http_503"):
        page = b"<html><head><title>503 Service Temporarily Unavailable</title></head></html>"
        return Reply(503, page, "text/html")
    if call.has("redirect"):
        return Reply(302, b"", headers={"Location": "https://api-fxtrade.example/v3/accounts"})
    if call.has("echo_token"):
        return _error(401, f"{UNAUTHORIZED_TEXT} (Authorization: Bearer {token})")
    if call.has("bloated"):
        return Reply(200, b'{"prices": [], "pad": "' + b"x" * 3_000_000 + b'"}')
    if call.has("trickle"):
        return Reply(200, b" " * 1_000_000, trickle=True)
    return None
