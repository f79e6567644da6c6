"""How often each tier is refreshed, and how the secondary queue behaves. Pure: no I/O.

The reference design refreshes the critical tier every 5 minutes, enqueues the secondary tiers
every 30 minutes and drains the queue every 15 seconds. Those are the defaults; the symbols file
can change them per tier:

    tiers:
      critical: {refresh: direct, every: 5m}
      high:     {refresh: queued, every: 30m}
    queue: {drain_every: 15s, max_size: 1000, max_retries: 3}

`direct` tiers are refreshed by their own schedule; `queued` tiers are put on the durable queue,
which a sensor drains as the budget allows. A cadence that is a whole number of minutes dividing
an hour (or of hours dividing a day) becomes a cron schedule; anything else (20s, say, to compress
time in tests) becomes a sensor with that interval, driven by the same decision code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from assets_pipeline.taxonomy import Tier

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


class CadenceError(ValueError):
    pass


def parse_duration(value: Any) -> float:
    """`"5m"` -> 300.0; plain numbers are seconds."""
    if isinstance(value, bool):
        raise CadenceError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise CadenceError(f"{value!r} is not a duration such as 15s, 5m or 1h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise CadenceError(f"{value!r} must be longer than zero")
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


@dataclass(frozen=True)
class TierPolicy:
    """How one tier is kept fresh."""

    tier: Tier
    refresh: str  # "direct" (its own schedule) or "queued" (through the queue)
    every_seconds: float
    #: Stale when the last successful update is older than this (counting open-market time).
    stale_after_seconds: float = 900.0

    @property
    def cron(self) -> str | None:
        return cron_for(self.every_seconds)


@dataclass(frozen=True)
class QueuePolicy:
    drain_every_seconds: float = 15.0
    max_size: int = 1000
    max_retries: int = 3


DEFAULT_TIERS: dict[Tier, TierPolicy] = {
    Tier.CRITICAL: TierPolicy(Tier.CRITICAL, "direct", 300.0),
    Tier.HIGH: TierPolicy(Tier.HIGH, "queued", 1800.0),
    Tier.MEDIUM: TierPolicy(Tier.MEDIUM, "queued", 1800.0),
    Tier.LOW: TierPolicy(Tier.LOW, "queued", 1800.0),
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
        refresh = settings.get("refresh", base.refresh)
        if refresh not in ("direct", "queued"):
            raise CadenceError(
                f"{where}: tiers.{name}.refresh: {refresh!r} is not 'direct' or 'queued'"
            )
        durations = {}
        for key, default in (
            ("every", base.every_seconds),
            ("stale_after", base.stale_after_seconds),
        ):
            try:
                durations[key] = parse_duration(settings.get(key, default))
            except CadenceError as exc:
                raise CadenceError(f"{where}: tiers.{name}.{key}: {exc}") from None
        policies[tier] = TierPolicy(tier, refresh, durations["every"], durations["stale_after"])
    return policies


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
            raise CadenceError(f"{where}: queue.{field}: {value!r} is not a whole number >= 0")
        values[field] = value
    if values["max_size"] < 1:
        raise CadenceError(f"{where}: queue.max_size: must be at least 1")
    return QueuePolicy(drain, values["max_size"], values["max_retries"])
