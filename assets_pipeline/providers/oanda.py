"""OANDA's v20 REST API on an fxTrade Practice account: live forex and metals bid and ask for
many instruments in one pricing call, and daily candles aligned on 00:00 UTC (a bar's day is the
platform's UTC day). Every request is one GET to the base URL's origin (`http/paid.py`), paid
from the budget before it is sent, retries included; the token goes only in the Authorization
header and every message is redacted. Why OANDA, and its wire format: docs/providers.md."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from assets_pipeline.budget.interface import BudgetError, CallBudget
from assets_pipeline.config.registry import AssetType, SymbolSpec
from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    PermanentError,
    PolygonError,
    RateLimited,
    RetryableError,
    TickerNotFound,
)
from assets_pipeline.http.paid import PaidClient
from assets_pipeline.http.transport import api_target
from assets_pipeline.polygon.parsing import MAX_ERROR_BODY, Bar, load_json
from assets_pipeline.rules.clock import utcnow
from assets_pipeline.rules.excerpts import clip, excerpt, without_secret
from assets_pipeline.rules.providers import BASE_URLS, ProviderName
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe, validate_quote

NAME = ProviderName.OANDA
#: Where a free practice account is served (fxTrade Practice); live accounts use api-fxtrade.
PRACTICE_URL = BASE_URLS[ProviderName.OANDA]
SOURCE_PRICING = "oanda:v3-pricing"
#: The plan every OANDA quote is served under: a free fxTrade Practice account.
PLAN = "practice"
#: OANDA documents no cap on `instruments`; 50 keeps a request line near 400 characters.
TICKERS_PER_CALL = 50
#: The most candles one request may return (the documented maximum of `count`).
MAX_CANDLES = 5000
#: Daily candles are asked aligned on midnight UTC, not OANDA's default 17:00 New York.
DAILY_ALIGNMENT = {"dailyAlignment": 0, "alignmentTimezone": "UTC"}
DEFAULT_TOTAL_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 20_000_000
_ACCOUNT_ID = re.compile(r"[0-9]{1,12}(?:-[0-9]{1,12}){3}")
_INSTRUMENT = re.compile(r"[A-Z0-9]{2,12}_[A-Z0-9]{2,12}")
_CURRENCY = re.compile(r"[A-Z]{3}")
#: RFC 3339 as OANDA writes it: up to nine fraction digits, `Z` or an offset. Read only from a
#: string of at most `_MAX_STAMP` characters, so the match is linear and short.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_MAX_STAMP = 40
#: A price as OANDA writes it: digits, maybe a point and more digits; no sign, exponent or space.
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,19})?")
#: An OANDA 400 whose message names these parameters refuses the instrument itself.
_INSTRUMENT_PARAMETERS = ("'instrument'", "'instruments'")

log = logging.getLogger(__name__)


# --- the wire format, pure ------------------------------------------------------------------


def parse_time(value: Any, field: str = "time") -> dt.datetime:
    """An RFC 3339 time as OANDA sends it (`2016-10-05T05:28:16.729643492Z`), in UTC. Python's
    `fromisoformat` takes at most six fraction digits: the nanoseconds are cut to microseconds."""
    if not isinstance(value, str) or len(value) > _MAX_STAMP:
        raise MalformedResponse(f"{field} is not an RFC 3339 time: {excerpt(value)}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise MalformedResponse(f"{field} is not an RFC 3339 time: {excerpt(value)}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = dt.timedelta(0)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro
        )
        return (local - offset).replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise MalformedResponse(f"{field} is not a valid time: {excerpt(value)}") from None


def _finer_than_microseconds(value: Any) -> bool:
    """Whether an RFC 3339 time has non-zero digits past the sixth of its fraction, which
    `parse_time` would cut: a candle that starts there is not on the day's boundary."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    return bool(match and (match.group(7) or "")[6:].strip("0"))


