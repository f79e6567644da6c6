"""Soft quality rules for a stored quote, and the staleness rule. Pure: no I/O, no clock.

Hard violations (a crossed or non-positive quote, a time in the future) are rejected before
anything is written (`quotes.validate_quote`). These rules only warn: a wide spread, a big jump
from the previous quote, a quote no newer than the stored one, a quote whose own time lags.

Two clocks: *sync age* is how long ago we last fetched the symbol successfully; *quote age* is how
old the quote itself is (delayed plans run 15 minutes behind). Both are counted in open-market
time, so a weekend never makes forex stale and the minutes after the open do not raise an alarm
for Friday's quote. Staleness uses sync age; quote age has a warning of its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from assets_pipeline.rules.cadence import CadenceError, parse_duration
from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quotes import Quote, iso_utc
from assets_pipeline.rules.taxonomy import AssetType


@dataclass(frozen=True)
class QualityPolicy:
    max_spread_bps: float = 50.0
    max_jump_pct: float = 5.0
    max_quote_age_seconds: float = 1200.0
    check_every_seconds: float = 300.0


def parse_quality(document: Any, where: str) -> QualityPolicy:
    if document is None:
        return QualityPolicy()
    if not isinstance(document, dict):
        raise CadenceError(f"{where}: 'quality' must be a mapping")
    known = {"max_spread_bps", "max_jump_pct", "max_quote_age", "check_every"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise CadenceError(f"{where}: quality.{unknown[0]}: unknown field")
    base = QualityPolicy()
    values: dict[str, float] = {}
    for key in ("max_spread_bps", "max_jump_pct"):
        value = document.get(key, getattr(base, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CadenceError(f"{where}: quality.{key}: {excerpt(value)} is not a positive number")
        values[key] = float(value)
    for key, default in (
        ("max_quote_age", base.max_quote_age_seconds),
        ("check_every", base.check_every_seconds),
    ):
        try:
            values[key] = parse_duration(document.get(key, default))
        except CadenceError as exc:
            raise CadenceError(f"{where}: quality.{key}: {exc}") from None
    return QualityPolicy(
        values["max_spread_bps"],
        values["max_jump_pct"],
        values["max_quote_age"],
        values["check_every"],
    )


@dataclass(frozen=True)
class QualityVerdict:
    passed: bool
    problems: list[str]
    metadata: dict[str, Any]


def assess_quality(quote: Quote, previous: Quote | None, policy: QualityPolicy) -> QualityVerdict:
    """The soft rules for a quote about to be stored, against the one stored before it."""
    problems: list[str] = []
    meta: dict[str, Any] = {"bid": quote.bid, "ask": quote.ask, "last_price": quote.last_price}
    if quote.bid is not None and quote.ask is not None:
        if quote.bid > quote.ask:  # rejected before the write; kept so the check says so too
            problems.append(f"crossed: bid {quote.bid} > ask {quote.ask}")
        mid = (quote.bid + quote.ask) / 2
        spread_bps = (quote.ask - quote.bid) / mid * 10_000 if mid else 0.0
        meta["spread_bps"] = round(spread_bps, 3)
        meta["max_spread_bps"] = policy.max_spread_bps
        if spread_bps > policy.max_spread_bps:
            problems.append(f"spread {spread_bps:.1f} bp > {policy.max_spread_bps:g} bp")
    if previous is not None:
        meta["previous_quote_time"] = iso_utc(previous.quote_time)
        meta["previous_last_price"] = previous.last_price
        if previous.last_price and quote.last_price:
            jump = abs(quote.last_price / previous.last_price - 1) * 100
            meta["jump_pct"] = round(jump, 4)
            meta["max_jump_pct"] = policy.max_jump_pct
            if jump > policy.max_jump_pct:
                problems.append(
                    f"jump {jump:.2f}% from the previous quote > {policy.max_jump_pct:g}%"
                )
        if quote.quote_time <= previous.quote_time:
            problems.append(
                f"quote time {iso_utc(quote.quote_time)} is not newer than the stored"
                f" {iso_utc(previous.quote_time)}: not stored"
            )
    return QualityVerdict(passed=not problems, problems=problems, metadata=meta)


@dataclass(frozen=True)
class Freshness:
    """Both clocks for one symbol at one instant, and what they mean."""

    market_open: bool
    last_sync: dt.datetime | None
    quote_time: dt.datetime | None
    sync_age_seconds: float | None
    open_sync_age_seconds: float | None
    quote_age_seconds: float | None
    open_quote_age_seconds: float | None
    stale_after_seconds: float
    max_quote_age_seconds: float

    @property
    def stale(self) -> bool:
        """Open market and no successful update for longer than the tier allows."""
        if not self.market_open:
            return False
        if self.open_sync_age_seconds is None:
            return True  # never refreshed while its market trades
        return self.open_sync_age_seconds > self.stale_after_seconds

    @property
    def quote_lagging(self) -> bool:
        """Open market and the quote's own time lags more than allowed (a delayed feed)."""
        return (
            self.market_open
            and self.open_quote_age_seconds is not None
            and self.open_quote_age_seconds > self.max_quote_age_seconds
        )

    def metadata(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "market_open": self.market_open,
            "last_sync": iso_utc(self.last_sync) if self.last_sync else None,
            "quote_time": iso_utc(self.quote_time) if self.quote_time else None,
            "sync_age_seconds": rounded(self.sync_age_seconds),
            "open_market_sync_age_seconds": rounded(self.open_sync_age_seconds),
            "quote_age_seconds": rounded(self.quote_age_seconds),
            "open_market_quote_age_seconds": rounded(self.open_quote_age_seconds),
            "stale_after_seconds": self.stale_after_seconds,
            "max_quote_age_seconds": self.max_quote_age_seconds,
        }


def assess_freshness(
    asset_type: AssetType,
    last_sync: dt.datetime | None,
    quote_time: dt.datetime | None,
    now: dt.datetime,
    hours: MarketHours,
    stale_after_seconds: float,
    max_quote_age_seconds: float,
) -> Freshness:
    def ages(since: dt.datetime | None) -> tuple[float | None, float | None]:
        if since is None:
            return None, None
        return (now - since).total_seconds(), hours.open_seconds(asset_type, since, now)

    sync_age, open_sync_age = ages(last_sync)
    quote_age, open_quote_age = ages(quote_time)
    return Freshness(
        market_open=hours.is_open(asset_type, now),
        last_sync=last_sync,
        quote_time=quote_time,
        sync_age_seconds=sync_age,
        open_sync_age_seconds=open_sync_age,
        quote_age_seconds=quote_age,
        open_quote_age_seconds=open_quote_age,
        stale_after_seconds=stale_after_seconds,
        max_quote_age_seconds=max_quote_age_seconds,
    )
