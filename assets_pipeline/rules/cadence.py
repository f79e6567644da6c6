"""How often each tier is refreshed, and how the secondary queue behaves. Pure: no I/O.

The symbols file's `tiers:` and `queue:` parsed, with their defaults (docs/plans.md); durations;
the cron a cadence becomes, or None for a sensor (docs/design/refresh-cadence.md); and each tier's
`stale_after` where the file leaves it out: two cadences for a direct tier, its cadence plus the
queue's drain time for a queued one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.plans import SnapshotMode
from assets_pipeline.rules.taxonomy import Tier

#: `/v3/snapshot` takes at most 250 tickers a call: what one `batch` call refreshes.
BATCH_TICKERS = 250
#: The budget when nothing says otherwise (`POLYGON_RATE_LIMIT_CALLS`, `..._WINDOW_SECONDS`):
#: the free plan's 5 calls a minute. Settings, resources and `BudgetShape` all take these.
DEFAULT_RATE_LIMIT_CALLS = 5
DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 60.0
#: The other providers' budgets (`KRAKEN_RATE_LIMIT_*`, `OANDA_RATE_LIMIT_*`,
#: `BITSTAMP_RATE_LIMIT_*`): Kraken's public data a call a second on average (its counter decays
#: 0.33 a second from 15); OANDA two requests a second (its cap on new connections; each request
#: here opens one); Bitstamp a call a second, far below its 10,000 per 10 minutes.
DEFAULT_KRAKEN_BUDGET = (60, DEFAULT_RATE_LIMIT_WINDOW_SECONDS)
DEFAULT_BITSTAMP_BUDGET = (60, DEFAULT_RATE_LIMIT_WINDOW_SECONDS)
DEFAULT_OANDA_BUDGET = (2, 1.0)
#: Time for a run to be launched and start its process (sensor interval, 4-5 s of start-up,
#: a busy machine).
RUN_START_SECONDS = 60.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


class CadenceError(ValueError):
    pass


def parse_duration(value: Any) -> float:
    """`"5m"` -> 300.0; plain numbers are seconds."""
    if isinstance(value, bool):
        raise CadenceError(f"{excerpt(value)} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise CadenceError(f"{excerpt(value)} is not a duration such as 15s, 5m or 1h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise CadenceError(f"{excerpt(value)} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def cron_for(seconds: float) -> str | None:
    """A cron string with exactly this period, or None if cron cannot express it."""
    if seconds % 60:
        return None
    minutes = int(seconds // 60)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60 == 0:
        hours = minutes // 60
        if hours < 24 and 24 % hours == 0:
            return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
        if hours == 24:
            return "0 0 * * *"
    return None


def period_of_cron(cron: str) -> float | None:
    """The inverse of `cron_for`: the period of a cron string it makes, else None."""
    minute, hour, *rest = cron.split()
    if rest != ["*", "*", "*"]:
        return None
    if hour == "*":
        if minute == "*":
            return 60.0
        if minute.startswith("*/"):
            return 60.0 * int(minute[2:])
        return 3600.0 if minute == "0" else None
    if minute != "0":
        return None
    if hour.startswith("*/"):
        return 3600.0 * int(hour[2:])
    return 86400.0 if hour == "0" else None


def next_tick(every_seconds: float, after: dt.datetime) -> dt.datetime:
    """When a cadence that cron can express (`cron_for`) next fires, strictly after `after`.

    Every such cron fires at whole multiples of its period counted from midnight UTC.
    """
    midnight = after.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (after - midnight).total_seconds()
    return midnight + dt.timedelta(seconds=(elapsed // every_seconds + 1) * every_seconds)


class Refresh(StrEnum):
    """How a tier is refreshed: on its own schedule, or through the queue."""

    DIRECT = "direct"
    QUEUED = "queued"


@dataclass(frozen=True)
class TierPolicy:
    """How one tier is kept fresh."""

    tier: Tier
    refresh: Refresh
    every_seconds: float
    #: Stale when the last successful update is older than this (counting open-market time).
    #: None until derived from the cadence (`derive_stale_after`), unless the file sets it.
    stale_after_seconds: float | None = None

    @property
    def cron(self) -> str | None:
        return cron_for(self.every_seconds)


@dataclass(frozen=True)
class QueuePolicy:
    drain_every_seconds: float = 15.0
    max_size: int = 1000
    max_retries: int = 3


DEFAULT_TIERS: dict[Tier, TierPolicy] = {
    Tier.CRITICAL: TierPolicy(Tier.CRITICAL, Refresh.DIRECT, 300.0),
    Tier.HIGH: TierPolicy(Tier.HIGH, Refresh.QUEUED, 1800.0),
    Tier.MEDIUM: TierPolicy(Tier.MEDIUM, Refresh.QUEUED, 1800.0),
    Tier.LOW: TierPolicy(Tier.LOW, Refresh.QUEUED, 1800.0),
}


def parse_tiers(document: Any, where: str) -> dict[Tier, TierPolicy]:
    """The `tiers:` section over the defaults; errors name the tier and the field."""
    policies = dict(DEFAULT_TIERS)
    if document is None:
        return policies
    if not isinstance(document, dict):
        raise CadenceError(f"{where}: 'tiers' must be a mapping of tier -> settings")
    for name, settings in document.items():
        try:
            tier = Tier(name)
        except ValueError:
            raise CadenceError(
                f"{where}: tiers.{name}: unknown tier (expected one of {', '.join(Tier)})"
            ) from None
        if not isinstance(settings, dict):
            raise CadenceError(f"{where}: tiers.{name}: expected a mapping")
        unknown = sorted(set(settings) - {"refresh", "every", "stale_after"})
        if unknown:
            raise CadenceError(f"{where}: tiers.{name}.{unknown[0]}: unknown field")
        base = policies[tier]
        try:
            refresh = Refresh(settings.get("refresh", base.refresh))
        except ValueError:
            raise CadenceError(
                f"{where}: tiers.{name}.refresh: {excerpt(settings['refresh'])} is not 'direct'"
                " or 'queued'"
            ) from None
        durations: dict[str, float | None] = {"stale_after": None}
        for key, default in (("every", base.every_seconds), ("stale_after", None)):
            if settings.get(key, default) is None:
                continue
            try:
                durations[key] = parse_duration(settings.get(key, default))
            except CadenceError as exc:
                raise CadenceError(f"{where}: tiers.{name}.{key}: {exc}") from None
        every, stale_after = durations["every"], durations["stale_after"]
        assert every is not None
        if stale_after is not None and stale_after < every:
            raise CadenceError(
                f"{where}: tiers.{name}.stale_after: {format_duration(stale_after)} is shorter"
                f" than the tier's cadence (every {format_duration(every)}): a healthy tier"
                " would be called stale between two refreshes. Leave it out to have it"
                " derived from the cadence, or make it at least the cadence."
            )
        policies[tier] = TierPolicy(tier, refresh, every, stale_after)
    return policies


@dataclass(frozen=True)
class BudgetShape:
    """What the staleness defaults need to know of the budget: calls per window and mode."""

    calls: int = DEFAULT_RATE_LIMIT_CALLS
    window_seconds: float = DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    mode: str = SnapshotMode.BATCH


def calls_for(tickers: int, mode: str) -> int:
    """API calls one refresh of this many distinct tickers takes (without retries)."""
    if tickers <= 0:
        return 0
    return math.ceil(tickers / BATCH_TICKERS) if mode == SnapshotMode.BATCH else tickers


def drain_seconds(
    queued_tickers: int, reserve: int, queue: QueuePolicy, budget: BudgetShape
) -> float:
    """How long the queue may take to refresh `queued_tickers` once they are enqueued: at the
    calls a window leaves after the critical reserve (as if the reserve held in every window,
    the worst case), plus a drain interval and a run's start."""
    per_window = max(budget.calls - reserve, 1)
    windows = math.ceil(calls_for(queued_tickers, budget.mode) / per_window)
    return queue.drain_every_seconds + windows * budget.window_seconds + RUN_START_SECONDS