def rfc3339(moment: dt.datetime) -> str:
    """A time as a request parameter: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal(instrument: str, value: Any, field: str) -> float:
    """A price OANDA encodes as a decimal string: finite and positive, else the quote's
    rejection (a broken value, not a broken body)."""
    if not isinstance(value, str) or not _PLAIN_DECIMAL.fullmatch(value):
        raise QuoteRejected(instrument, f"{field} is not a decimal string: {excerpt(value)}")
    try:
        number = float(value)
    except ValueError:
        raise QuoteRejected(instrument, f"{field} is not a number: {excerpt(value)}") from None
    if not math.isfinite(number):
        raise QuoteRejected(instrument, f"{field} is not a finite number ({value!r})")
    if number <= 0:
        raise QuoteRejected(instrument, f"{field} must be positive, got {value!r}")
    return number


def _best(instrument: str, buckets: Any, side: str) -> float:
    """The best price of one side's liquidity buckets (the highest bid, the lowest ask), in
    whatever order they come; an empty side is no quote (OANDA: no liquidity right now)."""
    if not isinstance(buckets, list):
        raise QuoteRejected(instrument, f"{side} is not a list: {excerpt(buckets)}")
    if not buckets:
        raise QuoteRejected(instrument, f"no {side} liquidity: {side} is empty")
    prices = []
    for bucket in buckets:
        price = bucket.get("price") if isinstance(bucket, Mapping) else None
        prices.append(_decimal(instrument, price, f"{side} price"))
    return max(prices) if side == "bids" else min(prices)


def parse_price(item: Any) -> Quote:
    """One `ClientPrice`: its best bid and ask, at the price's own `time`. A price OANDA marks
    not tradeable (the market is closed) is still the last one, with its own old time; one it
    marks `invalid` is rejected."""
    if not isinstance(item, Mapping) or not isinstance(item.get("instrument"), str):
        raise MalformedResponse("a price has no 'instrument'")
    instrument = item["instrument"]
    if item.get("status") == "invalid":
        raise QuoteRejected(instrument, "OANDA marks the price invalid")
    bid = _best(instrument, item.get("bids"), "bids")
    ask = _best(instrument, item.get("asks"), "asks")
    return Quote(
        ticker=instrument,
        data_time=parse_time(item.get("time"), f"{clip(instrument, 40)} time"),
        source=SOURCE_PRICING,
        bid=bid,
        ask=ask,
        last_price=(bid + ask) / 2,
        timeframe=Timeframe.REAL_TIME,
        plan=PLAN,
        provider=ProviderName.OANDA,
    )


def parse_pricing(body: Any, asked: Sequence[str]) -> dict[str, Quote | PolygonError]:
    """`/v3/accounts/{accountID}/pricing`: each asked instrument's quote or its own error. A
    price for an instrument not asked is refused (never returned); one asked and left out, or
    listed twice, is that instrument's retryable `MalformedResponse`."""
    if not isinstance(body, Mapping) or not isinstance(body.get("prices"), list):
        raise MalformedResponse("the pricing answer has no 'prices' list")
    wanted = set(asked)
    out: dict[str, Quote | PolygonError] = {}
    twice: set[str] = set()
    for item in body["prices"]:
        instrument = item.get("instrument") if isinstance(item, Mapping) else None
        if not isinstance(instrument, str) or instrument not in wanted:
            continue  # not asked (or no name): nothing of it is taken
        if instrument in out:
            twice.add(instrument)
        out[instrument] = _price_answer(item, instrument)
    for instrument in twice:
        out[instrument] = MalformedResponse(
            f"OANDA listed {instrument} twice in one answer", ticker=instrument
        )
    for instrument in asked:
        if instrument not in out:
            out[instrument] = MalformedResponse(
                f"OANDA's answer left {instrument} out", ticker=instrument
            )
    return out


