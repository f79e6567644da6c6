"""The providers of prices, by name: the one home of their names (`ProviderName`), of how a
quote's `source` (`provider:endpoint`) names its provider, and of what a provider's own plan word
is in the events' words (`free`, `paid`). Pure: no HTTP, no database."""

from __future__ import annotations

import enum


class ProviderName(enum.StrEnum):
    """A provider's name: its row in `data_sources.api_providers` and the `provider` of every
    quote, sync status, history row and event it served."""

    POLYGON = "polygon"
    KRAKEN = "kraken"
    OANDA = "oanda"
    BITSTAMP = "bitstamp"


def label(name: str) -> str:
    """A provider's name as a sentence writes it (`Polygon`, `Kraken`, `OANDA`)."""
    return "OANDA" if name == ProviderName.OANDA else name.title()


#: Where each provider is asked, when known: the `base_url` of its `api_providers` row.
BASE_URLS = {
    ProviderName.POLYGON: "https://api.polygon.io",
    ProviderName.KRAKEN: "https://api.kraken.com",
    ProviderName.OANDA: "https://api-fxpractice.oanda.com",
    ProviderName.BITSTAMP: "https://www.bitstamp.net",
}

#: Provider plans that cost nothing (Kraken's and Bitstamp's public data, OANDA's practice
#: account): the events' `plan` says `free` for them (schema v3 knows `free` and `paid` only).
FREE_PLANS = frozenset({"public", "practice"})


def provider_of_source(source: str) -> str:
    """The provider a `source` names: its part before the first `:` (`kraken:v0-public-ticker`
    -> `kraken`); a source without one names none (``)."""
    head, colon, _ = source.partition(":")
    return head if colon else ""
