"""A Polygon (Massive) REST look-alike on loopback, for testing clients over real HTTP.

It speaks the recorded wire format (`assets_pipeline_tests/data/polygon/responses/`): paths,
envelopes, field names, timestamp units, error bodies, a per-key budget and its 429, and a plan's
403s. Faults are switched on per ticker, per path or for a number of requests (docs/testing.md).
Standard library only. Why a simulator: docs/design/polygon-simulator.md."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from assets_pipeline.simulator import market
from assets_pipeline.simulator.loopback import Handler, LoopbackSimulator, Reply, json_reply
from assets_pipeline.simulator.market import Clock, Instrument

#: next_url points at the real host, as the real API does; clients must keep only path + query.
REAL_BASE_URL = "https://api.polygon.io"
#: Forex quotes carry exchange 48 in every recording.
FOREX_EXCHANGE = 48
V3_MAX_TICKERS = 250
V3_MAX_LIMIT = 250
V3_DEFAULT_LIMIT = 10
AGGS_DEFAULT_LIMIT = 5000
AGGS_MAX_LIMIT = 50000
#: `full`: everything; `starter_no_multi`: a paid plan without the multi-ticker snapshots; `free`:
#: the Basic plans.
PLANS = ("full", "starter_no_multi", "free")
TIMESPAN_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
FUTURE_SHIFT_MS = 3_600_000

MISSING_KEY_TEXT = "API Key was not provided"
UNKNOWN_KEY_TEXT = "Unknown API Key"
RATE_LIMIT_TEXT = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
    "to continue. https://polygon.io/pricing"
)
NOT_AUTHORIZED_TEXT = (
    "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"
)
TICKER_NOT_FOUND_TEXT = "Ticker not found."
#: The free plan's answer to a request for the current day, a future one, or too far back.
TIMEFRAME_TEXT = (
    "Your plan doesn't include this data timeframe. Please upgrade your plan at "
    "https://polygon.io/pricing"
)
#: How far back the free plan's aggregates reach, in calendar years before today (UTC).
FREE_HISTORY_YEARS = 2

#: Faults that change the whole answer, and faults that change one ticker's data in it.
REQUEST_FAULTS = frozenset(
    {"http_500", "http_502", "http_503", "timeout", "malformed", "forbidden", "rate_limited"}
)
ITEM_FAULTS = frozenset({"crossed", "negative_price", "future", "unknown"})
FAULT_KINDS = REQUEST_FAULTS | ITEM_FAULTS

_LOAD_BALANCER_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour.

    `ticker` None matches every request; otherwise only requests touching that ticker. `count`
    None lasts until cleared; otherwise the fault is spent after that many matching requests.
    `path_prefix` narrows it to paths starting with the prefix. `delay` is the pause of a
    "timeout" fault, long enough by default to trip a client's read timeout.
    """

    kind: str
    ticker: str | None = None
    count: int | None = None
    path_prefix: str | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("fault count must be at least 1, or None for forever")
        if self.delay < 0:
            raise ValueError("fault delay must not be negative")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from the JSON the admin endpoint receives."""
        unknown = set(data) - {"kind", "ticker", "count", "path_prefix", "delay"}
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}")
        return cls(
            kind=str(data["kind"]),
            ticker=data.get("ticker"),
            count=data.get("count"),
            path_prefix=data.get("path_prefix"),
            delay=float(data.get("delay", 5.0)),
        )


@dataclass(frozen=True)
class SimulatorRequest:
    """One logged API request; the key appears only as a short hash, never in clear."""

    at: float
    path: str
    query: dict[str, str]
    key_id: str
    status: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to the log file and served by `/_sim/log`."""
        return asdict(self)


class _HttpError(Exception):
    """Raised while parsing a request to answer it with an error body."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload


@dataclass
class _Call:
    """What a renderer needs about the request being answered."""

    now: float
    market_hours: bool
    faults: list[Fault] = field(default_factory=list)
    #: The free plan's bars come back with `status` DELAYED (end-of-day data).
    delayed: bool = False

    def kinds_for(self, ticker: str) -> set[str]:
        """The item-level faults that apply to `ticker` in this request."""
        return {
            f.kind
            for f in self.faults
            if f.kind in ITEM_FAULTS and (f.ticker is None or f.ticker == ticker)
        }

    def instrument(self, ticker: str) -> Instrument | None:
        """The catalogue entry, or None if unknown or made unknown by a fault."""
        if "unknown" in self.kinds_for(ticker):
            return None
        return market.instrument(ticker)


@dataclass
class _Route:
    """A parsed request: which tickers it touches and how to answer it."""

    render: Callable[[_Call], Reply]
    tickers: list[str] = field(default_factory=list)
    multi: bool = False
    #: What a plan entitles: "snapshot" (v2, v3), "last" (v1 last quote/trade), "aggs" (bars).
    kind: str = "other"
    #: The data period the request asks for, [first ms, last ms], when a plan may limit it.
    span_ms: tuple[int, int] | None = None


def request_id() -> str:
    """A fresh 32-hex-digit id, like the real API's."""
    return secrets.token_hex(16)


def key_id(key: str | None) -> str:
    """A short, one-way tag for a key, so logs can tell keys apart without holding one."""
    if not key:
        return ""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _error_body(status_word: str, text: str) -> dict[str, Any]:
    """ERROR bodies carry `error`; NOT_FOUND and NOT_AUTHORIZED ones carry `message`."""
    text_key = "error" if status_word == "ERROR" else "message"
    return {"status": status_word, "request_id": request_id(), text_key: text}


