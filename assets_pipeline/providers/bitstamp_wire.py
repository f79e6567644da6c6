"""Bitstamp's public REST v2 bodies -> `Quote`s, `Bar`s and the vendor-neutral errors. No HTTP.

Read as the recorded answers show them (assets_pipeline_tests/data/bitstamp/): one flat ticker
object per pair, every value a string (prices plain decimals, `timestamp` Unix seconds), candles
under `data.ohlc`, errors as `{"status": "error", "reason": ..., "code": ...}` or `{"error": ...}`,
possibly inside a 200. Every value is checked; anything unexpected is refused, never guessed."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
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

SOURCE_TICKER = "bitstamp:v2-ticker"
#: The plan every quote is served under: Bitstamp's public, keyless market data.
PLAN = "public"
#: A price, volume or VWAP as Bitstamp writes it: plain digits, at most one point, bounded length
#: (no sign, exponent, `NaN` or `Infinity`: `float()` would take those).
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18})?")
#: An asset code as the platform names it; a pair is two of them, lower case (`btcusd`).
_CODE = re.compile(r"[A-Z0-9]{2,10}")
_PAIR = re.compile(r"[a-z0-9]{4,20}")
#: Bitstamp's times are Unix seconds; earlier than this is not a time of its answers.
EARLIEST_TIME = 1_262_304_000  # 2010-01-01
DAY_SECONDS = 86_400
#: Bitstamp's `response_code`s for "too many requests" (its documented response codes); and
#: words of a reason that say so.
RATE_LIMIT_CODES = ("400.002", "400.067", "400.068")
RATE_LIMIT_WORDS = ("rate limit", "too many requests")


def pair_for(base: str, quote: str) -> str | None:
    """Bitstamp's market symbol for `base`/`quote` (`BTC`/`USD` -> `btcusd`), or None if either
    code is not a plain asset code."""
    codes = (base.upper(), quote.upper())
    if not all(_CODE.fullmatch(code) for code in codes):
        return None
    return "".join(codes).lower()


def is_pair(name: str) -> bool:
    """Whether `name` can go in a request path as a pair: lower-case letters and digits only."""
    return bool(_PAIR.fullmatch(name))


def decimal(value: Any, label: str, pair: str) -> float:
    """A plain decimal string as a float, as Bitstamp writes its prices; anything else (a JSON
    number, an exponent, a sign, a word) is a `QuoteRejected`."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)
    raise QuoteRejected(pair, f"{label} is not a price: {excerpt(value)}")


def unix_time(value: Any, label: str, pair: str | None = None) -> dt.datetime:
    """Unix seconds as Bitstamp writes them (a digit string; an integer also read), in UTC."""
    if isinstance(value, str) and value.isdigit() and len(value) < 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not EARLIEST_TIME <= value < 2**33:
        raise MalformedResponse(f"Bitstamp's {label} is not a time: {excerpt(value)}", ticker=pair)
    return dt.datetime.fromtimestamp(value, dt.UTC)


def error_in(body: Any, pair: str | None = None) -> PolygonError | None:
    """The error a body says it is (`status: error`, or an `error` text), else None."""
    if not isinstance(body, Mapping):
        return None
    if body.get("status") != "error" and not body.get("error"):
        return None
    return classify(body, pair)


def classify(body: Mapping[str, Any], pair: str | None = None) -> PolygonError:
    """The vendor-neutral error for an error body: a rate limit (by code or words) is retried with
    the budget paused; anything else Bitstamp refused is permanent."""
    said = clip(describe(body), 300)
    where = f" for {pair}" if pair else ""
    code = str(body.get("code") or body.get("response_code") or "")
    if code in RATE_LIMIT_CODES or any(w in said.lower() for w in RATE_LIMIT_WORDS):
        return RateLimited(f"Bitstamp is limiting requests{where}: {said}", ticker=pair)
    return PermanentError(f"Bitstamp refused the request{where}: {said}", ticker=pair)


def describe(body: Mapping[str, Any]) -> str:
    """Bitstamp's own words in an error body: its reason (a text, or lists per field), error,
    message and code, as one line."""
    parts: list[str] = []
    for key in ("reason", "error", "message", "response_explanation"):
        value = body.get(key)
        if isinstance(value, Mapping):
            value = "; ".join(f"{k}: {excerpt(v)}" for k, v in value.items())
        if value:
            parts.append(value if isinstance(value, str) else excerpt(value))
    code = body.get("code") or body.get("response_code")
    if code:
        parts.append(f"(code {excerpt(code)})")
    return " ".join(parts) or excerpt(dict(body))