def _price_answer(item: Mapping[str, Any], instrument: str) -> Quote | PolygonError:
    """One price's quote, or the error it is for its instrument (whatever the parser raised)."""
    try:
        return parse_price(item)
    except QuoteRejected as exc:
        return MalformedResponse(clip(str(exc), 600), ticker=instrument)
    except PolygonError as exc:
        exc.ticker = instrument
        return exc
    except Exception as exc:  # noqa: BLE001 - whatever breaks, it breaks this instrument only
        return MalformedResponse(
            f"the price of {instrument} is unreadable ({exc.__class__.__name__})",
            ticker=instrument,
        )


def parse_candles(body: Any, instrument: str) -> list[tuple[Bar, bool]]:
    """`/v3/instruments/{instrument}/candles` with mid prices: each candle as a bar (its start
    is the candle's `time`) and whether OANDA says it is complete. An answer for another
    instrument is refused (the recorded example spells it `DE30/EUR` for `DE30_EUR`)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("candles"), list):
        raise MalformedResponse("the candles answer has no 'candles' list")
    named = body.get("instrument")
    if not isinstance(named, str) or named.replace("/", "_") != instrument:
        raise MalformedResponse(f"asked for {instrument} candles, OANDA answered {excerpt(named)}")
    return [_candle(instrument, item) for item in body["candles"]]


def _candle(instrument: str, item: Any) -> tuple[Bar, bool]:
    if not isinstance(item, Mapping) or not isinstance(item.get("complete"), bool):
        raise MalformedResponse(f"a candle of {instrument} has no 'complete' flag")
    mid = item.get("mid")
    if not isinstance(mid, Mapping):
        raise MalformedResponse(f"a candle of {instrument} has no mid prices")
    try:
        values = {k: _decimal(instrument, mid.get(k), f"candle {k}") for k in "ohlc"}
    except QuoteRejected as exc:
        raise MalformedResponse(clip(str(exc), 600)) from None
    volume = item.get("volume")
    if isinstance(volume, bool) or not isinstance(volume, int) or volume < 0:
        raise MalformedResponse(f"a candle of {instrument} has no volume: {excerpt(volume)}")
    if values["l"] > min(values.values()) or values["h"] < max(values.values()):
        raise MalformedResponse(f"a candle of {instrument} is not a bar: {excerpt(dict(mid))}")
    if _finer_than_microseconds(item.get("time")):
        raise MalformedResponse(f"a candle of {instrument} starts between two microseconds")
    bar = Bar(
        ticker=instrument,
        start=parse_time(item.get("time"), "candle time"),
        open=values["o"],
        high=values["h"],
        low=values["l"],
        close=values["c"],
        volume=float(volume),
        vwap=None,
        trades=None,
    )
    return bar, item["complete"]


def error_from_answer(status: int, text: bytes, asked: Sequence[str] = ()) -> PolygonError:
    """The classified error of a non-2xx answer, in OANDA's own words (`errorMessage`, short and
    safe), read from the body's first `MAX_ERROR_BODY` bytes. A 400 naming `instrument(s)` is
    the instrument's `TickerNotFound` (for a batch: the caller asks each on its own)."""
    head = text[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
    try:
        body = load_json(head, unique_keys=True)
    except MalformedResponse:
        body = None
    said = body.get("errorMessage") if isinstance(body, Mapping) else None
    detail = clip(" ".join(said[:1200].split()), 300) if isinstance(said, str) else ""
    detail = detail or clip(" ".join(head[:800].split()), 200) or "(empty body)"
    ticker = asked[0] if len(asked) == 1 else None
    where = f" for {ticker}" if ticker else ""
    cls = _error_class(status, detail)
    return cls(f"OANDA answered {status}{where}: {detail}", status=status, ticker=ticker)


def _error_class(status: int, detail: str) -> type[PolygonError]:
    if status == 429:
        return RateLimited
    if status >= 500 or status in (408, 425):
        return RetryableError
    if status == 400 and any(name in detail for name in _INSTRUMENT_PARAMETERS):
        return TickerNotFound
    if status == 403:
        return NotEntitled
    return PermanentError  # 400, 401 (the token), 404 (the account or path), 405


# --- the provider ---------------------------------------------------------------------------


class OandaProvider(PaidClient):
    """Forex and metals from OANDA v20 within the budget (see `providers/contract.py`)."""

    vendor = "OANDA"

    name = NAME
    timeframe = Timeframe.REAL_TIME
    tickers_per_call = TICKERS_PER_CALL

    def __init__(
        self,
        base_url: str,
        account_id: str,
        token: str,
        budget: CallBudget,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_retries: int = 2,
        backoff_seconds: float = 1.0,
        max_budget_wait_seconds: float = 180.0,
        clock: Callable[[], dt.datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        if not token:
            raise ValueError("an OANDA personal access token is required")
        if not _ACCOUNT_ID.fullmatch(account_id or ""):
            raise ValueError(
                f"not an OANDA v20 account id (like 101-004-1234567-001): {excerpt(account_id)}"
            )
        super().__init__(
            base_url,
            budget,
            total_timeout=total_timeout,
            max_body_bytes=max_body_bytes,
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_budget_wait_seconds=max_budget_wait_seconds,
            sleep=sleep,
            logger=logger or log,
        )
        self.account_id = account_id
        self._token = token
        self.timeouts = (connect_timeout, read_timeout)
        self._clock = clock
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "Accept-Datetime-Format": "RFC3339",
            "Authorization": f"Bearer {token}",
            "User-Agent": "assets-pipeline",
        }

    def close(self) -> None:
        """Nothing to release: every request has its own connection, closed after it."""

    def redact(self, text: str) -> str:
        """`text` without the token, however a server echoed it (see `without_secret`)."""
        return without_secret(text, self._token)

    def instrument(self, spec: SymbolSpec) -> str | None:
        """`EUR_USD` for EURUSD, `XAU_USD` for XAUUSD: OANDA names a pair by its two ISO codes
        (metals too). Crypto and indices are not served here."""
        if spec.asset_type is not AssetType.FOREX:
            return None
        base, quote = spec.base_asset, spec.quote_asset
        if not (_CURRENCY.fullmatch(base) and _CURRENCY.fullmatch(quote)) or base == quote:
            return None
        return f"{base}_{quote}"

    # --- quotes ------------------------------------------------------------------------------

    def fetch_quotes(self, instruments: Sequence[str]) -> dict[str, Quote | Exception]:
        """One pricing call per `tickers_per_call` instruments. A batch OANDA refuses for an
        unknown instrument (its 400 names `instruments`) is asked again one by one, so that
        instrument fails alone. Every quote is validated against the clock (`validate_quote`)."""
        asked = list(dict.fromkeys(instruments))
        out: dict[str, Quote | Exception] = {}
        for start in range(0, len(asked), self.tickers_per_call):
            chunk = asked[start : start + self.tickers_per_call]
            for instrument, answer in self._chunk_answers(chunk).items():
                out[instrument] = self._validated(answer)
        return out

    def _chunk_answers(self, chunk: list[str]) -> dict[str, Quote | Exception]:
        well_formed = [i for i in chunk if _INSTRUMENT.fullmatch(i)]
        out: dict[str, Quote | Exception] = {
            i: TickerNotFound(f"not an OANDA instrument: {excerpt(i)}", ticker=i)
            for i in chunk
            if i not in well_formed
        }
        if not well_formed:
            return out
        try:
            out.update(self._pricing(well_formed))
        except TickerNotFound as exc:
            if len(well_formed) == 1:
                out[well_formed[0]] = exc
            else:
                self.log.warning(self.redact(f"{exc}; asking each instrument on its own"))
                for instrument in well_formed:
                    out.update(self._chunk_answers([instrument]))
        except (PolygonError, BudgetError) as exc:
            out.update({instrument: exc for instrument in well_formed})
        return out

    def _pricing(self, instruments: list[str]) -> dict[str, Quote | PolygonError]:
        path = f"/v3/accounts/{self.account_id}/pricing"
        body = self.get_json(path, {"instruments": ",".join(instruments)}, instruments)
        return parse_pricing(body, instruments)

    def _validated(self, answer: Quote | Exception) -> Quote | Exception:
        if not isinstance(answer, Quote):
            return answer
        now = self._clock()
        try:
            return validate_quote(answer, now).fetched(now, PLAN)
        except QuoteRejected as exc:
            return exc

    # --- day bars ----------------------------------------------------------------------------

    def fetch_day_bars(self, instrument: str, first: dt.date, last: dt.date) -> list[Bar]:
        """Complete daily candles (mid prices) aligned on 00:00 UTC, so a bar starts at its UTC
        day; `complete: false` candles (the day still running) are never returned, nor candles
        outside the days asked. Up to `MAX_CANDLES` days a request; `to` is never in the future."""
        if not _INSTRUMENT.fullmatch(instrument):
            raise TickerNotFound(f"not an OANDA instrument: {excerpt(instrument)}")
        start = dt.datetime.combine(first, dt.time(), dt.UTC)
        # only closed UTC days: today's candle is never a day's bar, whatever its flag says
        today = dt.datetime.combine(self._clock().astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        end = min(dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC), today)
        bars: dict[dt.datetime, Bar] = {}
        for window_start, window_end in _windows(start, end):
            for bar in self._candles(instrument, window_start, window_end):
                if bar.start in bars:
                    raise MalformedResponse(f"OANDA sent two {instrument} candles for {bar.start}")
                bars[bar.start] = bar
        return [bars[start] for start in sorted(bars)]

    def _candles(self, instrument: str, start: dt.datetime, end: dt.datetime) -> Iterator[Bar]:
        params = {"price": "M", "granularity": "D", **DAILY_ALIGNMENT}
        params |= {"from": rfc3339(start), "to": rfc3339(end)}
        body = self.get_json(f"/v3/instruments/{instrument}/candles", params, [instrument])
        if body.get("granularity") != "D":
            raise MalformedResponse(
                f"asked for daily {instrument} candles, OANDA answered granularity"
                f" {excerpt(body.get('granularity'))}"
            )
        previous = None
        for bar, complete in parse_candles(body, instrument):
            if previous is not None and bar.start <= previous:
                raise MalformedResponse(f"OANDA's {instrument} candles are not in time order")
            previous = bar.start
            if bar.start.timetz() != dt.time(tzinfo=dt.UTC):
                raise MalformedResponse(
                    f"OANDA's {instrument} daily candle starts at {rfc3339(bar.start)}, not at"
                    " 00:00 UTC: the alignment asked for was not applied"
                )
            if complete and start <= bar.start < end:
                yield bar

    # --- one request -------------------------------------------------------------------------

    def get_json(self, path: str, params: Mapping[str, Any], asked: Sequence[str] = ()) -> Any:
        """GET an API path at the base URL's origin and return its JSON, retrying what is
        retryable (429, 5xx, timeouts, broken bodies), each attempt paid from the budget; a
        429 pauses every caller of the budget for a window."""
        target = api_target(path, params)
        ticker = asked[0] if len(asked) == 1 else None
        return self._retrying(path, ticker, lambda: self._attempt(target, asked))

    def _attempt(self, target: str, asked: Sequence[str]) -> Any:
        """One paid request (`_paid_get`): its JSON, or the error it ended in (redacted)."""
        ticker = asked[0] if len(asked) == 1 else None
        answer = self._paid_get(target, ticker, self._headers, self.timeouts)
        if answer.status != 200:
            raise self._redacted(error_from_answer(answer.status, answer.body, asked))
        try:
            return load_json(answer.body, unique_keys=True)
        except MalformedResponse as exc:
            exc.ticker = ticker
            raise


def _windows(start: dt.datetime, end: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut into spans of at most `MAX_CANDLES` days."""
    step = dt.timedelta(days=MAX_CANDLES)
    while start < end:
        yield start, min(start + step, end)
        start += step
