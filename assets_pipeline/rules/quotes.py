"""The `Quote`: one validated price observation, and the rules a quote must pass to be stored.

Validation lives here, away from HTTP and the database, because it is the gate that keeps a bad
price out of `trading.symbols`: whatever produced a quote (Polygon, the simulator, a test), it is
checked by the same rules before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from dataclasses import dataclass
from typing import Any

from assets_pipeline.rules import clock
from assets_pipeline.rules.plans import Plan
from assets_pipeline.rules.providers import FREE_PLANS, ProviderName, provider_of_source

#: How far a quote's own time may run ahead of our clock before we call it bogus.
DEFAULT_MAX_FUTURE_SKEW = dt.timedelta(seconds=60)
#: Older than this, a "latest" quote is not live (a 1970 timestamp, a broken clock): rejected.
#: The longest honest gap is a market closed over a long holiday, well inside it.
MAX_QUOTE_AGE = dt.timedelta(days=30)
#: Above this, a price is a broken value (an ask of 9e18), not a market: rejected. Bitcoin at
#: its highest is four orders of magnitude below.
MAX_PLAUSIBLE_PRICE = 1e9
#: Below this, likewise (a trade at 1e-300): the cheapest traded tokens are far above it.
MIN_PLAUSIBLE_PRICE = 1e-9


class Timeframe(enum.StrEnum):
    """How current a price is, in the vendor's words: `REAL-TIME` and `DELAYED` are what Polygon's
    snapshots say of themselves; `END-OF-DAY` is a day bar's close, all an end-of-day plan gives."""

    REAL_TIME = "REAL-TIME"
    DELAYED = "DELAYED"
    END_OF_DAY = "END-OF-DAY"


class QuoteRejected(ValueError):
    """A quote failed validation; `reason` says which value and why. Never written."""

    #: A rejected quote is bad data, not a bad request: the next fetch may well be fine.
    retryable = True

    def __init__(self, ticker: str, reason: str) -> None:
        super().__init__(f"quote for {ticker} rejected: {reason}")
        self.ticker = ticker
        self.reason = reason


@dataclass(frozen=True)
class Quote:
    """A price for one Polygon ticker, with two times in UTC: `data_time`, when the market set
    the price (a quote's or trade's own time; a day bar's session close), and `fetched_at`, when
    we fetched it. Freshness is judged on `data_time`; `fetched_at` only says when we last looked.

    Crypto snapshots carry trades, not quotes: `bid` and `ask` are then None (never 0), and so is
    `spread`. `symbol` is the platform's name; it is empty until the quote is bound to a symbol.
    `provider` is who served it: the provider `source` names (`kraken:...` -> `kraken`), else
    Polygon, which served every quote before there were others; one naming another is refused.
    """

    ticker: str
    data_time: dt.datetime
    source: str
    bid: float | None = None
    ask: float | None = None
    last_price: float | None = None
    day_open: float | None = None
    day_high: float | None = None
    day_low: float | None = None
    day_close: float | None = None
    day_volume: float | None = None
    symbol: str = ""
    #: The symbol's price precision (decimal places), once bound to a symbol.
    precision: int | None = None
    #: When we fetched it; set by the client as the answer arrives (None: not fetched yet).
    fetched_at: dt.datetime | None = None
    timeframe: Timeframe = Timeframe.REAL_TIME
    #: The plan it was served under: `free` (end-of-day) or `paid` (snapshots).
    plan: str = ""
    #: Who served it (a `ProviderName`); derived from `source` when not given.
    provider: str = ""

    def __post_init__(self) -> None:
        named = provider_of_source(self.source)
        derived = named if named in set(ProviderName) else ProviderName.POLYGON.value
        if self.provider and named in set(ProviderName) and self.provider != named:
            raise ValueError(f"a quote from {self.source!r} says it was served by {self.provider}")
        object.__setattr__(self, "provider", str(self.provider or derived))

    @property
    def spread(self) -> float | None:
        """Ask less bid, rounded to the symbol's precision: a binary float difference such as
        0.3599999999996726 is noise, not a spread of 0.36."""
        if self.bid is None or self.ask is None:
            return None
        spread = self.ask - self.bid
        return spread if self.precision is None else round(spread, self.precision)

    def for_symbol(self, symbol: str, precision: int | None = None) -> Quote:
        """This quote as the platform's `symbol`, with that symbol's price precision."""
        return dataclasses.replace(self, symbol=symbol, precision=precision)

    def shown(self, value: float | None) -> float | None:
        """A price as the symbol shows it, at its precision: the UI's metadata is read by
        people, and `1.0895117589999999` or a BTCUSD price with 6 decimals at precision 2 is
        noise to them. What is stored and announced keeps the vendor's digits."""
        if value is None or self.precision is None:
            return value
        return round(value, self.precision)

    def age(self, now: dt.datetime) -> dt.timedelta:
        """How old the price is in the market's time (not since we fetched it)."""
        return now - self.data_time

    def fetched(self, at: dt.datetime, plan: str = "") -> Quote:
        """This quote as fetched at `at` under `plan` (by default, the plan its timeframe
        implies). A data time ahead of `at` (a vendor's clock within the accepted skew) is
        taken as `at`: a price is never newer than its fetch, nor blocks honest ones after it."""
        data_time = min(self.data_time, at)
        return dataclasses.replace(
            self, data_time=data_time, fetched_at=at, plan=plan or self.served_plan
        )

    @property
    def served_plan(self) -> str:
        """The plan it was served under, in the events' words: its own (`free` for a provider's
        plan that costs nothing), else `free` for an end-of-day price (a plan without snapshots)
        and `paid` for a snapshot."""
        if self.plan in FREE_PLANS:  # a provider's own word for a plan that costs nothing
            return Plan.FREE.value
        served = Plan.FREE if self.timeframe is Timeframe.END_OF_DAY else Plan.PAID
        return self.plan or served.value

    def same_price(self, other: Quote | None) -> bool:
        """The same market data: the same data time and the same prices. A refresh that finds
        it again has nothing new to store or announce."""
        return other is not None and (
            other.data_time == self.data_time
            and (other.bid, other.ask, other.last_price) == (self.bid, self.ask, self.last_price)
        )

    def _times(self) -> dict[str, Any]:
        return {
            "timestamp": iso_utc(self.data_time),  # the market's time, for schema-2 readers
            "data_time": iso_utc(self.data_time),
            "fetched_at": iso_utc(self.fetched_at) if self.fetched_at else None,
            "source": self.source,
            "provider": self.provider,
            "plan": self.served_plan,
            "timeframe": self.timeframe.value,
        }

    def last_update(self) -> dict[str, Any]:
        """The `metadata.last_update` document that `trading.symbols` carries."""
        return {
            "bid": self.bid,
            "ask": self.ask,
            "spread": self.spread,
            "last_price": self.last_price,
            "daily_open": self.day_open,
            "daily_high": self.day_high,
            "daily_low": self.day_low,
            "daily_close": self.day_close,
            **self._times(),
        }

    def event_data(self) -> dict[str, Any]:
        """The `data` part of the Redis `price_update` event (see docs/events.md)."""
        return {
            "bid": self.bid,
            "ask": self.ask,
            "spread": self.spread,
            "last_price": self.last_price,
            **self._times(),
        }