def _error(status: int, status_word: str, text: str) -> Reply:
    return json_reply(status, _error_body(status_word, text))


def _bad_request(text: str) -> _HttpError:
    return _HttpError(400, _error_body("ERROR", text))


def _not_found(text: str = TICKER_NOT_FOUND_TEXT) -> _HttpError:
    return _HttpError(404, _error_body("NOT_FOUND", text))


def _load_balancer_reply(code: int) -> Reply:
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}[code]
    page = _LOAD_BALANCER_PAGE.format(code=code, reason=reason)
    return Reply(code, page.encode(), "text/html")


def _ms(t: float) -> int:
    return math.floor(t * 1000)


def _ns(t: float) -> int:
    # Via whole milliseconds: t * 1e9 as a float would lose the last digits.
    return _ms(t) * 1_000_000


def _split_tickers(raw: str | None) -> list[str]:
    """A comma-separated list, blanks dropped, duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for part in (raw or "").split(","):
        if part.strip():
            seen.setdefault(part.strip(), None)
    return list(seen)


def _int_param(query: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"Invalid value for '{name}': must be an integer") from None
    if not 1 <= value <= maximum:
        raise _bad_request(f"Invalid value for '{name}': must be between 1 and {maximum}")
    return value


def _encode_cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad_request("Invalid cursor") from None


def _next_url(path: str, cursor: str) -> str:
    return f"{REAL_BASE_URL}{path}?{urlencode({'cursor': cursor})}"


# --- v2 snapshots -------------------------------------------------------------------------------


def _bar_v2(bar: market.Bar, *, integer_volume: bool, keys: str) -> dict[str, Any]:
    """A v2 bar object restricted to `keys` (single letters), alphabetical like recordings."""
    volume: float = int(bar.volume) if integer_volume else bar.volume
    values: dict[str, Any] = {
        "c": bar.close,
        "h": bar.high,
        "l": bar.low,
        "n": bar.transactions,
        "o": bar.open,
        "t": _ms(bar.start),
        "v": volume,
        "vw": bar.vwap,
    }
    return {k: values[k] for k in sorted(keys.split(","))}


def _change(day: market.Bar, prev: market.Bar, decimals: int) -> tuple[float, float]:
    change = round(day.close - prev.close, decimals)
    percent = round(change / prev.close * 100.0, 8) if prev.close else 0.0
    return change, percent


def _v2_forex_object(call: _Call, inst: Instrument, *, recorded_multi: bool) -> dict[str, Any]:
    """The `ticker` object of a forex snapshot.

    `recorded_multi` reproduces the production recording of the multi-ticker answer, which lacks
    `lastQuote.i` and `min.n`/`min.t`; the single-ticker answer follows the vendor's example.
    """
    ticker = inst.ticker
    kinds = call.kinds_for(ticker)
    tick_t = market.last_tick_time(ticker, call.now, call.market_hours)
    quote = market.quote(ticker, tick_t)
    day = market.day_bar(ticker, tick_t, market_hours=call.market_hours)
    prev = market.previous_day_bar(ticker, tick_t, market_hours=call.market_hours)
    minute = market.minute_bar(ticker, tick_t, market_hours=call.market_hours)
    bid, ask = quote.bid, quote.ask
    quote_ms, updated_ns = _ms(tick_t), _ns(tick_t)
    if "crossed" in kinds:
        bid, ask = ask, bid
    if "negative_price" in kinds:
        bid = -1.0
    if "future" in kinds:
        quote_ms += FUTURE_SHIFT_MS
        updated_ns += FUTURE_SHIFT_MS * 1_000_000
    last_quote: dict[str, Any] = {"a": ask, "b": bid, "i": 0, "t": quote_ms, "x": FOREX_EXCHANGE}
    min_keys = "c,h,l,n,o,t,v"
    if recorded_multi:
        del last_quote["i"]
        min_keys = "c,h,l,o,v"
    change, percent = _change(day, prev, inst.decimals)
    return {
        "day": _bar_v2(day, integer_volume=True, keys="c,h,l,o,v"),
        "lastQuote": last_quote,
        "min": _bar_v2(minute, integer_volume=True, keys=min_keys),
        "prevDay": _bar_v2(prev, integer_volume=True, keys="c,h,l,o,v,vw"),
        "ticker": ticker,
        "todaysChange": change,
        "todaysChangePerc": percent,
        "updated": updated_ns,
    }


def _v2_crypto_object(call: _Call, inst: Instrument) -> dict[str, Any]:
    """The `ticker` object of a crypto snapshot: a last trade, no quote, so no bid/ask."""
    ticker = inst.ticker
    kinds = call.kinds_for(ticker)
    tick_t = market.last_tick_time(ticker, call.now, call.market_hours)
    day = market.day_bar(ticker, tick_t, market_hours=call.market_hours)
    prev = market.previous_day_bar(ticker, tick_t, market_hours=call.market_hours)
    minute = market.minute_bar(ticker, tick_t, market_hours=call.market_hours)
    trade_price = day.close
    trade_ms, updated_ns = _ms(tick_t), _ns(tick_t)
    if "negative_price" in kinds:
        trade_price = -1.0
    if "future" in kinds:
        trade_ms += FUTURE_SHIFT_MS
        updated_ns += FUTURE_SHIFT_MS * 1_000_000
    change, percent = _change(day, prev, inst.decimals)
    return {
        "day": _bar_v2(day, integer_volume=False, keys="c,h,l,o,v,vw"),
        "lastTrade": {
            "c": [2],
            "i": market.trade_id(ticker, tick_t),
            "p": trade_price,
            "s": market.trade_size(ticker, tick_t),
            "t": trade_ms,
            "x": market.trade_exchange(ticker, tick_t),
        },
        "min": _bar_v2(minute, integer_volume=False, keys="c,h,l,n,o,t,v,vw"),
        "prevDay": _bar_v2(prev, integer_volume=False, keys="c,h,l,o,v,vw"),
        "ticker": ticker,
        "todaysChange": change,
        "todaysChangePerc": percent,
        "updated": updated_ns,
    }


def _v2_object(call: _Call, inst: Instrument, *, multi: bool) -> dict[str, Any]:
    if inst.asset_class == "fx":
        return _v2_forex_object(call, inst, recorded_multi=multi)
    return _v2_crypto_object(call, inst)


_V2_MARKETS: dict[str, market.AssetClass] = {"forex": "fx", "crypto": "crypto"}


def _route_v2_single(market_name: str, ticker: str) -> _Route:
    asset_class = _V2_MARKETS[market_name]

    def render(call: _Call) -> Reply:
        inst = call.instrument(ticker)
        if inst is None or inst.asset_class != asset_class:
            raise _not_found()
        body = {
            "request_id": request_id(),
            "status": "OK",
            "ticker": _v2_object(call, inst, multi=False),
        }
        return json_reply(200, body)

    return _Route(render, [ticker], kind="snapshot")


def _route_v2_multi(market_name: str, query: dict[str, str]) -> _Route:
    asset_class = _V2_MARKETS[market_name]
    tickers = _split_tickers(query.get("tickers")) or list(market.default_tickers(asset_class))

    def render(call: _Call) -> Reply:
        objects = []
        for ticker in tickers:
            inst = call.instrument(ticker)
            # Unknown tickers, and tickers of another market, are left out of the list.
            if inst is not None and inst.asset_class == asset_class:
                objects.append(_v2_object(call, inst, multi=True))
        return json_reply(200, {"status": "OK", "tickers": objects})

    return _Route(render, tickers, multi=True, kind="snapshot")


# --- v3 snapshots -------------------------------------------------------------------------------


def _session(day: market.Bar, prev: market.Bar, decimals: int, *, volume: bool) -> dict[str, Any]:
    change, _ = _change(day, prev, decimals)
    session: dict[str, Any] = {
        "change": change,
        "change_percent": round(change / prev.close * 100.0, 4) if prev.close else 0.0,
        "close": day.close,
        "high": day.high,
        "low": day.low,
        "open": day.open,
    }
    if volume:
        session["volume"] = day.volume
    session["previous_close"] = prev.close
    return session


@dataclass(frozen=True)
class _Tick:
    """An instrument's last tick as a v3 snapshot shows it, with this request's faults."""

    inst: Instrument
    kinds: set[str]
    at: float
    day: market.Bar
    prev: market.Bar
    #: The tick's time in ns, an hour ahead under a "future" fault.
    stamp_ns: int


def _v3_item(call: _Call, ticker: str, *, indices_only: bool) -> dict[str, Any]:
    """One v3 result: an fx, crypto or indices snapshot, or an in-band NOT_FOUND item."""
    inst = call.instrument(ticker)
    if inst is None or (indices_only and inst.asset_class != "indices"):
        return {"error": "NOT_FOUND", "message": TICKER_NOT_FOUND_TEXT, "ticker": ticker}
    kinds = call.kinds_for(ticker)
    tick_t = market.last_tick_time(ticker, call.now, call.market_hours)
    day = market.day_bar(ticker, tick_t, market_hours=call.market_hours)
    prev = market.previous_day_bar(ticker, tick_t, market_hours=call.market_hours)
    status = "open" if market.is_open(ticker, call.now, call.market_hours) else "closed"
    stamp_ns = _ns(tick_t) + (FUTURE_SHIFT_MS * 1_000_000 if "future" in kinds else 0)
    item: dict[str, Any] = {"market_status": status, "name": inst.name, "ticker": ticker}
    tick = _Tick(inst, kinds, tick_t, day, prev, stamp_ns)
    item.update(_V3_FIELDS[inst.asset_class](tick))
    return item


def _v3_fx_fields(tick: _Tick) -> dict[str, Any]:
    """An fx snapshot's fields: a last quote, with bid and ask."""
    quote = market.quote(tick.inst.ticker, tick.at)
    bid, ask = (quote.ask, quote.bid) if "crossed" in tick.kinds else (quote.bid, quote.ask)
    if "negative_price" in tick.kinds:
        bid = -1.0
    session = _session(tick.day, tick.prev, tick.inst.decimals, volume=True)
    session["volume"] = int(tick.day.volume)
    return {
        "type": "fx",
        "session": session,
        "last_quote": {
            "last_updated": tick.stamp_ns,
            "timeframe": "REAL-TIME",
            "ask": ask,
            "bid": bid,
            "exchange": FOREX_EXCHANGE,
        },
        "fmv": quote.mid,
    }