def http_error(status: int, text: bytes, pair: str | None = None) -> PolygonError:
    """A non-200 answer: a 404 for a pair is that pair unknown (Bitstamp's path names it); a 429
    or a rate-limit code a rate limit; a 5xx retryable; any other refusal permanent."""
    head = text[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
    try:
        body = load_json(head, unique_keys=True)
    except MalformedResponse:
        body = None
    said = describe(body) if isinstance(body, Mapping) else " ".join(head[:800].split())
    detail = clip(said or "(empty body)", 200)
    where = f" for {pair}" if pair else ""
    message = f"Bitstamp answered {status}{where}: {detail}"
    if status == 404 and pair:
        return TickerNotFound(message, status=status, ticker=pair)
    if isinstance(body, Mapping) and isinstance(classify(body, pair), RateLimited):
        return RateLimited(message, status=status, ticker=pair)
    cls = classify_status(status)
    if cls not in (RateLimited, RetryableError):
        cls = PermanentError  # a 403 here is the network's, not a plan's: there is no plan
    return cls(message, status=status, ticker=pair)


def ticker_quote(pair: str, body: Any) -> Quote:
    """A `ticker` answer as a quote at Bitstamp's `timestamp`: best bid and ask, the last trade
    and the day's first price (`open`). `high`, `low` and `volume` cover the last 24 hours, not
    the UTC day, so they are not given as the day's; today's close does not exist yet."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"Bitstamp's ticker for {pair} is not an object", ticker=pair)
    named = body.get("pair")
    if named is not None and (not isinstance(named, str) or named.replace("/", "").lower() != pair):
        # whose prices these are can no longer be told: none of them is taken
        raise MalformedResponse(
            f"Bitstamp answered the ticker of {excerpt(named)} when asked for {pair}", ticker=pair
        )
    moment = unix_time(body.get("timestamp"), "ticker timestamp", pair)
    return Quote(
        ticker=pair,
        data_time=moment,
        source=SOURCE_TICKER,
        bid=decimal(body.get("bid"), "bid", pair),
        ask=decimal(body.get("ask"), "ask", pair),
        last_price=decimal(body.get("last"), "last trade (last)", pair),
        day_open=decimal(body.get("open"), "the day's first price (open)", pair),
        timeframe=Timeframe.REAL_TIME,
        plan=PLAN,
        provider=ProviderName.BITSTAMP,
    )


def ohlc_bars(body: Any, pair: str, step: int) -> list[Bar]:
    """The candles of an `ohlc` answer, oldest first, each starting on the step's grid. A candle
    listed twice, off the grid or with impossible prices refuses the answer. Which are closed is
    for the caller to judge (Bitstamp lists the running one too)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    rows = data.get("ohlc") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        raise MalformedResponse(f"Bitstamp's answer has no candles for {pair}", ticker=pair)
    bars = sorted((_candle(pair, row, step) for row in rows), key=lambda bar: bar.start)
    starts = [bar.start for bar in bars]
    if len(set(starts)) != len(starts):
        raise MalformedResponse(f"Bitstamp listed a candle of {pair} twice", ticker=pair)
    return bars


def _candle(pair: str, row: Any, step: int) -> Bar:
    """`{timestamp, open, high, low, close, volume}`, all strings, as a `Bar` from `timestamp`."""
    if not isinstance(row, Mapping):
        raise MalformedResponse(f"a candle of {pair} is not an object: {excerpt(row)}", ticker=pair)
    start = unix_time(row.get("timestamp"), "candle timestamp", pair)
    if int(start.timestamp()) % step:
        raise MalformedResponse(f"a candle of {pair} starts off the grid: {start}", ticker=pair)
    try:
        o, h, low, c, volume = (
            decimal(row.get(key), f"a candle's {key}", pair)
            for key in ("open", "high", "low", "close", "volume")
        )
    except QuoteRejected as exc:
        raise MalformedResponse(str(exc), ticker=pair) from None
    if min(o, h, low, c) <= 0 or low > min(o, c) or h < max(o, c):
        raise MalformedResponse(f"a candle of {pair} has impossible prices: {excerpt(row)}")
    return Bar(pair, start, o, h, low, c, volume, vwap=None, trades=None)