def iso_utc(moment: dt.datetime) -> str:
    """ISO-8601 in UTC with a `Z` and microseconds (lossless, so stored times compare exactly)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def validate_quote(
    quote: Quote,
    now: dt.datetime | None = None,
    max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> Quote:
    """Return the quote if every value is usable, else raise `QuoteRejected` with the reason.

    These are the hard rules: what breaks one is never written. Soft ones (a wide spread, a big
    jump, a quote no newer than the stored one) only warn, in `quality.py`.
    """
    reason = (
        _bad_number(quote)
        or _bad_sides(quote)
        or _bad_time(quote, now or clock.utcnow(), max_future_skew)
    )
    if reason:
        raise QuoteRejected(quote.ticker, reason)
    return quote


def _bad_number(quote: Quote) -> str | None:
    """Every price finite, positive and plausible; the volume finite and not negative."""
    prices = {
        "bid": quote.bid,
        "ask": quote.ask,
        "last_price": quote.last_price,
        "day_open": quote.day_open,
        "day_high": quote.day_high,
        "day_low": quote.day_low,
        "day_close": quote.day_close,
    }
    for field, value in prices.items():
        if value is None:
            continue
        if not math.isfinite(value):
            return f"{field} is not a finite number ({value!r})"
        if value <= 0:
            return f"{field} must be positive, got {value!r}"
        if not MIN_PLAUSIBLE_PRICE <= value <= MAX_PLAUSIBLE_PRICE:
            return (
                f"{field} {value!r} is not a plausible price (outside"
                f" {MIN_PLAUSIBLE_PRICE:g} to {MAX_PLAUSIBLE_PRICE:g})"
            )
    volume = quote.day_volume
    if volume is not None and (not math.isfinite(volume) or volume < 0):
        return f"day_volume must be a finite number >= 0, got {volume!r}"
    return None


def _bad_sides(quote: Quote) -> str | None:
    """A price to trade on: both sides of a quote, or a last price; never crossed."""
    bid, ask = quote.bid, quote.ask
    if (bid is None) != (ask is None):
        return "only one side of the quote is present"
    if bid is None and quote.last_price is None:
        return "no price at all: no bid, no ask, no last price"
    if bid is not None and ask is not None and bid > ask:
        return f"crossed quote: bid {bid} > ask {ask}"
    if quote.day_low is not None and quote.day_high is not None and quote.day_low > quote.day_high:
        return f"day_low {quote.day_low} > day_high {quote.day_high}"
    return None


def _bad_time(quote: Quote, now: dt.datetime, max_future_skew: dt.timedelta) -> str | None:
    """A time zone, not in the future, and not so old it cannot be a live quote."""
    if quote.data_time.tzinfo is None:
        return "quote time has no time zone"
    if quote.data_time > now + max_future_skew:
        return (
            f"quote time {iso_utc(quote.data_time)} is in the future"
            f" (now {iso_utc(now)}, allowed skew {max_future_skew.total_seconds():.0f}s)"
        )
    if quote.data_time < now - MAX_QUOTE_AGE:
        return (
            f"quote time {iso_utc(quote.data_time)} is more than {MAX_QUOTE_AGE.days} days"
            " old: not a live quote"
        )
    return None