def _v3_crypto_fields(tick: _Tick) -> dict[str, Any]:
    """A crypto snapshot's fields: a last trade, no quote."""
    ticker, day = tick.inst.ticker, tick.day
    trade_price = -1.0 if "negative_price" in tick.kinds else day.close
    session = _session(day, tick.prev, tick.inst.decimals, volume=True)
    session["price"] = day.close
    return {
        "type": "crypto",
        "session": session,
        "last_trade": {
            "participant_timestamp": tick.stamp_ns,
            "timeframe": "REAL-TIME",
            "id": market.trade_id(ticker, tick.at),
            "price": trade_price,
            "exchange": market.trade_exchange(ticker, tick.at),
            "conditions": [1],
        },
        "fmv": day.close,
    }


def _v3_indices_fields(tick: _Tick) -> dict[str, Any]:
    """An index snapshot's fields: a value, no quote or trade."""
    return {
        "type": "indices",
        "value": -1.0 if "negative_price" in tick.kinds else tick.day.close,
        "last_updated": tick.stamp_ns,
        "timeframe": "REAL-TIME",
        "session": _session(tick.day, tick.prev, tick.inst.decimals, volume=False),
    }


_V3_FIELDS: dict[str, Callable[[_Tick], dict[str, Any]]] = {
    "fx": _v3_fx_fields,
    "crypto": _v3_crypto_fields,
    "indices": _v3_indices_fields,
}


