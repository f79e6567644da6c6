"""Which provider serves a symbol: the symbols file's `providers:` (an ordered list per market,
per symbol if given), a provider's circuit (open after an outage, retried on a schedule) and the
order a refresh asks them in (live before end of day, the recently failed and the busy last).
Pure: no HTTP, no database. Why: docs/design/fallback.md."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from assets_pipeline.rules.cadence import CadenceError, parse_duration
from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.taxonomy import AssetType

#: Each market's providers, in order, where the symbols file names none: the free live ones
#: first (Kraken's then Bitstamp's public data, OANDA's practice account), Polygon after them
#: and for indices.
DEFAULT_CHAINS: Mapping[AssetType, tuple[str, ...]] = {
    AssetType.FOREX: (ProviderName.OANDA.value, ProviderName.POLYGON.value),
    AssetType.CRYPTO: (
        ProviderName.KRAKEN.value,
        ProviderName.BITSTAMP.value,
        ProviderName.POLYGON.value,
    ),
    AssetType.INDEX: (ProviderName.POLYGON.value,),
}
#: How long a provider's circuit stays open after an outage before a refresh asks it again.
DEFAULT_RETRY_AFTER_SECONDS = 300.0
#: How long a provider that failed a symbol is asked after the others for it (hysteresis).
DEFAULT_RETURN_AFTER_SECONDS = 900.0
#: How long a critical symbol may be served by a fallback before its check fails.
DEFAULT_ALERT_AFTER_SECONDS = 1800.0
#: The budget store's name for a provider's circuit (`CallBudget.refuse`/`refusal`).
CIRCUIT = "circuit"
_KEYS = {"markets", "retry_after", "return_after", "alert_after"}


class FallbackError(ValueError):
    """The `providers:` section (or a symbol's `providers`) is unusable; the message says where."""


@dataclass(frozen=True)
class FallbackPolicy:
    """The symbols file's `providers:` section, with its defaults."""

    markets: Mapping[AssetType, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_CHAINS)
    retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS
    return_after_seconds: float = DEFAULT_RETURN_AFTER_SECONDS
    alert_after_seconds: float = DEFAULT_ALERT_AFTER_SECONDS

    def chain(self, asset_type: AssetType, own: Sequence[str] = ()) -> tuple[str, ...]:
        """A symbol's providers in order: its own list, else its market's."""
        return tuple(own) or self.markets[asset_type]


def parse_chain(value: Any, where: str) -> tuple[str, ...]:
    """An ordered, non-empty list of known provider names, none twice."""
    names = [str(p) for p in ProviderName]
    if not isinstance(value, list) or not value:
        raise FallbackError(f"{where}: expected a non-empty list of providers ({', '.join(names)})")
    for name in value:
        if name not in names:
            raise FallbackError(
                f"{where}: unknown provider {excerpt(name)} (expected one of {', '.join(names)})"
            )
    if len(set(value)) != len(value):
        raise FallbackError(f"{where}: a provider is named twice")
    return tuple(value)


def parse_fallback(document: Any, source: str) -> FallbackPolicy:
    """The symbols file's `providers:` mapping (None: every default)."""
    if document is None:
        return FallbackPolicy()
    where = f"{source}: providers"
    if not isinstance(document, Mapping) or set(document) - _KEYS:
        raise FallbackError(f"{where}: a mapping of {', '.join(sorted(_KEYS))}")
    markets = dict(DEFAULT_CHAINS)
    given = document.get("markets") or {}
    if not isinstance(given, Mapping):
        raise FallbackError(f"{where}.markets: a mapping of market to providers")
    for market, chain in given.items():
        if market not in {str(kind) for kind in AssetType}:
            raise FallbackError(f"{where}.markets: unknown market {excerpt(market)}")
        markets[AssetType(market)] = parse_chain(chain, f"{where}.markets.{market}")
    durations = {}
    for key, default in (
        ("retry_after", DEFAULT_RETRY_AFTER_SECONDS),
        ("return_after", DEFAULT_RETURN_AFTER_SECONDS),
        ("alert_after", DEFAULT_ALERT_AFTER_SECONDS),
    ):
        try:
            durations[key] = parse_duration(document.get(key, default))
        except CadenceError as exc:
            raise FallbackError(f"{where}.{key}: {exc}") from None
    return FallbackPolicy(
        markets, durations["retry_after"], durations["return_after"], durations["alert_after"]
    )


@dataclass(frozen=True)
class Circuit:
    """A provider's health as every process sees it: open from `opened_at` (its last outage)
    for `retry_after`, then asked again (one refresh tries it; another outage reopens it)."""

    opened_at: dt.datetime | None = None
    why: str = ""

    def is_open(self, now: dt.datetime, retry_after_seconds: float) -> bool:
        if self.opened_at is None:
            return False
        return now - self.opened_at < dt.timedelta(seconds=retry_after_seconds)

    def retry_at(self, retry_after_seconds: float) -> dt.datetime | None:
        if self.opened_at is None:
            return None
        return self.opened_at + dt.timedelta(seconds=retry_after_seconds)

    def describe(self, now: dt.datetime, retry_after_seconds: float) -> str:
        if not self.is_open(now, retry_after_seconds):
            return "closed" if self.opened_at is None else "closed (asked again after an outage)"
        retry = self.retry_at(retry_after_seconds)
        assert retry is not None
        return f"open until {retry.isoformat(timespec='seconds')}: {self.why}"

    def as_message(self) -> str:
        """How it is kept (a refusal's message in the provider's budget store)."""
        opened = self.opened_at.isoformat() if self.opened_at else None
        return json.dumps({"opened_at": opened, "why": self.why})

    @classmethod
    def from_message(cls, message: str) -> Circuit:
        """The inverse of `as_message`; anything unreadable is a closed circuit."""
        try:
            data = json.loads(message)
            return cls(dt.datetime.fromisoformat(data["opened_at"]), str(data.get("why", "")))
        except (ValueError, TypeError, KeyError):
            return cls()


@dataclass(frozen=True)
class Candidate:
    """What a refresh knows of one provider for one symbol, right now."""

    name: str
    #: Its data for the symbol's market is live (not end of day) on the configured account.
    live: bool = True
    #: It failed this symbol within `return_after`: asked after the others (hysteresis).
    held: bool = False
    #: Its budget has no free slot now.
    busy: bool = False


def order(candidates: Sequence[Candidate]) -> list[str]:
    """The providers to ask, in the symbol's order but live before end of day, then those that
    did not fail the symbol lately, then those with budget free now. A provider whose circuit is
    open, that is not configured or does not serve the symbol is not a candidate at all."""
    ranked = sorted(
        enumerate(candidates), key=lambda item: (not item[1].live, item[1].held, item[1].busy)
    )
    return [candidate.name for _, candidate in ranked]


def primary(chain: Sequence[str], usable: Set[str], live: Set[str]) -> str | None:
    """The provider that serves a symbol when all are healthy: the first usable and live, else
    the first usable. Any other serving it is a fallback."""
    usable_chain = [name for name in chain if name in usable]
    return next((n for n in usable_chain if n in live), usable_chain[0] if usable_chain else None)
