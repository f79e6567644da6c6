"""Kraken's public REST bodies -> `Quote`s, `Bar`s and the vendor-neutral errors. Pure: no HTTP.

Read as the recorded answers show them (assets_pipeline_tests/data/kraken/): prices are decimal
strings, errors come inside a 200 as `E<category>:<message>` strings, a pair may be answered
under another name than asked (`XBTUSD` as `XXBTZUSD`), the last OHLC entry is the open one.
Every value is checked in time linear in the body; anything unexpected is refused, never guessed."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from assets_pipeline.http.errors import (
    MalformedResponse,
    PermanentError,
    PolygonError,
    RateLimited,
    RetryableError,
    TickerNotFound,
    classify_status,
)
from assets_pipeline.polygon.parsing import MAX_ERROR_BODY, Bar, load_json
from assets_pipeline.rules.excerpts import clip, excerpt
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe

SOURCE_TICKER = "kraken:v0-public-ticker"
SOURCE_OHLC = "kraken:v0-public-ohlc"
#: The plan every quote is served under: Kraken's public, keyless market data.
PLAN = "public"
#: Kraken's codes for assets the platform names otherwise (Kraken lists bitcoin as XBT).
ASSET_CODES = {"BTC": "XBT", "DOGE": "XDG"}
#: The names Kraken answers under, for pairs asked by altname where the two differ: its older
#: pairs keep X/Z-prefixed names (recorded AssetPairs: `XXBTZUSD` is altname `XBTUSD`, `XETHXXBT`
#: is `ETHXBT`); newer ones answer under the altname itself (recorded: `XBTUSDT`).
RESULT_KEYS = {
    "XBTUSD": "XXBTZUSD",
    "XBTEUR": "XXBTZEUR",
    "ETHUSD": "XETHZUSD",
    "ETHEUR": "XETHZEUR",
    "ETHXBT": "XETHXXBT",
}
#: Errors that say "too many requests": every caller pauses (documented, and observed in a 200).
RATE_LIMIT_ERRORS = (
    "EAPI:Rate limit exceeded",
    "EGeneral:Too many requests",
    "EGeneral:Temporary lockout",
    "EService:Throttled",
    "EService: Throttled",
)
#: Errors worth another attempt: the service's state, not the request's.
RETRYABLE_ERRORS = ("EService:", "EGeneral:Internal error", "EDatabase:")
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
#: A price, volume or VWAP as Kraken writes it: plain digits, at most one point, bounded length
#: (no sign, exponent, `NaN` or `Infinity`: `float()` would take those).
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18})?")
_CODE = re.compile(r"[A-Z0-9]{2,10}")
#: Kraken's clock is read as a Unix time in seconds; earlier than this is not Kraken's now.
EARLIEST_TIME = 1_262_304_000  # 2010-01-01
DAY_SECONDS = 86_400


def pair_for(base: str, quote: str) -> str | None:
    """Kraken's altname for `base`/`quote` (`BTC`/`USD` -> `XBTUSD`), or None if either code is not
    a plain asset code."""
    codes = [ASSET_CODES.get(code, code) for code in (base.upper(), quote.upper())]
    if not all(_CODE.fullmatch(code) for code in codes):
        return None
    return "".join(codes)


def answer_keys(pair: str) -> tuple[str, ...]:
    """The result keys that answer `pair`: its altname, and its X/Z name where it has one."""
    other = RESULT_KEYS.get(pair)
    return (pair, other) if other else (pair,)


def classify(errors: Sequence[str], pair: str | None = None) -> PolygonError:
    """The vendor-neutral error for Kraken's `error` strings (the first decides)."""
    said = clip("; ".join(errors), 300)
    first = errors[0]
    where = f" for {pair}" if pair else ""
    if first.startswith(RATE_LIMIT_ERRORS):
        return RateLimited(f"Kraken is limiting requests{where}: {said}", ticker=pair)
    if first.startswith(UNKNOWN_PAIR):
        return TickerNotFound(f"Kraken does not know the pair{where}: {said}", ticker=pair)
    if first.startswith(RETRYABLE_ERRORS):
        return RetryableError(f"Kraken's service is unavailable{where}: {said}", ticker=pair)
    return PermanentError(f"Kraken refused the request{where}: {said}", ticker=pair)


