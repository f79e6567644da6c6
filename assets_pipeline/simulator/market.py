"""The simulated market: which tickers exist and what they are worth at any second.

Prices are a pure function of (ticker, epoch seconds), with no state and no I/O: simulators in
different processes agree, and a frozen clock gives the same numbers on every run. Levels are
plausible and moves small and smooth (docs/design/polygon-simulator.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

#: A clock answers epoch seconds; `time.time` in production, a frozen value in tests.
Clock = Callable[[], float]

AssetClass = Literal["fx", "crypto", "indices"]

#: What one unit of each currency (or troy ounce of metal) is worth in US dollars. Every forex pair
#: is derived from these, so C:XAGCAD and C:EURJPY are as plausible as the majors.
USD_VALUE: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 1.0 / 150.0,
    "AUD": 0.66,
    "CAD": 1.0 / 1.36,
    "CHF": 1.0 / 0.88,
    "NZD": 0.61,
    "XAU": 2400.0,
    "XAG": 30.0,
}

#: Crypto bases in US dollars. Only USD-quoted pairs exist: the real API documents no USDT pair.
CRYPTO_USD: dict[str, float] = {
    "BTC": 60000.0,
    "ETH": 3000.0,
    "SOL": 150.0,
    "LTC": 80.0,
    "XRP": 0.55,
    "DOGE": 0.15,
}

#: Stablecoins crypto exchanges quote in, in US dollars. Polygon documents no USDT pair (its
#: simulator knows none); an exchange's simulator prices ETH/USDT at ETH's dollar level over this.
STABLECOIN_USD: dict[str, float] = {"USDT": 1.0}

INDEX_LEVEL: dict[str, float] = {
    "I:SPX": 5500.0,
    "I:NDX": 19500.0,
    "I:DJI": 39000.0,
    "I:VIX": 14.0,
}

CURRENCY_NAMES: dict[str, str] = {
    "USD": "United States dollar",
    "EUR": "Euro",
    "GBP": "British pound",
    "JPY": "Japanese yen",
    "AUD": "Australian dollar",
    "CAD": "Canadian dollar",
    "CHF": "Swiss franc",
    "NZD": "New Zealand dollar",
    "XAU": "Gold (troy ounce)",
    "XAG": "Silver (troy ounce)",
}

CRYPTO_NAMES: dict[str, str] = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "SOL": "Solana",
    "LTC": "Litecoin",
    "XRP": "XRP",
    "DOGE": "Dogecoin",
}

INDEX_NAMES: dict[str, str] = {
    "I:SPX": "Standard & Poor's 500",
    "I:NDX": "Nasdaq-100",
    "I:DJI": "Dow Jones Industrial Average",
    "I:VIX": "CBOE Volatility Index",
}

#: What an empty filter on a multi-ticker endpoint returns: a handful per market, not every pair.
DEFAULT_TICKERS: dict[AssetClass, tuple[str, ...]] = {
    "fx": (
        "C:EURUSD",
        "C:GBPUSD",
        "C:USDJPY",
        "C:AUDUSD",
        "C:USDCAD",
        "C:USDCHF",
        "C:NZDUSD",
        "C:XAUUSD",
        "C:XAGUSD",
    ),
    "crypto": tuple(f"X:{base}USD" for base in CRYPTO_USD),
    "indices": tuple(INDEX_LEVEL),
}

#: Relative half-width of the forex spread: 0.75 bp each side, so about 1.5 bp in all.
SPREAD_FRACTION = 1.5e-4
#: The wobble: (period in seconds, relative amplitude). Amplitudes sum to 0.39%, under the 0.5% the
#: validation rules could mistake for a jump; the 97 s term makes the price move second to second.
WOBBLE_TERMS: tuple[tuple[float, float], ...] = (
    (97.0, 0.0003),
    (2_220.0, 0.002),
    (19_080.0, 0.001),
    (250_560.0, 0.0006),
)
DAY_SECONDS = 86_400
#: Grid points of a bar's high and low: every half hour for a day's bar, 6 for shorter windows.
DAY_SAMPLES = 48
SHORT_SAMPLES = 6
WEEK_SECONDS = 7 * DAY_SECONDS
#: 1970-01-01 was a Thursday; the week below starts Monday 00:00 UTC.
_EPOCH_WEEKDAY = 3
#: Forex trades from Sunday 17:00 to Friday 17:00 New York time: 22:00 UTC in northern winter,
#: 21:00 UTC while the US is on summer time.
_FX_ZONE = ZoneInfo("America/New_York")
_FX_OPEN_CLOSE = dt.time(17, 0)
#: US cash session, ignoring daylight saving and holidays: 13:30 to 20:00 UTC, Monday to Friday.
_INDEX_OPEN = 13 * 3600 + 1800
_INDEX_CLOSE = 20 * 3600


@dataclass(frozen=True)
class Instrument:
    """A known ticker and the facts the wire format needs about it."""

    ticker: str
    asset_class: AssetClass
    name: str
    #: The price level the wobble moves around.
    level: float
    #: Decimal places the venue quotes in; the tick is 10**-decimals.
    decimals: int

    @property
    def tick(self) -> float:
        """The smallest price step, so a spread is never narrower than one."""
        return 10.0 ** (-self.decimals)


@dataclass(frozen=True)
class Quote:
    """A two-sided quote at one instant; bid < ask always holds."""

    bid: float
    ask: float
    mid: float


@dataclass(frozen=True)
class Bar:
    """An OHLC bar over [start, end); `close` is the price at min(end, now) if unfinished."""

    start: float
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    transactions: int


def _decimals_for(level: float, asset_class: AssetClass) -> int:
    """About six significant figures, as venues quote: EURUSD and AUDUSD 5, USDJPY 3, XAUUSD 2."""
    if asset_class == "indices":
        return 2
    digits = math.floor(math.log10(level))
    decimals = 5 - digits if digits >= 0 else 4 - digits
    return max(2, min(12, decimals))


def instrument(ticker: str) -> Instrument | None:
    """Look a ticker up; None for anything the real API would not know either."""
    if ticker in INDEX_LEVEL:
        level = INDEX_LEVEL[ticker]
        return Instrument(ticker, "indices", INDEX_NAMES[ticker], level, 2)
    if ticker.startswith("C:") and len(ticker) == 8:
        base, quote = ticker[2:5], ticker[5:8]
        if base in USD_VALUE and quote in USD_VALUE and base != quote:
            level = USD_VALUE[base] / USD_VALUE[quote]
            name = f"{CURRENCY_NAMES[base]} - {CURRENCY_NAMES[quote]}"
            return Instrument(ticker, "fx", name, level, _decimals_for(level, "fx"))
        return None
    if ticker.startswith("X:") and ticker.endswith("USD"):
        base = ticker[2:-3]
        if base in CRYPTO_USD:
            level = CRYPTO_USD[base]
            name = f"{CRYPTO_NAMES[base]} - United States Dollar"
            return Instrument(ticker, "crypto", name, level, _decimals_for(level, "crypto"))
    return None


def crypto_pair(base: str, quote: str) -> tuple[str, float] | None:
    """The USD ticker that prices the exchange pair `base`/`quote` (`X:ETHUSD` for ETH/USDT) and
    what one unit of `quote` is worth in dollars; None for a pair this market does not know. The
    same second gives an exchange's BTC/USD the Polygon simulator's X:BTCUSD price."""
    usd = 1.0 if quote == "USD" else STABLECOIN_USD.get(quote)
    if base not in CRYPTO_USD or usd is None:
        return None
    return f"X:{base}USD", usd


def is_known(ticker: str) -> bool:
    """True for catalogue tickers only (C:EURUSD yes, X:ETHUSDT no)."""
    return instrument(ticker) is not None


def default_tickers(asset_class: AssetClass) -> tuple[str, ...]:
    """The tickers an unfiltered multi-ticker request returns for one market."""
    return DEFAULT_TICKERS[asset_class]


def all_tickers(asset_class: AssetClass) -> tuple[str, ...]:
    """Every catalogue ticker of one market (what a grouped daily answer lists): all 90 forex
    pairs of the currencies and metals, the USD crypto pairs, the indices."""
    if asset_class == "fx":
        return tuple(f"C:{b}{q}" for b in USD_VALUE for q in USD_VALUE if b != q)
    if asset_class == "crypto":
        return tuple(f"X:{base}USD" for base in CRYPTO_USD)
    return tuple(INDEX_LEVEL)


def _unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts, stable across processes and runs."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _level(ticker: str) -> float:
    """The catalogue level, or a hash-based one so that price() is total."""
    known = instrument(ticker)
    if known is not None:
        return known.level
    return 1.0 + 999.0 * _unit_hash("level", ticker)


def _wobble(ticker: str, t: float) -> float:
    """A smooth relative deviation in (-0.0039, 0.0039), phases hashed from the ticker."""
    total = 0.0
    for index, (period, amplitude) in enumerate(WOBBLE_TERMS):
        phase = 2.0 * math.pi * _unit_hash("phase", ticker, index)
        total += amplitude * math.sin(2.0 * math.pi * t / period + phase)
    return total


def raw_price(ticker: str, t: float) -> float:
    """The unrounded mid/last price; the sampler uses it to avoid rounding twice."""
    return _level(ticker) * (1.0 + _wobble(ticker, t))


def price(ticker: str, t: float) -> float:
    """The mid (forex) or last (crypto, indices) price of `ticker` at epoch second `t`.

    Deterministic: the same ticker and second give the same number in every process.
    """
    known = instrument(ticker)
    decimals = known.decimals if known is not None else 4
    return round(raw_price(ticker, t), decimals)


def quote(ticker: str, t: float) -> Quote:
    """A two-sided quote about 1.5 bp wide and at least one tick, centred on price()."""
    known = instrument(ticker)
    decimals = known.decimals if known is not None else 4
    tick = 10.0 ** (-decimals)
    mid = raw_price(ticker, t)
    mid_ticks = round(mid / tick)
    spread_ticks = max(1, round(mid * SPREAD_FRACTION / tick))
    bid_ticks = mid_ticks - spread_ticks // 2
    ask_ticks = bid_ticks + spread_ticks
    return Quote(
        bid=round(bid_ticks * tick, decimals),
        ask=round(ask_ticks * tick, decimals),
        mid=round(mid, decimals),
    )


def is_open(ticker: str, t: float, market_hours: bool) -> bool:
    """Whether the market trades at `t`; always True unless market hours are modelled.

    Forex closes Friday 17:00 to Sunday 17:00 New York time, indices trade only in the US cash
    session, crypto never closes.
    """
    if not market_hours:
        return True
    known = instrument(ticker)
    if known is None or known.asset_class == "crypto":
        return True
    if known.asset_class == "fx":
        local = dt.datetime.fromtimestamp(t, _FX_ZONE)
        day, after = local.weekday(), local.time() >= _FX_OPEN_CLOSE
        # closed from Friday 17:00 to Sunday 17:00, local time
        return not ((day == 4 and after) or day == 5 or (day == 6 and not after))
    week_offset = (t + _EPOCH_WEEKDAY * DAY_SECONDS) % WEEK_SECONDS
    weekday = int(week_offset // DAY_SECONDS)
    seconds_of_day = week_offset % DAY_SECONDS
    return weekday < 5 and _INDEX_OPEN <= seconds_of_day < _INDEX_CLOSE


def last_tick_time(ticker: str, t: float, market_hours: bool) -> float:
    """When the price last changed at or before `t`: `t` itself while open, else the close."""
    if is_open(ticker, t, market_hours):
        return t
    known = instrument(ticker)
    if known is not None and known.asset_class == "fx":
        # The latest Friday 17:00 New York at or before t, built in local time (so right in the
        # weekends the clocks change in).
        local = dt.datetime.fromtimestamp(t, _FX_ZONE)
        friday = local.date() - dt.timedelta(days=(local.weekday() - 4) % 7)
        close = dt.datetime.combine(friday, _FX_OPEN_CLOSE, _FX_ZONE)
        if close.timestamp() > t:
            close = dt.datetime.combine(friday - dt.timedelta(days=7), _FX_OPEN_CLOSE, _FX_ZONE)
        return close.timestamp()
    # Indices: the latest session close at or before t (at most a weekend and a night back).
    day_start = t - t % DAY_SECONDS
    for back in range(8):
        close = day_start - back * DAY_SECONDS + _INDEX_CLOSE
        if close <= t and is_open(ticker, close - 1.0, market_hours):
            return close
    return t


def price_at(ticker: str, t: float, market_hours: bool) -> float:
    """The price in force at `t`: frozen at the last close while the market is shut."""
    return price(ticker, last_tick_time(ticker, t, market_hours))


def _activity(ticker: str) -> tuple[float, float]:
    """(trades per second, dollars per trade) for the volume fields."""
    known = instrument(ticker)
    if known is None or known.asset_class == "indices":
        return 0.0, 0.0
    if known.asset_class == "fx":
        return 1.5, 0.0
    return 3.0, 2_000.0


def bar(
    ticker: str,
    start: float,
    end: float,
    now: float,
    *,
    market_hours: bool = False,
    samples: int | None = None,
) -> Bar:
    """The OHLC bar over [start, end), cut at `now` when the window is still open.

    High and low come from a grid anchored on the window (not on `now`), so an unfinished bar's
    high never falls as time passes; open and close are on the grid, so low <= open, close <= high.
    `samples` defaults to `DAY_SAMPLES` for a window of a day or more and `SHORT_SAMPLES` below,
    so a day's bar is the same whichever endpoint (range, prev, grouped, snapshot) asks for it.
    """
    if samples is None:
        samples = DAY_SAMPLES if end - start >= DAY_SECONDS else SHORT_SAMPLES
    known = instrument(ticker)
    decimals = known.decimals if known is not None else 4
    stop = min(end, now)
    step = (end - start) / samples
    points = [start + k * step for k in range(samples) if start + k * step < stop]
    points.append(stop)
    prices = [raw_price(ticker, last_tick_time(ticker, p, market_hours)) for p in points]
    rate, notional = _activity(ticker)
    elapsed = max(0.0, stop - start)
    n = int(rate * elapsed * (0.6 + 0.8 * _unit_hash("n", ticker, start, end)))
    if known is not None and known.asset_class == "crypto":
        volume = round(n * notional / prices[-1], 8)
    else:
        # Forex volume is a tick count (v == n in recorded bars); indices have none.
        volume = float(n)
    return Bar(
        start=start,
        open=round(prices[0], decimals),
        high=round(max(prices), decimals),
        low=round(min(prices), decimals),
        close=round(prices[-1], decimals),
        volume=volume,
        vwap=round(sum(prices) / len(prices), decimals),
        transactions=n,
    )


def day_start(t: float) -> float:
    """00:00 UTC of the day containing `t`."""
    return t - t % DAY_SECONDS


def day_bar(ticker: str, t: float, *, market_hours: bool = False) -> Bar:
    """Today's (UTC) bar up to `t`: its close is the current price."""
    start = day_start(t)
    return bar(ticker, start, start + DAY_SECONDS, t, market_hours=market_hours)


