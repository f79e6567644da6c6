"""What the trading database says of each symbol's providers: every provider's sync status row
for it (the refresh's hysteresis reads which failed it lately; `status` and `doctor` list them)
and which provider serves it now, since when (`metadata.serving`, written with each quote)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from assets_pipeline.persistence.quote_store import as_utc, chunks, metadata_dict
from assets_pipeline.persistence.schema import api_providers, data_sync_status, symbols
from assets_pipeline.rules.quotes import parse_iso_utc


@dataclass(frozen=True)
class ProviderSync:
    """One provider's sync status row for one symbol."""

    status: str
    updated_at: dt.datetime | None
    last_sync: dt.datetime | None
    error: str | None


@dataclass(frozen=True)
class Serving:
    """The provider of a symbol's stored quote and since when; its primary, and since when a
    fallback has served it (None: its primary serves it)."""

    provider: str
    since: dt.datetime | None = None
    primary: str = ""
    fallback_since: dt.datetime | None = None


def provider_syncs(engine: sa.Engine, wanted: Iterable[str]) -> dict[str, dict[str, ProviderSync]]:
    """Each symbol's sync status rows by provider, in one query per thousand symbols."""
    found: dict[str, dict[str, ProviderSync]] = {}
    for chunk in chunks(wanted):
        query = (
            sa.select(
                symbols.c.symbol,
                api_providers.c.name,
                data_sync_status.c.sync_status,
                data_sync_status.c.updated_at,
                data_sync_status.c.last_sync_timestamp,
                data_sync_status.c.error_message,
            )
            .select_from(data_sync_status)
            .join(symbols, symbols.c.id == data_sync_status.c.ticker_id)
            .join(api_providers, api_providers.c.id == data_sync_status.c.provider_id)
            .where(symbols.c.symbol.in_(chunk))
        )
        with engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.symbol, {})[row.name] = ProviderSync(
                    row.sync_status,
                    as_utc(row.updated_at),
                    as_utc(row.last_sync_timestamp),
                    row.error_message,
                )
    return found


def serving(engine: sa.Engine, wanted: Iterable[str]) -> dict[str, Serving]:
    """Who serves each symbol that has a stored quote (`metadata.serving`; a quote stored
    before there was one names its provider alone)."""
    found: dict[str, Serving] = {}
    for chunk in chunks(wanted):
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(symbols.c.symbol, symbols.c.meta).where(symbols.c.symbol.in_(chunk))
            ).all()
        for row in rows:
            meta = metadata_dict(row.meta)
            held = meta.get("serving") if isinstance(meta.get("serving"), dict) else {}
            last = meta.get("last_update") if isinstance(meta.get("last_update"), dict) else {}
            provider = held.get("provider") or last.get("provider")
            if provider:
                found[row.symbol] = Serving(
                    str(provider),
                    _moment(held.get("since")),
                    str(held.get("primary") or provider),
                    _moment(held.get("fallback_since")),
                )
    return found


def _moment(text: Any) -> dt.datetime | None:
    try:
        return parse_iso_utc(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


def recently_failed(
    syncs: dict[str, dict[str, ProviderSync]], since: dt.datetime
) -> dict[str, set[str]]:
    """Per symbol, the providers whose sync status is `failed` since `since` (hysteresis)."""
    return {
        symbol: {
            name
            for name, sync in rows.items()
            if sync.status == "failed" and sync.updated_at is not None and sync.updated_at > since
        }
        for symbol, rows in syncs.items()
    }