def result_of(body: Any, pair: str | None = None) -> Mapping[str, Any]:
    """The `result` of an answer whose `error` list holds no error (warnings, `W...`, pass); an
    error is raised as its class (`classify`); any other shape is a `MalformedResponse`."""
    if not isinstance(body, Mapping) or not isinstance(body.get("error", []), list):
        raise MalformedResponse("the answer is not Kraken's {error, result} envelope", ticker=pair)
    said = [e for e in body.get("error", []) if isinstance(e, str)]
    if len(said) != len(body.get("error", [])):
        raise MalformedResponse("Kraken's error list holds a value that is not text", ticker=pair)
    errors = [e for e in said if not e.startswith("W")]
    if errors:
        raise classify(errors, pair)
    result = body.get("result")
    if not isinstance(result, Mapping):
        raise MalformedResponse("Kraken's answer has no result object", ticker=pair)
    return result


def http_error(status: int, text: bytes, pair: str | None = None) -> PolygonError:
    """A non-200 answer (Kraken: "an issue with the request reaching our servers"): its status's
    class, in Kraken's own words when the body has them, else the start of the body."""
    head = text[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
    try:
        body = load_json(head, unique_keys=True)
    except MalformedResponse:
        body = None
    errors = body.get("error") if isinstance(body, Mapping) else None
    said = "; ".join(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else ""
    cls = classify_status(status)
    if cls not in (RateLimited, RetryableError):
        cls = PermanentError  # a 403/404 here is the path's or the network's, not a pair's
    where = f" for {pair}" if pair else ""
    detail = clip(said or " ".join(head[:800].split()) or "(empty body)", 200)
    return cls(f"Kraken answered {status}{where}: {detail}", status=status, ticker=pair)


def decimal(value: Any, label: str, pair: str) -> float:
    """A plain decimal string as a float, as Kraken documents its prices; anything else (a JSON
    number, an exponent, a sign) is a `QuoteRejected`."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)
    raise QuoteRejected(pair, f"{label} is not a price: {excerpt(value)}")


def _first(item: Mapping[str, Any], key: str, pair: str) -> Any:
    """The first element of the list at `key` (Kraken's `[today, last 24 hours]` and sides)."""
    value = item.get(key)
    if not isinstance(value, list) or not value:
        raise QuoteRejected(pair, f"{key!r} is not a non-empty list: {excerpt(value)}")
    return value[0]


def server_time(body: Any) -> dt.datetime:
    """Kraken's clock from a `Time` answer: `unixtime`, whole seconds, checked against its own
    `rfc1123` when that reads as a date (a body whose two clocks disagree is refused)."""
    result = result_of(body)
    stamp = result.get("unixtime")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not EARLIEST_TIME <= stamp < 2**33:
        raise MalformedResponse(f"Kraken's unixtime is not a time: {excerpt(stamp)}")
    moment = dt.datetime.fromtimestamp(stamp, dt.UTC)
    text = result.get("rfc1123")
    if isinstance(text, str) and len(text) < 64:
        try:
            other = dt.datetime.strptime(" ".join(text.split()), "%a, %d %b %y %H:%M:%S %z")
        except ValueError:
            return moment  # a format of its own: `unixtime` is the documented value
        if abs((other - moment).total_seconds()) > 1:
            raise MalformedResponse(f"Kraken's two clocks disagree: {stamp} and {text!r}")
    return moment


def ticker_quote(pair: str, item: Any, data_time: dt.datetime) -> Quote:
    """One pair's `Ticker` object as a quote at `data_time`: best bid and ask, last trade, and
    today's (since 00:00 UTC) open, high, low and volume; today's close does not exist yet."""
    if not isinstance(item, Mapping):
        raise QuoteRejected(pair, "the ticker is not an object")

    def side(key: str, label: str) -> float:
        return decimal(_first(item, key, pair), label, pair)

    return Quote(
        ticker=pair,
        data_time=data_time,
        source=SOURCE_TICKER,
        bid=side("b", "bid (b)"),
        ask=side("a", "ask (a)"),
        last_price=side("c", "last trade (c)"),
        day_open=decimal(item.get("o"), "today's open (o)", pair),
        day_high=side("h", "today's high (h)"),
        day_low=side("l", "today's low (l)"),
        day_volume=side("v", "today's volume (v)"),
        timeframe=Timeframe.REAL_TIME,
        plan=PLAN,
        provider=ProviderName.KRAKEN,
    )


def ticker_answers(
    body: Any, asked: Sequence[str], data_time: dt.datetime
) -> dict[str, Quote | Exception]:
    """Each asked pair's quote, or the error that is its answer: a pair left out, answered under
    two names, or unreadable. An answer holding a key no asked pair answers to is refused whole:
    which of its prices is whose can no longer be told."""
    result = result_of(body)
    unasked = sorted(set(result) - {key for pair in asked for key in answer_keys(pair)})
    out: dict[str, Quote | Exception] = {}
    for pair in asked:
        found = [key for key in answer_keys(pair) if key in result]
        if unasked or len(found) != 1:
            if unasked:
                text = f"answered {clip(', '.join(unasked), 80)}, not asked: refused whole"
            else:
                text = "left it out" if not found else f"answered it twice ({', '.join(found)})"
            out[pair] = MalformedResponse(
                f"asked Kraken for {pair}; its answer {text}", ticker=pair
            )
            continue
        try:
            out[pair] = ticker_quote(pair, result[found[0]], data_time)
        except QuoteRejected as exc:
            out[pair] = MalformedResponse(clip(str(exc), 600), ticker=pair)
    return out


def ohlc_bars(body: Any, pair: str, interval_seconds: int) -> list[Bar]:
    """The committed candles of an `OHLC` answer, oldest first. The last entry is the open one
    (documented) and any after `last` is not committed: neither is returned. A candle not on the
    interval's grid, listed twice, out of order or with impossible prices refuses the answer."""
    result = result_of(body, pair)
    found = [key for key in answer_keys(pair) if key in result]
    if len(found) != 1 or set(result) - {found[0], "last"}:
        raise MalformedResponse(
            f"asked Kraken for {pair}'s candles; it answered {excerpt(list(result))}", ticker=pair
        )
    rows = result[found[0]]
    if not isinstance(rows, list):
        raise MalformedResponse(f"Kraken's candles for {pair} are not a list", ticker=pair)
    last = _committed_until(result.get("last"), pair)
    bars = [_candle(pair, row, interval_seconds) for row in rows]
    starts = [int(bar.start.timestamp()) for bar in bars]
    if any(later <= earlier for earlier, later in itertools.pairwise(starts)):
        raise MalformedResponse(
            f"Kraken listed {pair}'s candles twice or out of order", ticker=pair
        )
    return [bar for bar, start in zip(bars[:-1], starts[:-1], strict=True) if start <= last]


def _committed_until(value: Any, pair: str) -> int:
    """`last`: the start of the newest committed candle, an integer or a digit string (recorded
    both ways)."""
    if isinstance(value, str) and value.isdigit() and len(value) < 12:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MalformedResponse(f"Kraken's `last` is not a time: {excerpt(value)}", ticker=pair)


def _candle(pair: str, row: Any, interval_seconds: int) -> Bar:
    """`[time, open, high, low, close, vwap, volume, count]` as a `Bar` starting at `time`."""
    if not isinstance(row, list) or len(row) != 8:
        raise MalformedResponse(f"a candle of {pair} is not 8 values: {excerpt(row)}", ticker=pair)
    start, count = row[0], row[7]
    if isinstance(start, bool) or not isinstance(start, int) or start % interval_seconds:
        raise MalformedResponse(f"a candle of {pair} starts off the grid: {excerpt(start)}")
    try:
        o, h, low, c, vwap, volume = (decimal(v, "a candle value", pair) for v in row[1:7])
    except QuoteRejected as exc:
        raise MalformedResponse(str(exc), ticker=pair) from None
    if min(o, h, low, c) <= 0 or low > min(o, c) or h < max(o, c):
        raise MalformedResponse(f"a candle of {pair} has impossible prices: {excerpt(row)}")
    return Bar(
        ticker=pair,
        start=dt.datetime.fromtimestamp(start, dt.UTC),
        open=o,
        high=h,
        low=low,
        close=c,
        volume=volume,
        vwap=vwap or None,
        trades=count if isinstance(count, int) and not isinstance(count, bool) else None,
    )


def unique(names: Iterable[str]) -> list[str]:
    """`names` without repeats, order kept."""
    return list(dict.fromkeys(names))