_V3_TYPES: dict[str, tuple[str, ...]] = {
    "fx": market.default_tickers("fx"),
    "crypto": market.default_tickers("crypto"),
    "indices": market.default_tickers("indices"),
    "stocks": (),
    "options": (),
}


def _route_v3(path: str, query: dict[str, str], *, indices_only: bool, page_cap: int) -> _Route:
    """`/v3/snapshot` and `/v3/snapshot/indices`: tickers in the order asked, paged by `limit`.

    The cursor is base64 of JSON holding the tickers still to come and the limit, so a request
    with `cursor=` needs nothing else and the page boundaries stay where the first page put them.
    """
    if query.get("cursor"):
        try:
            state = json.loads(_decode_cursor(query["cursor"]))
            tickers = [str(t) for t in state["tickers"]]
            limit = int(state["limit"])
        except (ValueError, KeyError, TypeError):
            raise _bad_request("Invalid cursor") from None
    else:
        tickers = _split_tickers(query.get("ticker.any_of")) or _split_tickers(query.get("ticker"))
        if len(tickers) > V3_MAX_TICKERS:
            raise _bad_request(
                f"ticker.any_of can contain at most {V3_MAX_TICKERS} tickers, got {len(tickers)}"
            )
        if not tickers:
            if indices_only:
                tickers = list(market.default_tickers("indices"))
            else:
                wanted = query.get("type")
                if wanted and wanted not in _V3_TYPES:
                    raise _bad_request(f"Invalid value for 'type': {wanted}")
                chosen = [wanted] if wanted else ["fx", "crypto", "indices"]
                tickers = [t for kind in chosen for t in _V3_TYPES[kind]]
        limit = _int_param(query, "limit", V3_DEFAULT_LIMIT, V3_MAX_LIMIT)
    page_size = max(1, min(limit, page_cap))
    page, rest = tickers[:page_size], tickers[page_size:]

    def render(call: _Call) -> Reply:
        body: dict[str, Any] = {
            "results": [_v3_item(call, t, indices_only=indices_only) for t in page],
            "status": "OK",
            "request_id": request_id(),
        }
        if rest:
            cursor = _encode_cursor(json.dumps({"tickers": rest, "limit": limit}))
            body["next_url"] = _next_url(path, cursor)
        return json_reply(200, body)

    return _Route(render, page, multi=True, kind="snapshot")


# --- v1 last quote / last trade -------------------------------------------------------------------


def _route_v1_forex(base: str, quote_ccy: str) -> _Route:
    ticker = f"C:{base}{quote_ccy}"

    def render(call: _Call) -> Reply:
        inst = call.instrument(ticker)
        if inst is None:
            raise _not_found()
        kinds = call.kinds_for(ticker)
        tick_t = market.last_tick_time(ticker, call.now, call.market_hours)
        quote = market.quote(ticker, tick_t)
        bid, ask = (quote.ask, quote.bid) if "crossed" in kinds else (quote.bid, quote.ask)
        if "negative_price" in kinds:
            bid = -1.0
        stamp = _ms(tick_t) + (FUTURE_SHIFT_MS if "future" in kinds else 0)
        body = {
            "last": {"ask": ask, "bid": bid, "exchange": FOREX_EXCHANGE, "timestamp": stamp},
            "request_id": request_id(),
            "status": "success",
            "symbol": f"{base}/{quote_ccy}",
        }
        return json_reply(200, body)

    return _Route(render, [ticker], kind="last")


def _route_v1_crypto(base: str, quote_ccy: str) -> _Route:
    ticker = f"X:{base}{quote_ccy}"

    def render(call: _Call) -> Reply:
        inst = call.instrument(ticker)
        if inst is None:
            raise _not_found()
        kinds = call.kinds_for(ticker)
        tick_t = market.last_tick_time(ticker, call.now, call.market_hours)
        trade_price = -1.0 if "negative_price" in kinds else market.price(ticker, tick_t)
        stamp = _ms(tick_t) + (FUTURE_SHIFT_MS if "future" in kinds else 0)
        body = {
            "last": {
                "conditions": [2],
                "exchange": market.trade_exchange(ticker, tick_t),
                "price": trade_price,
                "size": market.trade_size(ticker, tick_t),
                "timestamp": stamp,
            },
            "request_id": request_id(),
            "status": "success",
            "symbol": f"{base}-{quote_ccy}",
        }
        return json_reply(200, body)

    return _Route(render, [ticker], kind="last")


# --- v2 aggregates --------------------------------------------------------------------------------