def derive_stale_after(
    tiers: Mapping[Tier, TierPolicy],
    tickers: Mapping[Tier, set[str]],
    queue: QueuePolicy,
    budget: BudgetShape,
) -> dict[Tier, TierPolicy]:
    """Each tier's `stale_after`, where the symbols file leaves it out.

    A direct tier: two cadences, so one missed refresh is no alarm and two are. A queued tier:
    its cadence plus the time the queue needs to drain it and every queued tier ahead of it.
    On a healthy system no symbol is then ever stale.
    """
    direct = set().union(
        *(tickers.get(t, set()) for t, p in tiers.items() if p.refresh is Refresh.DIRECT)
    )
    reserve = calls_for(len(direct), budget.mode)
    out: dict[Tier, TierPolicy] = {}
    ahead: set[str] = set()
    for tier in Tier:
        policy = tiers[tier]
        if policy.refresh is Refresh.QUEUED:
            ahead |= tickers.get(tier, set())
        if policy.stale_after_seconds is not None:
            out[tier] = policy
            continue
        if policy.refresh is Refresh.DIRECT:
            stale_after = 2 * policy.every_seconds
        else:
            stale_after = policy.every_seconds + drain_seconds(len(ahead), reserve, queue, budget)
        out[tier] = dataclasses.replace(policy, stale_after_seconds=stale_after)
    return out


def parse_queue(document: Any, where: str) -> QueuePolicy:
    if document is None:
        return QueuePolicy()
    if not isinstance(document, dict):
        raise CadenceError(f"{where}: 'queue' must be a mapping")
    unknown = sorted(set(document) - {"drain_every", "max_size", "max_retries"})
    if unknown:
        raise CadenceError(f"{where}: queue.{unknown[0]}: unknown field")
    defaults = QueuePolicy()
    try:
        drain = parse_duration(document.get("drain_every", defaults.drain_every_seconds))
    except CadenceError as exc:
        raise CadenceError(f"{where}: queue.drain_every: {exc}") from None
    values = {}
    for field in ("max_size", "max_retries"):
        value = document.get(field, getattr(defaults, field))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CadenceError(
                f"{where}: queue.{field}: {excerpt(value)} is not a whole number >= 0"
            )
        values[field] = value
    if values["max_size"] < 1:
        raise CadenceError(f"{where}: queue.max_size: must be at least 1")
    return QueuePolicy(drain, values["max_size"], values["max_retries"])
