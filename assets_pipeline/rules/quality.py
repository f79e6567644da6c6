"""Soft quality rules for a stored quote, and the staleness rule. Pure: no I/O, no clock.

These only warn (a wide spread, a big jump, a quote no newer than the stored one, a lagging
quote); hard violations are rejected before any write (`quotes.validate_quote`). Staleness is
judged on the data's own age, not the sync's, in open-market time, against what the plan can give
(docs/plans.md, "Staleness, market hours and quality")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from assets_pipeline.rules.cadence import CadenceError, parse_duration
from assets_pipeline.rules.end_of_day import NewestBar, newest_bar
from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.quotes import Quote, iso_utc
from assets_pipeline.rules.taxonomy import AssetType


@dataclass(frozen=True)
class QualityPolicy:
    max_spread_bps: float = 50.0
    max_jump_pct: float = 5.0
    max_data_age_seconds: float = 1200.0
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
        ("max_quote_age", base.max_data_age_seconds),
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
        meta["previous_data_time"] = iso_utc(previous.data_time)
        meta["previous_last_price"] = previous.last_price
        if previous.last_price and quote.last_price:
            jump = abs(quote.last_price / previous.last_price - 1) * 100
            meta["jump_pct"] = round(jump, 4)
            meta["max_jump_pct"] = policy.max_jump_pct
            if jump > policy.max_jump_pct:
                problems.append(
                    f"jump {jump:.2f}% from the previous quote > {policy.max_jump_pct:g}%"
                )
        if quote.same_price(previous):
            meta["unchanged"] = True  # the same data again: no news, nothing wrong
        elif quote.data_time < previous.data_time:
            problems.append(
                f"data time {iso_utc(quote.data_time)} is older than the stored"
                f" {iso_utc(previous.data_time)}: not stored"
            )
        elif quote.data_time == previous.data_time:
            problems.append(
                f"the same data time as the stored quote ({iso_utc(quote.data_time)}) with"
                " another price: stored as the vendor's correction"
            )
    return QualityVerdict(passed=not problems, problems=problems, metadata=meta)


@dataclass(frozen=True)
class Freshness:
    """Both clocks for one symbol at one instant, and what they mean. Staleness is judged on the
    data's own time: on a live plan, its age in open-market time; on an end-of-day plan, whether
    it holds the newest close the plan has published (`end_of_day`)."""

    market_open: bool
    last_sync: dt.datetime | None
    data_time: dt.datetime | None
    sync_age_seconds: float | None
    open_sync_age_seconds: float | None
    data_age_seconds: float | None
    open_data_age_seconds: float | None
    stale_after_seconds: float
    max_data_age_seconds: float
    #: On an end-of-day plan: the newest bar published now (what the metadata names).
    end_of_day: NewestBar | None = None
    #: On an end-of-day plan: the data is older than the newest bar published `stale_after` ago.
    behind_plan: bool = False

    @property
    def stale(self) -> bool:
        """Older than the plan allows: on end-of-day bars, behind the newest close published
        (a calendar knows closed days, so a closed market is no excuse); on a live plan, an open
        market and data older than the tier allows."""
        if self.end_of_day is not None:
            return self.behind_plan
        if not self.market_open:
            return False
        if self.open_data_age_seconds is None:
            return True  # never refreshed while its market trades
        return self.open_data_age_seconds > self.stale_after_seconds

    @property
    def quote_lagging(self) -> bool:
        """The data lags more than allowed (a delayed feed), or an end-of-day plan's newest."""
        if self.end_of_day is not None:
            return self.behind_plan
        return (
            self.market_open
            and self.open_data_age_seconds is not None
            and self.open_data_age_seconds > self.max_data_age_seconds
        )

    def describe(self) -> str:
        """What the plan allows, in a line for the check's metadata."""
        if self.end_of_day is not None:
            return self.end_of_day.describe()
        return (
            f"live plan: data older than {self.stale_after_seconds / 60:g} minutes of"
            " open-market time is stale"
        )

    def metadata(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "market_open": self.market_open,
            "freshness": self.describe(),
            "last_sync": iso_utc(self.last_sync) if self.last_sync else None,
            "data_time": iso_utc(self.data_time) if self.data_time else None,
            "sync_age_seconds": rounded(self.sync_age_seconds),
            "open_market_sync_age_seconds": rounded(self.open_sync_age_seconds),
            "data_age_seconds": rounded(self.data_age_seconds),
            "open_market_data_age_seconds": rounded(self.open_data_age_seconds),
            "stale_after_seconds": self.stale_after_seconds,
            "max_data_age_seconds": self.max_data_age_seconds,
        }


def assess_freshness(
    asset_type: AssetType,
    last_sync: dt.datetime | None,
    data_time: dt.datetime | None,
    now: dt.datetime,
    hours: MarketHours,
    stale_after_seconds: float,
    max_data_age_seconds: float,
    publication_delay: dt.timedelta | None = None,
) -> Freshness:
    """Judge one symbol. `publication_delay` set: it is served end-of-day bars, and is behind
    when it lacks the newest close published `stale_after` ago (time for a cadence to fetch it)."""

    def ages(since: dt.datetime | None) -> tuple[float | None, float | None]:
        if since is None:
            return None, None
        return (now - since).total_seconds(), hours.open_seconds(asset_type, since, now)

    sync_age, open_sync_age = ages(last_sync)
    data_age, open_data_age = ages(data_time)
    eod, behind = None, False
    if publication_delay is not None:
        eod = newest_bar(hours, asset_type, now, publication_delay)
        grace = dt.timedelta(seconds=stale_after_seconds)
        behind = not newest_bar(hours, asset_type, now - grace, publication_delay).holds(data_time)
    return Freshness(
        market_open=hours.is_open(asset_type, now),
        last_sync=last_sync,
        data_time=data_time,
        sync_age_seconds=sync_age,
        open_sync_age_seconds=open_sync_age,
        data_age_seconds=data_age,
        open_data_age_seconds=open_data_age,
        stale_after_seconds=stale_after_seconds,
        max_data_age_seconds=max_data_age_seconds,
        end_of_day=eod,
        behind_plan=behind,
    )