def _parse_time(token: str, name: str, *, end_of_day: bool) -> int:
    """Epoch ms from YYYY-MM-DD (a whole UTC day; `to` includes it) or from epoch ms."""
    if token.isdigit():
        return int(token)
    try:
        day = date.fromisoformat(token)
    except ValueError:
        raise _bad_request(
            f"Could not parse the time parameter: '{name}'. Use YYYY-MM-DD or Unix MS Timestamps"
        ) from None
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return start + TIMESPAN_MS["day"] - 1 if end_of_day else start


def _agg_result(bar: market.Bar, asset_class: str, *, with_ticker: str | None) -> dict[str, Any]:
    volume: float = bar.volume if asset_class == "crypto" else int(bar.volume)
    result: dict[str, Any] = {"T": with_ticker} if with_ticker else {}
    result.update(
        v=volume,
        vw=bar.vwap,
        o=bar.open,
        c=bar.close,
        h=bar.high,
        l=bar.low,
        t=_ms(bar.start),
        n=bar.transactions,
    )
    return result


def _aggs_body(
    ticker: str,
    adjusted: bool,
    results: list[dict[str, Any]],
    next_url: str | None,
    status: str = "OK",
) -> dict[str, Any]:
    """The aggs envelope; an empty answer has no `results` key at all, as recorded."""
    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": len(results),
        "resultsCount": len(results),
        "adjusted": adjusted,
    }
    if results:
        body["results"] = results
    body["status"] = status
    body["request_id"] = request_id()
    if results:
        body["count"] = len(results)
    if next_url:
        body["next_url"] = next_url
    return body


