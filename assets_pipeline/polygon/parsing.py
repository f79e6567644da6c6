"""Polygon JSON bodies -> `Quote`s, `Bar`s and classified errors. Pure: no HTTP, no clock.

Bounded and linear: at most `MAX_JSON_TOKENS` values, strings of `MAX_JSON_STRING` characters,
`MAX_JSON_DEPTH` levels, and no backtracking regex on a body. It reads the shapes and quirks of the
recorded answers it is tested against, not the spec's: docs/design/polygon-wire-format.md."""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    PermanentError,
    PolygonError,
    TickerNotFound,
    classify_status,
)
from assets_pipeline.http.transport import api_target
from assets_pipeline.rules.excerpts import clip, excerpt
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe
from assets_pipeline.rules.taxonomy import AssetType

T = TypeVar("T")
#: Polygon's answers nest 5 deep; anything far deeper is not one of them.
MAX_JSON_DEPTH = 64
#: At most this many JSON values in a body, counted generously before anything is built (each
#: `,` `:` `[` `{` and each pair of `"`): a 50,000-bar aggregates page has about 1.3 million,
#: and 18 MB of tiny values would otherwise take some 600 MB to build.
MAX_JSON_TOKENS = 2_000_000
#: No string in a Polygon answer (a ticker, a name, a `next_url`, a message) comes near this.
MAX_JSON_STRING = 64 * 1024
#: Only this much of a non-200 body is read: what an error has to say is at its start.
MAX_ERROR_BODY = 64 * 1024
#: The scanner's tokens: a string (its closing quote optional, so an unterminated one ends the
#: scan in one match instead of being tried again from each later quote), an opening bracket,
#: a closing one. Possessive: nothing is ever backtracked into, so each character is read once.
_TOKEN = re.compile(r'(")[^"\\]*+(?:\\.[^"\\]*+)*+"?|([\[{])|[\]}]', re.DOTALL)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
SOURCE_V2 = "polygon:v2-snapshot"
SOURCE_V3 = "polygon:v3-snapshot"
SOURCE_GROUPED = "polygon:v2-aggs-grouped-daily"
SOURCE_PREV = "polygon:v2-aggs-prev"


@dataclass(frozen=True)
class Bar:
    """One aggregate bar; `start` is the window's start in UTC."""

    ticker: str
    start: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    vwap: float | None
    trades: int | None