def previous_day_bar(ticker: str, t: float, *, market_hours: bool = False) -> Bar:
    """The last complete UTC day with trading before the day containing `t`."""
    start = day_start(t) - DAY_SECONDS
    for _ in range(7):
        if window_trades(ticker, start, start + DAY_SECONDS, market_hours):
            break
        start -= DAY_SECONDS
    end = start + DAY_SECONDS
    return bar(ticker, start, end, end, market_hours=market_hours)


def minute_bar(ticker: str, t: float, *, market_hours: bool = False) -> Bar:
    """The minute bar in progress at `t` (the snapshot's `min`)."""
    start = t - t % 60
    return bar(ticker, start, start + 60, t, market_hours=market_hours)


def window_trades(ticker: str, start: float, end: float, market_hours: bool) -> bool:
    """Whether any trading falls in [start, end), checked every half hour (sessions open and
    close on the half hour), so a day window sees the 13:30-20:00 index session."""
    if not market_hours:
        return True
    step = min(end - start, 1800.0)
    point = start
    while point < end:
        if is_open(ticker, point, market_hours):
            return True
        point += step
    return is_open(ticker, end - 0.001, market_hours)


def trade_id(ticker: str, t: float) -> str:
    """A crypto trade id; a string, as the real API sends it in most answers."""
    return str(100_000_000 + int(_unit_hash("trade", ticker, int(t)) * 900_000_000))


def trade_size(ticker: str, t: float) -> float:
    """Size of the last crypto trade in base units, a few hundred to a few thousand dollars."""
    dollars = 200.0 + 4_800.0 * _unit_hash("size", ticker, int(t))
    return round(dollars / _level(ticker), 8)


def trade_exchange(ticker: str, t: float) -> int:
    """A crypto venue id among those seen in recordings (1, 2, 4, 6)."""
    return (1, 2, 4, 6)[int(_unit_hash("venue", ticker, int(t)) * 4)]


def known_tickers(tickers: Iterable[str]) -> list[str]:
    """The known ones among `tickers`, order kept."""
    return [t for t in tickers if is_known(t)]