def _parse_bool(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise _bad_request(f"Invalid value for '{name}': must be true or false")


@dataclass(frozen=True)
class _AggsRange:
    """An aggs range request, parsed: the path's tokens as given, and what they mean."""

    ticker: str
    multiplier_token: str
    timespan: str
    from_token: str
    to_token: str
    to_ms: int
    limit: int
    sort: str
    adjusted: bool
    step_ms: int
    #: `from` floored to the timespan unit: the grid the windows sit on.
    anchor_ms: int


def _route_aggs_range(
    ticker: str,
    multiplier_token: str,
    timespan: str,
    from_token: str,
    to_token: str,
    query: dict[str, str],
) -> _Route:
    """Bars over [from, to] for windows that have started, paged by `limit` via `next_url`.

    Windows sit on a grid from `from` floored to the timespan unit, so a continuation whose
    `from` is the next window start keeps the same grid. The cursor, like the real one, is
    base64 of `limit=..&sort=..`; the remaining range travels in the path.
    """
    asked = _parse_aggs_range(ticker, multiplier_token, timespan, from_token, to_token, query)

    def render(call: _Call) -> Reply:
        inst = call.instrument(ticker)
        now_ms = _ms(call.now)
        if inst is None or asked.anchor_ms > asked.to_ms or asked.anchor_ms >= now_ms:
            return json_reply(200, _aggs_body(ticker, asked.adjusted, [], None))
        starts = _trading_window_starts(call, asked, now_ms)
        more = len(starts) > asked.limit
        starts = starts[: asked.limit]
        results = _aggs_results(call, inst, asked, starts)
        next_url = _aggs_next_url(asked, starts[-1]) if more else None
        status = "DELAYED" if call.delayed and results else "OK"
        return json_reply(200, _aggs_body(ticker, asked.adjusted, results, next_url, status))

    return _Route(render, [ticker], kind="aggs", span_ms=(asked.anchor_ms, asked.to_ms))


def _parse_aggs_range(
    ticker: str,
    multiplier_token: str,
    timespan: str,
    from_token: str,
    to_token: str,
    query: dict[str, str],
) -> _AggsRange:
    """The path's and the query's (or the cursor's) parameters, checked (400 on bad ones)."""
    if not multiplier_token.isdigit() or int(multiplier_token) < 1:
        raise _bad_request("Invalid value for 'multiplier': must be a positive integer")
    if timespan not in TIMESPAN_MS:
        raise _bad_request(f"Invalid timespan '{timespan}': use minute, hour or day")
    from_ms = _parse_time(from_token, "from", end_of_day=False)
    to_ms = _parse_time(to_token, "to", end_of_day=True)
    if query.get("cursor"):
        state = dict(parse_qsl(_decode_cursor(query["cursor"])))
    else:
        state = query
    limit = _int_param(state, "limit", AGGS_DEFAULT_LIMIT, AGGS_MAX_LIMIT)
    sort = state.get("sort") or "asc"
    if sort not in ("asc", "desc"):
        raise _bad_request("Invalid value for 'sort': must be asc or desc")
    adjusted = _parse_bool(state, "adjusted", True)
    unit_ms = TIMESPAN_MS[timespan]
    return _AggsRange(
        ticker=ticker,
        multiplier_token=multiplier_token,
        timespan=timespan,
        from_token=from_token,
        to_token=to_token,
        to_ms=to_ms,
        limit=limit,
        sort=sort,
        adjusted=adjusted,
        step_ms=unit_ms * int(multiplier_token),
        anchor_ms=from_ms - from_ms % unit_ms,
    )


def _trading_window_starts(call: _Call, asked: _AggsRange, now_ms: int) -> list[int]:
    """The starts of the windows that have started and saw trading, in `sort` order: `limit` of
    them, and one more if there are more."""
    anchor_ms, step_ms = asked.anchor_ms, asked.step_ms
    # Largest k with start <= to and start < now.
    last_k = min((asked.to_ms - anchor_ms) // step_ms, (now_ms - anchor_ms - 1) // step_ms)
    order: Iterable[int] = range(last_k + 1) if asked.sort == "asc" else range(last_k, -1, -1)
    starts: list[int] = []
    for k in order:
        start_ms = anchor_ms + k * step_ms
        start_s, end_s = start_ms / 1000, (start_ms + step_ms) / 1000
        if market.window_trades(asked.ticker, start_s, end_s, call.market_hours):
            starts.append(start_ms)
            if len(starts) > asked.limit:
                break
    return starts


def _aggs_results(
    call: _Call, inst: Instrument, asked: _AggsRange, starts: list[int]
) -> list[dict[str, Any]]:
    """One bar per window start."""
    negative = "negative_price" in call.kinds_for(asked.ticker)
    results = []
    for start_ms in starts:
        bar = market.bar(
            asked.ticker,
            start_ms / 1000,
            (start_ms + asked.step_ms) / 1000,
            call.now,
            market_hours=call.market_hours,
        )
        result = _agg_result(bar, inst.asset_class, with_ticker=None)
        if negative:
            result["c"] = -1.0
        results.append(result)
    return results


def _aggs_next_url(asked: _AggsRange, last_start_ms: int) -> str:
    """The next page: the rest of the range in the path, `limit` and `sort` in the cursor."""
    if asked.sort == "asc":
        rest_from, rest_to = str(last_start_ms + asked.step_ms), asked.to_token
    else:
        rest_from, rest_to = asked.from_token, str(last_start_ms - asked.step_ms)
    cursor = _encode_cursor(
        urlencode(
            {"limit": asked.limit, "sort": asked.sort, "adjusted": str(asked.adjusted).lower()}
        )
    )
    path = f"/v2/aggs/ticker/{asked.ticker}/range/{asked.multiplier_token}/{asked.timespan}"
    return _next_url(f"{path}/{rest_from}/{rest_to}", cursor)


def _route_aggs_prev(ticker: str, query: dict[str, str]) -> _Route:
    adjusted = _parse_bool(query, "adjusted", True)

    def render(call: _Call) -> Reply:
        inst = call.instrument(ticker)
        if inst is None:
            return json_reply(200, _aggs_body(ticker, adjusted, [], None))
        # The last complete trading day before today, as grouped daily and range give it (on a
        # Saturday that is Friday, not the day before the last tick's day).
        bar = market.previous_day_bar(ticker, call.now, market_hours=call.market_hours)
        result = _agg_result(bar, inst.asset_class, with_ticker=ticker)
        result["t"] = _day_bar_t(bar, inst.asset_class)
        if "negative_price" in call.kinds_for(ticker):
            result["c"] = -1.0
        return json_reply(200, _aggs_body(ticker, adjusted, [result], None))

    # The previous trading day is always a past one: no span for the end-of-day plan to refuse.
    return _Route(render, [ticker], kind="aggs")


_GROUPED_MARKETS: dict[str, market.AssetClass] = {"fx": "fx", "crypto": "crypto"}


def _route_aggs_grouped(market_name: str, day_token: str, query: dict[str, str]) -> _Route:
    """`/v2/aggs/grouped/locale/global/market/{fx|crypto}/{date}`: the UTC day's bar of every
    pair of the market that traded that day, the same bar the range and prev endpoints give."""
    asset_class = _GROUPED_MARKETS[market_name]
    try:
        day = date.fromisoformat(day_token)
    except ValueError:
        raise _bad_request(
            "Could not parse the time parameter: 'date'. Use YYYY-MM-DD format"
        ) from None
    adjusted = _parse_bool(query, "adjusted", True)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    end = start + market.DAY_SECONDS
    tickers = list(market.all_tickers(asset_class))

    def render(call: _Call) -> Reply:
        results = []
        for ticker in tickers if start < call.now else []:
            if call.instrument(ticker) is None:
                continue
            if not market.window_trades(ticker, start, end, call.market_hours):
                continue
            bar = market.bar(ticker, start, end, call.now, market_hours=call.market_hours)
            result = _agg_result(bar, asset_class, with_ticker=ticker)
            result["t"] = _day_bar_t(bar, asset_class)
            if "negative_price" in call.kinds_for(ticker):
                result["c"] = -1.0
            results.append(result)
        return json_reply(200, _grouped_body(adjusted, results))

    return _Route(render, tickers, kind="aggs", span_ms=(_ms(start), _ms(end) - 1))


def _day_bar_t(bar: market.Bar, asset_class: str) -> int:
    """A grouped-daily or `prev` bar's `t` as the vendor's own examples give it: not the day's
    start (that is a range bar's) but the day's last millisecond (the forex grouped-daily
    example, `1602719999999`), or for an index the US close (the official client's mock of a
    stock's `prev`, `1651003200000`, 20:00Z)."""
    if asset_class == "indices":
        return _ms(bar.start) + 20 * 3600 * 1000
    return _ms(bar.start + market.DAY_SECONDS) - 1


def _grouped_body(adjusted: bool, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The grouped daily envelope: no `ticker`, no `count`; no `results` key when empty."""
    body: dict[str, Any] = {
        "queryCount": len(results),
        "resultsCount": len(results),
        "adjusted": adjusted,
    }
    if results:
        body["results"] = results
    body["status"] = "OK"
    body["request_id"] = request_id()
    return body


def _free_plan_covers(span_ms: tuple[int, int], now: float) -> bool:
    """Whether an end-of-day plan with `FREE_HISTORY_YEARS` of history covers the span: it
    ends before today (UTC) and starts no earlier than the same date that many years ago."""
    today = datetime.fromtimestamp(now, UTC).date()
    try:
        oldest = today.replace(year=today.year - FREE_HISTORY_YEARS)
    except ValueError:  # 29 February, and no such day that year
        oldest = today.replace(year=today.year - FREE_HISTORY_YEARS, day=28)
    today_ms = _ms(market.day_start(now))
    oldest_ms = _ms(datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC).timestamp())
    first_ms, last_ms = span_ms
    return oldest_ms <= first_ms and last_ms < today_ms


# --- the server -----------------------------------------------------------------------------------


class _Handler(Handler):
    """Hands every request to the simulator, the admin's POST and DELETE too."""

    def do_POST(self) -> None:
        self.server.simulator.serve(self, "POST")

    def do_DELETE(self) -> None:
        self.server.simulator.serve(self, "DELETE")


class PolygonSimulator(LoopbackSimulator[Fault, SimulatorRequest]):
    """A Polygon REST server on loopback with a budget, a request log and injectable faults."""

    thread_name = "polygon-simulator"
    handler_class = _Handler

    _LOOPBACK: ClassVar[tuple[str, ...]] = ("127.", "::1", "::ffff:127.")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit_calls: int | None = None,
        rate_limit_window: float = 60.0,
        api_keys: set[str] | None = None,
        plan: str = "full",
        clock: Clock = time.time,
        log_file: str | None = None,
        page_size_cap: int = V3_MAX_LIMIT,
        market_hours: bool = False,
    ) -> None:
        """Configure; nothing listens until `start()`.

        `api_keys` None accepts any non-empty key. `plan` is what the key is entitled to:
        `"full"` serves everything; `"starter_no_multi"` is a paid plan without the multi-ticker
        snapshots (v2 multi, `/v3/snapshot`, `/v3/snapshot/indices`: 403), single-ticker ones
        served; `"free"` is the Basic plans: every snapshot and the v1 last quote/trade answer
        403 `NOT_AUTHORIZED`, the aggregates (range, prev, grouped daily) are served end-of-day
        only, with `status` DELAYED on range bars, and a range or grouped day touching today, a
        future day or more than two years back answers 403 "Your plan doesn't include this data
        timeframe". `page_size_cap` shrinks v3 pages below the
        requested `limit`, to exercise pagination. `market_hours` freezes forex over the weekend
        and indices outside the US session; off by default so tests pass on any day.
        """
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}")
        if rate_limit_calls is not None and rate_limit_calls < 1:
            raise ValueError("rate_limit_calls must be at least 1, or None for no budget")
        if page_size_cap < 1:
            raise ValueError("page_size_cap must be at least 1")
        super().__init__(host, port, clock)
        self.rate_limit_calls = rate_limit_calls
        self.rate_limit_window = rate_limit_window
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.plan = plan
        self.log_file = log_file
        self.page_size_cap = page_size_cap
        self.market_hours = market_hours
        self._windows: dict[str, deque[float]] = {}

    def reset_log(self) -> None:
        """Forget logged requests (the log file, if any, is append-only and kept)."""
        with self._lock:
            self._log.clear()

    def reset(self) -> None:
        """Forget the log, the faults and every key's budget window."""
        with self._lock:
            self._log.clear()
            self._faults.clear()
            self._windows.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still armed, as configured."""
        with self._lock:
            return [armed.fault for armed in self._faults]

    # request handling

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one request: the admin's, or the API's (logged)."""
        split = urlsplit(handler.path)
        path = unquote(split.path)
        if len(path) > 1:
            path = path.rstrip("/")
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        body = self._read_body(handler)
        if path == "/_sim" or path.startswith("/_sim/"):
            reply = self._admin(handler, method, path, body)
        else:
            received = self.clock()
            key = self._key(handler, query)
            query.pop("apiKey", None)
            try:
                reply = self._respond(method, path, query, key, received)
            except Exception:  # noqa: BLE001 - a bug here must still answer like a server
                reply = _error(500, "ERROR", "Internal Server Error")
            self._record(SimulatorRequest(received, path, query, key_id(key), reply.status))
        self._send(handler, reply)

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        """Drain any request body so a keep-alive connection stays in step."""
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _key(handler: BaseHTTPRequestHandler, query: dict[str, str]) -> str | None:
        """The key from `Authorization: Bearer KEY`, else from `apiKey=`; None if neither."""
        auth = handler.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return query.get("apiKey") or None

    def _admit(self, key_hash: str, now: float) -> bool:
        """Charge one request to the key's sliding window; False if it is over budget.

        Every request is charged, a rejected (429) one included, because the real API counts
        every request: a client that keeps hammering stays locked out until it pauses.
        """
        if self.rate_limit_calls is None:
            return True
        with self._lock:
            window = self._windows.setdefault(key_hash, deque())
            while window and window[0] <= now - self.rate_limit_window:
                window.popleft()
            window.append(now)
            return len(window) <= self.rate_limit_calls

    def _faults_for(self, path: str, tickers: list[str]) -> list[Fault]:
        """The faults matching this request; counted ones are spent by it."""
        return self._take_faults(
            lambda fault: (
                (fault.path_prefix is None or path.startswith(fault.path_prefix))
                and (fault.ticker is None or fault.ticker in tickers)
            )
        )

    def _respond(
        self, method: str, path: str, query: dict[str, str], key: str | None, now: float
    ) -> Reply:
        """Auth, then budget, then faults and entitlement, then the endpoint itself."""
        if not key:
            return _error(401, "ERROR", MISSING_KEY_TEXT)
        if self.api_keys is not None and key not in self.api_keys:
            return _error(401, "ERROR", UNKNOWN_KEY_TEXT)
        if not self._admit(key_id(key), now):
            return _error(429, "ERROR", RATE_LIMIT_TEXT)
        try:
            route = self._route(method, path, query)
        except _HttpError as exc:
            failure = exc
            route = _Route(lambda _call: json_reply(failure.status, failure.payload))
        faults = self._faults_for(path, route.tickers)
        kinds = {fault.kind for fault in faults}
        delay = max((f.delay for f in faults if f.kind == "timeout"), default=0.0)
        if "rate_limited" in kinds:
            reply = _error(429, "ERROR", RATE_LIMIT_TEXT)
        elif "http_500" in kinds:
            reply = _error(500, "ERROR", "Internal Server Error")
        elif "http_502" in kinds:
            reply = _load_balancer_reply(502)
        elif "http_503" in kinds:
            reply = _load_balancer_reply(503)
        elif refusal := NOT_AUTHORIZED_TEXT if "forbidden" in kinds else self._refusal(route, now):
            reply = _error(403, "NOT_AUTHORIZED", refusal)
        else:
            call = _Call(now, self.market_hours, faults, delayed=self.plan == "free")
            try:
                reply = route.render(call)
            except _HttpError as exc:
                reply = json_reply(exc.status, exc.payload)
            if "malformed" in kinds and reply.status == 200:
                # Cut mid-object: the body starts like JSON and cannot be parsed.
                reply = Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        reply.delay = delay
        return reply

    def _refusal(self, route: _Route, now: float) -> str | None:
        """The plan's 403 message for this request, or None if the plan serves it.

        `free` (Basic): no snapshot and no v1 last quote/trade; bars end-of-day only, back
        `FREE_HISTORY_YEARS`. `starter_no_multi`: everything but the multi-ticker snapshots.
        """
        if self.plan == "starter_no_multi":
            return NOT_AUTHORIZED_TEXT if route.multi else None
        if self.plan != "free":
            return None
        if route.kind in ("snapshot", "last"):
            return NOT_AUTHORIZED_TEXT
        if route.span_ms is not None and not _free_plan_covers(route.span_ms, now):
            return TIMEFRAME_TEXT
        return None

    def _route(self, method: str, path: str, query: dict[str, str]) -> _Route:
        """Match the path to an endpoint and parse its parameters (400 on bad ones)."""
        if method != "GET":
            raise _not_found("Route not found.")
        match path.split("/")[1:]:
            case [
                "v2",
                "snapshot",
                "locale",
                "global",
                "markets",
                "forex" | "crypto" as m,
                "tickers",
            ]:
                return _route_v2_multi(m, query)
            case [
                "v2",
                "snapshot",
                "locale",
                "global",
                "markets",
                "forex" | "crypto" as m,
                "tickers",
                ticker,
            ]:
                return _route_v2_single(m, ticker)
            case ["v3", "snapshot"]:
                return _route_v3(path, query, indices_only=False, page_cap=self.page_size_cap)
            case ["v3", "snapshot", "indices"]:
                return _route_v3(path, query, indices_only=True, page_cap=self.page_size_cap)
            case ["v1", "last_quote", "currencies", base, quote_ccy]:
                return _route_v1_forex(base, quote_ccy)
            case ["v1", "last", "crypto", base, quote_ccy]:
                return _route_v1_crypto(base, quote_ccy)
            case ["v2", "aggs", "ticker", ticker, "range", multiplier, timespan, start, end]:
                return _route_aggs_range(ticker, multiplier, timespan, start, end, query)
            case ["v2", "aggs", "ticker", ticker, "prev"]:
                return _route_aggs_prev(ticker, query)
            case ["v2", "aggs", "grouped", "locale", "global", "market", "fx" | "crypto" as m, day]:
                return _route_aggs_grouped(m, day, query)
        raise _not_found("Route not found.")

    # admin

    def _admin(self, handler: BaseHTTPRequestHandler, method: str, path: str, body: bytes) -> Reply:
        """`/_sim/...`: read the log, arm or clear faults, reset. Loopback callers only."""
        if not handler.client_address[0].startswith(self._LOOPBACK):
            return json_reply(403, {"status": "ERROR", "error": "admin is loopback only"})
        if method == "GET" and path == "/_sim/log":
            return json_reply(200, [entry.to_dict() for entry in self.requests])
        if method == "GET" and path == "/_sim/faults":
            return json_reply(200, [asdict(fault) for fault in self.faults])
        if method == "POST" and path == "/_sim/faults":
            try:
                data = json.loads(body or b"null")
                items = data if isinstance(data, list) else [data]
                faults = [Fault.from_dict(item) for item in items]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return json_reply(400, {"status": "ERROR", "error": f"bad fault: {exc}"})
            for fault in faults:
                self.add_fault(fault)
            return json_reply(200, {"status": "OK", "armed": len(self.faults)})
        if method == "DELETE" and path == "/_sim/faults":
            self.clear_faults()
            return json_reply(200, {"status": "OK"})
        if method == "POST" and path == "/_sim/reset":
            self.reset()
            return json_reply(200, {"status": "OK"})
        return json_reply(404, {"status": "NOT_FOUND", "message": "No such admin endpoint."})