def epoch_to_utc(value: Any, field: str = "timestamp") -> dt.datetime:
    """Read an epoch in s, ms, us or ns, judged by magnitude (Polygon mixes ms and ns)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedResponse(f"{field} is not an epoch number: {value!r}")
    magnitude = abs(value)
    if magnitude >= 1e17:
        seconds = value / 1e9
    elif magnitude >= 1e14:
        seconds = value / 1e6
    elif magnitude >= 1e11:
        seconds = value / 1e3
    else:
        seconds = float(value)
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedResponse(f"{field} is out of range: {value!r}") from exc


def load_json(text: str | bytes, *, unique_keys: bool = False) -> Any:
    """Parse a body; anything that is not JSON, or is far larger or deeper than any Polygon
    answer (see `check_structure`), is a retryable `MalformedResponse`; with `unique_keys`, so
    is an object that names a key twice (which of the two would be the answer?). The checks come
    before parsing: letting the parser hit Python's recursion limit is not merely an error
    (CPython 3.11 can be left unable to parse source afterwards, in the same thread)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        check_structure(text)
        return json.loads(text, object_pairs_hook=_unique_object if unique_keys else None)
    except _KeyTwice as exc:
        raise MalformedResponse(f"the body is ambiguous: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedResponse(f"the body is not valid JSON ({exc.__class__.__name__})") from exc


class _KeyTwice(ValueError):
    """An object of the body names one key twice."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        twice = next(key for n, key in enumerate(keys) if key in keys[:n])
        raise _KeyTwice(f"the key {twice[:40]!r} is written twice in one object")
    return obj


def check_structure(text: str) -> None:
    """Refuse (`MalformedResponse`) a body with more than `MAX_JSON_TOKENS` values, a string
    longer than `MAX_JSON_STRING` or nesting deeper than `MAX_JSON_DEPTH`, in time linear in
    its length and before anything is built from it."""
    tokens = sum(map(text.count, ",:[{")) + text.count('"') // 2
    if tokens > MAX_JSON_TOKENS:
        raise MalformedResponse(
            f"the body holds about {tokens:,} JSON values (at most {MAX_JSON_TOKENS:,})"
        )
    depth = deepest = 0
    for token in _TOKEN.finditer(text):
        kind = token.lastindex
        if kind == 1:
            if token.end() - token.start() > MAX_JSON_STRING:
                raise MalformedResponse(
                    f"the body holds a string of over {MAX_JSON_STRING:,} characters"
                )
        elif kind == 2:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise MalformedResponse(f"the body nests {deepest} deep (at most {MAX_JSON_DEPTH})")


def error_from_response(status: int, text: str | bytes, ticker: str | None = None) -> PolygonError:
    """A classified error for a non-2xx answer, with Polygon's own words when it gave any. Only
    the body's first `MAX_ERROR_BODY` characters are read, under the same guards as a 200's;
    the words kept are short and safe to store and print (no NUL, no lone surrogate)."""
    head = text[:MAX_ERROR_BODY]
    if isinstance(head, bytes):
        head = head.decode("utf-8", errors="replace")
    try:
        body = load_json(head)
    except MalformedResponse:
        body = None
    return _classified(status, body, head, ticker)


def _classified(status: int, body: Any, head: str, ticker: str | None) -> PolygonError:
    """The error for `status`, in the body's words (`error`, `message`), else the HTML page's
    title, else the start of the text."""
    code = detail = ""
    if isinstance(body, Mapping):
        code = _said(body.get("status"), 40)
        detail = _said(body.get("error") or body.get("message"))
    if not detail:
        detail = _html_title(head) or _said(head, 200) or "(empty body)"
    cls = classify_status(status)
    where = f" for {ticker}" if ticker else ""
    label = f"{status} {code}".strip()
    return cls(f"Polygon answered {label}{where}: {detail}", status=status, ticker=ticker)


def _said(value: Any, limit: int = 300) -> str:
    """What an answer said, on one line, at most `limit` characters, safe to store and print."""
    if not value:
        return ""
    if not isinstance(value, str):
        return clip(excerpt(value), limit)
    return clip(" ".join(value[: 4 * limit].split()), limit)


def _html_title(text: str) -> str:
    """A proxy's or load balancer's HTML page says it all in its title (found with `find`: no
    regex backtracks over an untrusted page)."""
    lowered = text.translate(_ASCII_LOWER)  # the same length as `text`, unlike `str.lower`
    start = lowered.find("<title>")
    end = lowered.find("</title>", start + 7) if start >= 0 else -1
    if end < 0:
        return ""
    title = _said(text[start + 7 : end])
    return f"{title} (HTML page)" if title else ""


def next_url_path(next_url: Any) -> str | None:
    """The path and query of a `next_url`, checked as one of the API's (`api_target`); its
    scheme and host are dropped: the next page is asked of the configured base URL.

    Any `apiKey` parameter is dropped, so a key never rides along in a URL we log or request.
    Anything that is not such a URL (`5/v3/x`, `.evil.example/v3/x`, `@host/x`, `/v3/../x`) is a
    `MalformedResponse`.
    """
    if not next_url:
        return None
    if not isinstance(next_url, str):
        raise MalformedResponse(f"next_url is not a string: {excerpt(next_url)}")
    try:
        parts = urlsplit(next_url)
    except ValueError:
        raise MalformedResponse(f"next_url is not a URL: {excerpt(next_url)}") from None
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("apikey="))
    return api_target(parts.path + (f"?{query}" if query else ""))


def _object(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{key!r} is not an object")
    return value


def _number(ticker: str, obj: Mapping[str, Any], key: str, label: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QuoteRejected(ticker, f"{label} is not a number: {excerpt(value)}")
    try:
        return float(value)
    except OverflowError:
        raise QuoteRejected(ticker, f"{label} is out of range: {excerpt(value)}") from None


def _day_value(ticker: str, obj: Mapping[str, Any], key: str, label: str) -> float | None:
    """Day-bar values are 0 before the day's first trade: that means unknown, not a price of 0."""
    value = _number(ticker, obj, key, label)
    return None if value == 0 else value


def _mid(bid: float | None, ask: float | None) -> float | None:
    return (bid + ask) / 2 if bid is not None and ask is not None else None


def _require_ok(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedResponse("the body is not a JSON object")
    status = str(body.get("status", "OK")).upper()
    if status not in ("OK", "SUCCESS", "DELAYED"):
        raise _classified(200, body, excerpt(body), None)
    return body


def parse_v2_ticker(item: Any, timeframe: Timeframe = Timeframe.REAL_TIME) -> Quote:
    """One v2 snapshot ticker object (forex has `lastQuote`, crypto `lastTrade`)."""
    if not isinstance(item, Mapping) or not isinstance(item.get("ticker"), str):
        raise MalformedResponse("a v2 snapshot ticker object has no 'ticker'")
    ticker = item["ticker"]
    last_quote = _object(item, "lastQuote")
    last_trade = _object(item, "lastTrade")
    day = _object(item, "day")
    bid = _number(ticker, last_quote, "b", "bid (lastQuote.b)")
    ask = _number(ticker, last_quote, "a", "ask (lastQuote.a)")
    trade_price = _number(ticker, last_trade, "p", "last price (lastTrade.p)")
    day_close = _day_value(ticker, day, "c", "day close (day.c)")
    if AssetType.of_ticker(ticker) is AssetType.CRYPTO:  # a trade, with its own time
        _require_own_price(ticker, trade_price, "lastTrade.p", last_trade.get("t"), "lastTrade.t")
        data_time = epoch_to_utc(last_trade["t"], "lastTrade.t")
    else:  # forex and metals: both sides of a quote, with its own time
        _require_quote(ticker, bid, ask, "lastQuote.b", "lastQuote.a")
        _require_own_price(ticker, bid, "lastQuote.b", last_quote.get("t"), "lastQuote.t")
        data_time = epoch_to_utc(last_quote["t"], "lastQuote.t")
    return Quote(
        ticker=ticker,
        data_time=data_time,
        source=SOURCE_V2,
        bid=bid,
        ask=ask,
        last_price=trade_price if trade_price is not None else _mid(bid, ask),
        day_open=_day_value(ticker, day, "o", "day open (day.o)"),
        day_high=_day_value(ticker, day, "h", "day high (day.h)"),
        day_low=_day_value(ticker, day, "l", "day low (day.l)"),
        day_close=day_close,
        day_volume=_number(ticker, day, "v", "day volume (day.v)"),
        timeframe=timeframe,
        provider=ProviderName.POLYGON,
    )


def parse_v2_single(body: Any) -> Quote:
    """`/v2/snapshot/locale/global/markets/{forex,crypto}/tickers/{ticker}`; an envelope whose
    `status` is `DELAYED` makes the quote delayed."""
    return _guarded(lambda: parse_v2_ticker(_require_ok(body).get("ticker"), _envelope(body)))


def parse_v2_market(body: Any) -> dict[str, Quote | PolygonError]:
    """`/v2/snapshot/locale/global/markets/{forex,crypto}/tickers?tickers=A,B`: each listed
    ticker's quote or its own error (unknown tickers are left out, see `answers_for`)."""

    def page() -> dict[str, Quote | PolygonError]:
        ok = _require_ok(body)
        items = ok.get("tickers") or []
        if not isinstance(items, list):
            raise MalformedResponse("'tickers' is not a list")
        timeframe = _envelope(ok)
        return _collect(items, lambda item: parse_v2_ticker(item, timeframe))

    return _guarded(page)


def _envelope(body: Mapping[str, Any]) -> Timeframe:
    delayed = str(body.get("status", "")).upper() == "DELAYED"
    return Timeframe.DELAYED if delayed else Timeframe.REAL_TIME


def _item_timeframe(*parts: Mapping[str, Any]) -> Timeframe:
    """A v3 item's own word on its timeframe (`last_quote.timeframe`, `last_trade.timeframe`,
    `timeframe`): `DELAYED` if any says so, else real time."""
    said = {str(part.get("timeframe", "")).upper() for part in parts}
    return Timeframe.DELAYED if "DELAYED" in said else Timeframe.REAL_TIME


def _guarded(parse: Callable[[], T]) -> T:
    """Whatever an answer makes the parser raise is one of ours: a rejected quote, a classified
    Polygon error, or a retryable `MalformedResponse`; never an exception that escapes."""
    try:
        return parse()
    except (PolygonError, QuoteRejected):
        raise
    except Exception as exc:  # noqa: BLE001 - RecursionError, OverflowError, TypeError ...
        raise MalformedResponse(f"the answer is unreadable ({exc.__class__.__name__})") from None


def parse_v3_item(item: Any) -> Quote:
    """One `/v3/snapshot` result: `fx` with `last_quote`, `crypto` with `last_trade`, `indices`
    with `value`. An item carrying `error` becomes the matching `PolygonError`."""
    if not isinstance(item, Mapping) or not isinstance(item.get("ticker"), str):
        raise MalformedResponse("a v3 snapshot result has no 'ticker'")
    ticker = item["ticker"]
    if item.get("error"):
        raise _v3_item_error(ticker, item)
    last_quote = _object(item, "last_quote")
    last_trade = _object(item, "last_trade")
    session = _object(item, "session")
    bid = _number(ticker, last_quote, "bid", "bid (last_quote.bid)")
    ask = _number(ticker, last_quote, "ask", "ask (last_quote.ask)")
    trade_price = _number(ticker, last_trade, "price", "last price (last_trade.price)")
    index_value = _number(ticker, item, "value", "index value (value)")
    day_close = _day_value(ticker, session, "close", "session close")
    data_time = _v3_data_time(ticker, item, last_quote, last_trade, bid, ask, trade_price)
    last_price = trade_price if trade_price is not None else index_value
    if last_price is None:
        last_price = _mid(bid, ask)
    return Quote(
        ticker=ticker,
        data_time=data_time,
        source=SOURCE_V3,
        bid=bid,
        ask=ask,
        last_price=last_price,
        day_open=_day_value(ticker, session, "open", "session open"),
        day_high=_day_value(ticker, session, "high", "session high"),
        day_low=_day_value(ticker, session, "low", "session low"),
        day_close=day_close,
        day_volume=_number(ticker, session, "volume", "session volume"),
        timeframe=_item_timeframe(item, last_quote, last_trade),
        provider=ProviderName.POLYGON,
    )


def _v3_item_error(ticker: str, item: Mapping[str, Any]) -> PolygonError:
    """The error a v3 result carries in place of a snapshot (an unknown ticker is one)."""
    code = _said(item["error"], 40)
    message = _said(item.get("message")) or code
    ticker = clip(ticker, 40)
    if code == "NOT_FOUND":
        return TickerNotFound(f"Polygon has no ticker {ticker}: {message}", ticker=ticker)
    if code == "NOT_AUTHORIZED":
        return NotEntitled(f"Polygon: not entitled to {ticker}: {message}", ticker=ticker)
    return PermanentError(f"Polygon answered {code} for {ticker}: {message}", ticker=ticker)


def _v3_data_time(
    ticker: str,
    item: Mapping[str, Any],
    last_quote: Mapping[str, Any],
    last_trade: Mapping[str, Any],
    bid: float | None,
    ask: float | None,
    trade_price: float | None,
) -> dt.datetime:
    """The time of the item's own price: its last quote's (fx), its last trade's (crypto), the
    value's (indices). An item without a price of its own is rejected, not priced by its day."""
    if AssetType.of_ticker(ticker) is AssetType.INDEX:
        if item.get("value") is None:
            raise QuoteRejected(ticker, "the index snapshot has no value")
        _require_own_price(ticker, 1.0, "value", item.get("last_updated"), "last_updated")
        return epoch_to_utc(item["last_updated"], "last_updated")
    if AssetType.of_ticker(ticker) is AssetType.CRYPTO:
        stamp = last_trade.get("participant_timestamp") or last_trade.get("sip_timestamp")
        _require_own_price(ticker, trade_price, "last_trade.price", stamp, "last_trade timestamp")
        return epoch_to_utc(stamp, "last_trade timestamp")
    _require_quote(ticker, bid, ask, "last_quote.bid", "last_quote.ask")
    stamp = last_quote.get("last_updated")
    _require_own_price(ticker, bid, "last_quote.bid", stamp, "last_quote.last_updated")
    return epoch_to_utc(stamp, "last_quote.last_updated")


def _require_quote(
    ticker: str, bid: float | None, ask: float | None, bid_field: str, ask_field: str
) -> None:
    """A forex quote has both sides: one side alone is not a price to trade on."""
    missing = [name for name, value in ((bid_field, bid), (ask_field, ask)) if value is None]
    if missing:
        raise QuoteRejected(
            ticker, f"no quote of its own: {' and '.join(missing)} missing (a day bar is no quote)"
        )


def _require_own_price(
    ticker: str, price: float | None, price_field: str, stamp: Any, stamp_field: str
) -> None:
    if price is None:
        raise QuoteRejected(ticker, f"no price of its own: {price_field} is missing")
    if stamp is None:
        raise QuoteRejected(ticker, f"the price has no time of its own: {stamp_field} is missing")


def parse_v3_snapshot(body: Any) -> tuple[dict[str, Quote | PolygonError], str | None]:
    """`/v3/snapshot` (and `/v3/snapshot/indices`): per-ticker results and the next page path."""
    return _guarded(lambda: _v3_page(body))


def _v3_page(body: Any) -> tuple[dict[str, Quote | PolygonError], str | None]:
    body = _require_ok(body)
    items = body.get("results") or []
    if not isinstance(items, list):
        raise MalformedResponse("'results' is not a list")
    return _collect(items, parse_v3_item), _next_page(body)  # type: ignore[return-value]


def _collect(items: list[Any], parse: Any) -> dict[str, Quote | PolygonError]:
    """Parse each item on its own, so one bad ticker fails only itself. An item without a
    ticker is skipped (a ticker asked for and left out: see `answers_for`); a ticker listed
    twice is that ticker's error, whichever item comes last."""
    out: dict[str, Quote | PolygonError] = {}
    twice: set[str] = set()
    for item in items:
        ticker = item.get("ticker") if isinstance(item, Mapping) else None
        if not isinstance(ticker, str):
            continue
        if ticker in out:
            twice.add(ticker)
        out[ticker] = _item_answer(parse, item, ticker)
    for ticker in twice:
        out[ticker] = _listed_twice(ticker)
    return out


def _item_answer(parse: Any, item: Mapping[str, Any], ticker: str) -> Quote | PolygonError:
    """One item's quote, or the error it is for its ticker (whatever the parser raised)."""
    try:
        return parse(item)
    except QuoteRejected as exc:  # its text names the ticker as the body spelt it
        return MalformedResponse(clip(str(exc), 600), ticker=ticker)
    except PolygonError as exc:
        exc.ticker = ticker
        return exc
    except Exception as exc:  # noqa: BLE001 - whatever breaks, it breaks this ticker only
        return MalformedResponse(
            f"the result for {excerpt(ticker)} is unreadable ({exc.__class__.__name__})",
            ticker=ticker,
        )


def _listed_twice(ticker: str) -> MalformedResponse:
    return MalformedResponse(f"Polygon listed {excerpt(ticker)} twice in one answer", ticker=ticker)


def merge_page(
    answers: dict[str, Quote | PolygonError], page: Mapping[str, Quote | PolygonError]
) -> None:
    """Add one page's answers to the earlier pages'; a ticker on two pages is listed twice."""
    for ticker, answer in page.items():
        answers[ticker] = _listed_twice(ticker) if ticker in answers else answer


def answers_for(
    results: Mapping[str, Quote | PolygonError], tickers: Iterable[str]
) -> dict[str, Quote | PolygonError]:
    """Each asked ticker's answer, matched exactly (tickers are case-sensitive, as the vendor
    documents). A v3 answer names an unknown ticker with a NOT_FOUND item, so a ticker left out
    (an empty `results`, an item without its ticker) or answered only in another case is a
    retryable `MalformedResponse`, never a permanent not-found."""
    out: dict[str, Quote | PolygonError] = {}
    folded: dict[str, str] | None = None
    for ticker in tickers:
        if ticker in results:
            out[ticker] = results[ticker]
            continue
        if folded is None:
            folded = {key.upper(): key for key in results}
        other = folded.get(ticker.upper())
        if other is not None:
            text = f"asked for {ticker}, Polygon answered {excerpt(other)}: the case differs"
        else:
            text = f"Polygon's answer left {ticker} out"
        out[ticker] = MalformedResponse(text, ticker=ticker)
    return out


def parse_aggs(body: Any) -> tuple[list[Bar], str | None]:
    """`/v2/aggs/...`: bars (none when `results` is absent or null) and the next page path."""
    return _guarded(lambda: _aggs(body))


def _aggs(body: Any) -> tuple[list[Bar], str | None]:
    body = _require_ok(body)
    ticker = str(body.get("ticker", ""))
    items = body.get("results") or []
    if not isinstance(items, list):
        raise MalformedResponse("'results' is not a list")
    bars = [_bar(_named(item, ticker), item) for item in items]
    return bars, _next_page(body)  # type: ignore[return-value]


def _next_page(body: Mapping[str, Any]) -> str | MalformedResponse | None:
    """The page's `next_url` as a path, or the reason it was refused: the page's own answers
    still count; only the walk ends (`PolygonClient.pages` raises it after the page)."""
    try:
        return next_url_path(body.get("next_url"))
    except MalformedResponse as exc:
        return exc


def _named(item: Any, ticker: str) -> str:
    """A bar's own ticker (`T`, as `prev` answers carry it), else its envelope's."""
    named = item.get("T") if isinstance(item, Mapping) else None
    return named if isinstance(named, str) and named else ticker


def _bar(ticker: str, item: Any) -> Bar:
    if not isinstance(item, Mapping):
        raise MalformedResponse("a bar is not an object")
    values = {}
    for key in ("o", "h", "l", "c"):
        value = _number(ticker, item, key, f"bar {key}")
        if value is None:
            raise MalformedResponse(f"a bar of {ticker} has no {key!r}")
        values[key] = value
    trades = item.get("n")
    return Bar(
        ticker=ticker,
        start=epoch_to_utc(item.get("t"), "bar t"),
        open=values["o"],
        high=values["h"],
        low=values["l"],
        close=values["c"],
        volume=_number(ticker, item, "v", "bar v"),
        vwap=_number(ticker, item, "vw", "bar vw"),
        trades=int(trades) if isinstance(trades, int | float) else None,
    )


def parse_grouped(body: Any) -> dict[str, Bar]:
    """`/v2/aggs/grouped/locale/global/market/{fx|crypto}/{date}`: one day bar per ticker (`T`);
    none for a day without trading. A bar that does not parse is left out, not fatal: its
    ticker is then asked for on its own."""
    return _guarded(lambda: _grouped(body))


def _grouped(body: Any) -> dict[str, Bar]:
    body = _require_ok(body)
    items = body.get("results") or []
    if not isinstance(items, list):
        raise MalformedResponse("'results' is not a list")
    bars: dict[str, Bar] = {}
    twice: set[str] = set()
    for item in items:
        ticker = item.get("T") if isinstance(item, Mapping) else None
        if not isinstance(ticker, str):
            continue
        if ticker in bars:
            twice.add(ticker)  # two bars for one ticker: neither can be trusted
        try:
            bars[ticker] = _bar(ticker, item)
        except (MalformedResponse, QuoteRejected):
            continue
    return {ticker: bar for ticker, bar in bars.items() if ticker not in twice}


def bar_quote(bar: Bar, source: str, data_time: dt.datetime) -> Quote:
    """A plan without snapshots gets the newest day bar it serves: its close is the last price,
    as of `data_time`, the close of the session the bar covers (the caller knows the day and the
    market's calendar; the bar's `t` means different instants on different endpoints). Bid, ask
    and spread stay null, never 0."""
    return Quote(
        ticker=bar.ticker,
        data_time=data_time,
        source=source,
        last_price=bar.close,
        day_open=bar.open,
        day_high=bar.high,
        day_low=bar.low,
        day_close=bar.close,
        day_volume=bar.volume,
        timeframe=Timeframe.END_OF_DAY,
        provider=ProviderName.POLYGON,
    )
