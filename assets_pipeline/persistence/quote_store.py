"""Writing quotes to the trading database: one transaction per quote, nothing half written.

For each quote, in one transaction: the symbol row's `metadata.last_update` (other metadata keys
kept), its `updated_at`, the sync status, a history row and an outbox event. The symbol row is
locked first, so two runs writing the same symbol serialize and the older quote never wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from assets_pipeline.config.registry import SymbolSpec
from assets_pipeline.persistence.database import dialect_insert, insert_ignore
from assets_pipeline.persistence.schema import (
    api_providers,
    data_sync_status,
    event_outbox,
    quote_history,
    symbols,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.providers import BASE_URLS, ProviderName
from assets_pipeline.rules.quotes import Quote, Timeframe, iso_utc, parse_iso_utc

#: Redis channel for a symbol's updates; the namespace is empty in production.
CHANNEL_TEMPLATE = "{namespace}asset:update:{symbol}"
MAX_ERROR_LENGTH = 2000
#: A write's reason when the stored quote already has the same data time and price.
UNCHANGED = "unchanged: the stored quote has the same data time and price"


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: `written` False means the stored quote was as new or newer."""

    written: bool
    event_id: str | None
    stored_data_time: dt.datetime | None
    reason: str


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were written in UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def metadata_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    return dict(value) if isinstance(value, Mapping) else {}


def price_update_event(quote: Quote, event_id: str) -> dict[str, Any]:
    """The message announced on `asset:update:{SYMBOL}`."""
    return {
        "type": "price_update",
        "symbol": quote.symbol,
        "data": quote.event_data(),
        "event_id": event_id,
    }


class QuoteStore:
    """The trading database as this project uses it. It remembers the ids it has seen committed
    for as long as it lives (its owner's: the database resource's run, a command)."""

    def __init__(self, engine: sa.Engine, namespace: str = "") -> None:
        self.engine = engine
        self.namespace = namespace
        #: Each provider's id by name, once seen committed.
        self._provider_ids: dict[str, int] = {}
        #: Symbol ids once seen committed: a run writes thousands of quotes, and a symbol's id
        #: does not change. A row deleted meanwhile is found again (`write_quote`).
        self._symbol_ids: dict[str, int] = {}

    # --- registration ------------------------------------------------------------------------

    def register_symbols(
        self, specs: Iterable[SymbolSpec], provider: str = ProviderName.POLYGON
    ) -> int:
        """Add configured symbols that `trading.symbols` lacks, each with a sync status row for
        `provider`; return how many symbols were added."""
        with self.engine.begin() as conn:
            provider_id = self._provider(conn, provider)
            return self._ensure_symbols(conn, list(specs), provider_id)[2]

    def _ensure_symbols(
        self, conn: sa.Connection, specs: list[SymbolSpec], provider_id: int
    ) -> tuple[dict[str, int], dict[int, str], int]:
        """(symbol ids by symbol, sync status by id, how many symbol rows were inserted now)
        for many symbols, each with its sync status row, in a few statements per thousand
        symbols rather than a few per symbol (a run over thousands of symbols starts with this)."""
        ids = _ids_of(conn, (spec.symbol for spec in specs))
        missing = [spec for spec in specs if spec.symbol not in ids]
        for spec in missing:  # rare: a symbol's first run
            ids[spec.symbol] = self._ensure_symbol(conn, spec, provider_id)[0]
        status_of = _statuses(conn, ids.values(), provider_id)
        rows = [
            {"ticker_id": i, "provider_id": provider_id, "sync_status": "pending"}
            for i in ids.values()
            if i not in status_of
        ]
        if rows:
            conn.execute(dialect_insert(conn, data_sync_status).on_conflict_do_nothing(), rows)
            status_of.update({row["ticker_id"]: "pending" for row in rows})
        return ids, status_of, len(missing)

    def _provider(self, conn: sa.Connection, name: str = ProviderName.POLYGON) -> int:
        """The provider's row in `data_sources.api_providers`, created on its first use (with
        its base URL, if known). Its id is kept by the store once the row is seen committed (a
        row inserted in a transaction that may still roll back is not)."""
        name = str(name)
        if name in self._provider_ids:
            return self._provider_ids[name]
        query = sa.select(api_providers.c.id).where(api_providers.c.name == name)
        found = conn.execute(query).scalar_one_or_none()
        if found is not None:
            self._provider_ids[name] = found
            return found
        base_url = BASE_URLS.get(ProviderName(name)) if name in set(ProviderName) else None
        conn.execute(insert_ignore(conn, api_providers, {"name": name, "base_url": base_url}))
        return conn.execute(query).scalar_one()

    def _ensure_symbol(
        self, conn: sa.Connection, spec: SymbolSpec, provider_id: int
    ) -> tuple[int, int]:
        """(symbol id, 1 if it was inserted now else 0)."""
        inserted = conn.execute(
            insert_ignore(
                conn,
                symbols,
                {
                    "symbol": spec.symbol,
                    "name": spec.name,
                    "asset_type": spec.asset_type.value,
                    "base_asset": spec.base_asset,
                    "quote_asset": spec.quote_asset,
                    "price_precision": spec.price_precision,
                    "meta": {"polygon_ticker": spec.polygon_ticker, "tier": spec.tier.value},
                },
            ).returning(symbols.c.id)
        ).scalar_one_or_none()
        symbol_id = conn.execute(
            sa.select(symbols.c.id).where(symbols.c.symbol == spec.symbol)
        ).scalar_one()
        conn.execute(
            insert_ignore(
                conn,
                data_sync_status,
                {"ticker_id": symbol_id, "provider_id": provider_id, "sync_status": "pending"},
            )
        )
        return symbol_id, int(inserted is not None)

    # --- writes ------------------------------------------------------------------------------

    def write_quote(
        self,
        spec: SymbolSpec,
        quote: Quote,
        run_id: str | None = None,
        primary: str | None = None,
    ) -> WriteOutcome:
        """Store a validated quote, unless the stored one is newer. The same data time and price
        again is no news: the sync is recorded (its time, and `fetched_at` in the stored quote),
        but no history row is written and no event announced. The same data time with another
        price is the vendor's correction: stored over the old one (its history row too), and
        announced."""
        if quote.symbol != spec.symbol:
            raise ValueError(f"quote for {quote.symbol!r} handed to the writer for {spec.symbol}")
        now = clock.utcnow()
        if quote.fetched_at is None:  # handed in without the client's stamp: fetched by now
            quote = dataclasses.replace(quote, fetched_at=now)
        with self.engine.begin() as conn:
            provider_id = self._provider(conn, quote.provider)
            symbol_id = self._symbol_ids.get(spec.symbol)
            meta = None if symbol_id is None else _locked_metadata(conn, symbol_id)
            if symbol_id is None or meta is None:
                symbol_id, _ = self._ensure_symbol(conn, spec, provider_id)
                meta = _locked_metadata(conn, symbol_id) or {}
            stored = _stored_quote(spec.symbol, meta, spec.price_precision)
            stored_time = stored.data_time if stored else None
            self._upsert_status(conn, symbol_id, provider_id, "success", None, now)
            if quote.same_price(stored):
                _set_fetched_at(conn, symbol_id, meta, quote.fetched_at)
                return WriteOutcome(False, None, stored_time, UNCHANGED)
            if stored_time is not None and stored_time > quote.data_time:
                return WriteOutcome(
                    written=False,
                    event_id=None,
                    stored_data_time=stored_time,
                    reason=f"stored quote ({stored_time.isoformat()}) is newer",
                )
            _set_last_update(conn, symbol_id, meta, quote, now, primary)
            _insert_history(conn, symbol_id, spec, quote, run_id, now)
            event_id = self._add_event(conn, spec, quote, now)
        self._symbol_ids[spec.symbol] = symbol_id
        return WriteOutcome(
            written=True, event_id=event_id, stored_data_time=stored_time, reason="written"
        )

    def _add_event(
        self, conn: sa.Connection, spec: SymbolSpec, quote: Quote, now: dt.datetime
    ) -> str:
        """The quote's price update in the outbox, for the relay to announce; its event id."""
        event_id = str(uuid.uuid4())
        conn.execute(
            sa.insert(event_outbox).values(
                event_id=event_id,
                channel=self.channel(spec.symbol),
                symbol=spec.symbol,
                payload=json.dumps(price_update_event(quote, event_id)),
                created_at=now,
            )
        )
        return event_id

    def record_failure(
        self, spec: SymbolSpec, error: str, provider: str = ProviderName.POLYGON
    ) -> None:
        """`provider`'s sync status `failed` with the error, cut to `MAX_ERROR_LENGTH` and made
        safe to store (no NUL, no lone surrogate); the stored quote is left as it was."""
        error = clip(error, MAX_ERROR_LENGTH)
        with self.engine.begin() as conn:
            provider_id = self._provider(conn, provider)
            symbol_id, _ = self._ensure_symbol(conn, spec, provider_id)
            self._upsert_status(conn, symbol_id, provider_id, "failed", error, clock.utcnow())

    def start_refresh(
        self, specs: Iterable[SymbolSpec], provider: str = ProviderName.POLYGON
    ) -> dict[str, str]:
        """Sync status `in_progress` for the symbols a run is about to refresh, in one
        transaction; return the statuses they had. A run that dies mid-way (the database
        restarted, the worker killed) leaves those it did not reach `in_progress`, which says what
        happened, rather than the previous run's `success`."""
        specs = list(specs)
        if not specs:
            return {}
        with self.engine.begin() as conn:
            provider_id = self._provider(conn, provider)
            ids, status_of, _ = self._ensure_symbols(conn, specs, provider_id)
            now = clock.utcnow()
            for chunk in _chunks_of(list(ids.values())):
                conn.execute(
                    sa.update(data_sync_status)
                    .where(
                        data_sync_status.c.ticker_id.in_(chunk),
                        data_sync_status.c.provider_id == provider_id,
                    )
                    .values(sync_status="in_progress", updated_at=now)
                )
        self._symbol_ids.update(ids)
        return {symbol: status_of[i] for symbol, i in ids.items()}

    def restore_status(
        self, spec: SymbolSpec, status: str, provider: str = ProviderName.POLYGON
    ) -> None:
        """Put back the status a symbol had with `provider` before `start_refresh` (it was not
        refreshed, and not for a reason of its own), unless something else has set it since."""
        with self.engine.begin() as conn:
            provider_id = self._provider(conn, provider)
            symbol_id, _ = self._ensure_symbol(conn, spec, provider_id)
            if self._status_of(conn, symbol_id, provider_id) == "in_progress":
                self._set_status(conn, symbol_id, provider_id, status, clock.utcnow())

    def _status_of(self, conn: sa.Connection, symbol_id: int, provider_id: int) -> str:
        return conn.execute(
            sa.select(data_sync_status.c.sync_status).where(
                data_sync_status.c.ticker_id == symbol_id,
                data_sync_status.c.provider_id == provider_id,
            )
        ).scalar_one()

    def _set_status(
        self, conn: sa.Connection, symbol_id: int, provider_id: int, status: str, now: dt.datetime
    ) -> None:
        """Only the status (and when it changed): the last sync and the error stay."""
        conn.execute(
            sa.update(data_sync_status)
            .where(
                data_sync_status.c.ticker_id == symbol_id,
                data_sync_status.c.provider_id == provider_id,
            )
            .values(sync_status=status, updated_at=now)
        )

    def mark_stale(self, seen: Mapping[SymbolSpec, dt.datetime | None]) -> int:
        """Sync status `success` (`pending`, `in_progress`) -> `stale`, on each of its providers'
        rows, for each symbol whose newest sync across its providers is still the one the caller
        saw (`None`: never synced); return how many symbols were marked.

        A check reads the status, judges it, then marks: a quote committed in between, by any
        provider, has moved a `last_sync_timestamp` on, so that symbol keeps its fresh `success`.
        A `failed` status keeps its error; the next successful write sets a stale one back."""
        if not seen:
            return 0
        marked = 0
        other = data_sync_status.alias("other")
        with self.engine.begin() as conn:
            now = clock.utcnow()
            for spec, last_sync in seen.items():
                symbol_id = sa.select(symbols.c.id).where(symbols.c.symbol == spec.symbol)
                newer = (
                    other.c.last_sync_timestamp.is_not(None)
                    if last_sync is None
                    else other.c.last_sync_timestamp > as_utc(last_sync)
                )
                synced_since = sa.exists().where(
                    other.c.ticker_id == data_sync_status.c.ticker_id, newer
                )
                rows = conn.execute(
                    sa.update(data_sync_status)
                    .where(
                        data_sync_status.c.ticker_id == symbol_id.scalar_subquery(),
                        data_sync_status.c.sync_status.in_(("success", "pending", "in_progress")),
                        ~synced_since,
                    )
                    .values(sync_status="stale", updated_at=now)
                ).rowcount
                marked += int(rows > 0)
        return marked

    def _upsert_status(
        self,
        conn: sa.Connection,
        symbol_id: int,
        provider_id: int,
        status: str,
        error: str | None,
        now: dt.datetime,
    ) -> None:
        values: dict[str, Any] = {"sync_status": status, "error_message": error, "updated_at": now}
        if status == "success":
            values["last_sync_timestamp"] = now
        insert = dialect_insert(conn, data_sync_status).values(
            ticker_id=symbol_id, provider_id=provider_id, **values
        )
        conn.execute(
            insert.on_conflict_do_update(index_elements=["ticker_id", "provider_id"], set_=values)
        )

    def channel(self, symbol: str) -> str:
        return CHANNEL_TEMPLATE.format(namespace=self.namespace, symbol=symbol)

    # --- reads -------------------------------------------------------------------------------

    def latest_quote(self, symbol: str) -> Quote | None:
        """The stored `last_update` of a symbol as a `Quote`, or None if it has none yet."""
        return self.latest_quotes([symbol]).get(symbol)

    def latest_quotes(self, wanted: Iterable[str]) -> dict[str, Quote]:
        """The stored `last_update` of each symbol that has one, in one query per thousand
        symbols (a check over thousands of symbols reads them together, not one by one)."""
        found: dict[str, Quote] = {}
        for chunk in chunks(wanted):
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(symbols.c.symbol, symbols.c.meta, symbols.c.price_precision).where(
                        symbols.c.symbol.in_(chunk)
                    )
                ).all()
            for row in rows:
                quote = _stored_quote(row.symbol, metadata_dict(row.meta), row.price_precision)
                if quote is not None:
                    found[row.symbol] = quote
        return found

    def last_syncs(self) -> dict[str, dt.datetime | None]:
        """Every registered symbol's newest successful sync across its providers (None: never
        synced), in one query."""
        newest = sa.func.max(data_sync_status.c.last_sync_timestamp).label("last_sync")
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(symbols.c.symbol, newest)
                .join(data_sync_status, symbols.c.id == data_sync_status.c.ticker_id)
                .group_by(symbols.c.symbol)
            ).all()
        return {row.symbol: as_utc(row.last_sync) for row in rows}

    def sync_status(self, symbol: str) -> dict[str, Any] | None:
        """The sync status row a symbol's freshness is judged on, as a dict (`sync_statuses`)."""
        return self.sync_statuses([symbol]).get(symbol)

    def sync_statuses(
        self, wanted: Iterable[str], provider: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each symbol's sync status row, as a dict with its `provider`'s name, by symbol: the
        given provider's, else the row of its newest successful sync across its providers (the
        one its freshness is judged on; never synced: the row changed last)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(wanted):
            query = (
                sa.select(
                    symbols.c.symbol, api_providers.c.name.label("provider"), data_sync_status
                )
                .select_from(data_sync_status)
                .join(symbols, symbols.c.id == data_sync_status.c.ticker_id)
                .join(api_providers, api_providers.c.id == data_sync_status.c.provider_id)
                .where(symbols.c.symbol.in_(chunk))
            )
            if provider is not None:
                query = query.where(api_providers.c.name == str(provider))
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                out = dict(row._mapping)
                symbol = out.pop("symbol")
                for key in ("last_sync_timestamp", "updated_at"):
                    out[key] = as_utc(out[key])
                if symbol not in found or _speaks_first(out, found[symbol]):
                    found[symbol] = out
        return found


def _speaks_first(row: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether `row` judges its symbol's freshness before `other`: the newer successful sync,
    else (neither synced) the one changed last."""
    never = dt.datetime.min.replace(tzinfo=dt.UTC)

    def rank(r: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime]:
        return (r["last_sync_timestamp"] or never, r["updated_at"] or never)

    return rank(row) > rank(other)


#: Symbols per `IN (...)` list: far below every driver's parameter limit.
_CHUNK = 1000


def chunks(items: Iterable[str]) -> Iterable[list[str]]:
    return _chunks_of(list(dict.fromkeys(items)))


def _chunks_of(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _ids_of(conn: sa.Connection, wanted: Iterable[str]) -> dict[str, int]:
    """The ids of the symbols `trading.symbols` has, by symbol."""
    ids: dict[str, int] = {}
    for chunk in chunks(wanted):
        query = sa.select(symbols.c.symbol, symbols.c.id).where(symbols.c.symbol.in_(chunk))
        ids.update({row.symbol: row.id for row in conn.execute(query)})
    return ids


def _statuses(conn: sa.Connection, ids: Iterable[int], provider_id: int) -> dict[int, str]:
    """The sync status with `provider_id` of each symbol id that has a row."""
    found: dict[int, str] = {}
    for chunk in _chunks_of(list(ids)):
        query = sa.select(data_sync_status.c.ticker_id, data_sync_status.c.sync_status).where(
            data_sync_status.c.ticker_id.in_(chunk), data_sync_status.c.provider_id == provider_id
        )
        found.update({row.ticker_id: row.sync_status for row in conn.execute(query)})
    return found


def _stored_quote(symbol: str, meta: dict[str, Any], precision: int | None) -> Quote | None:
    """A symbol row's `metadata.last_update` as a `Quote` (None if it has none or it is
    unreadable: the next write replaces it)."""
    last = meta.get("last_update")
    if not isinstance(last, Mapping) or not isinstance(last.get("timestamp"), str):
        return None
    try:
        data_time = parse_iso_utc(last.get("data_time") or last["timestamp"])
        fetched = last.get("fetched_at")
        return Quote(
            ticker=str(meta.get("polygon_ticker", "")),
            symbol=symbol,
            data_time=data_time,
            source=str(last.get("source", "")),
            bid=last.get("bid"),
            ask=last.get("ask"),
            last_price=last.get("last_price"),
            day_open=last.get("daily_open"),
            day_high=last.get("daily_high"),
            day_low=last.get("daily_low"),
            day_close=last.get("daily_close"),
            precision=precision,
            fetched_at=parse_iso_utc(fetched) if isinstance(fetched, str) else None,
            timeframe=Timeframe(last.get("timeframe") or Timeframe.REAL_TIME),
            plan=str(last.get("plan") or ""),
            provider=str(last.get("provider") or ""),
        )
    except (ValueError, TypeError):
        return None


def _locked_metadata(conn: sa.Connection, symbol_id: int) -> dict[str, Any] | None:
    """The symbol row's metadata, the row locked until the transaction ends: two writers of one
    symbol serialize, so the older quote never wins. None if there is no such row."""
    row = conn.execute(
        sa.select(symbols.c.meta).where(symbols.c.id == symbol_id).with_for_update()
    ).one_or_none()
    return None if row is None else metadata_dict(row.meta)


def _set_last_update(
    conn: sa.Connection,
    symbol_id: int,
    meta: dict[str, Any],
    quote: Quote,
    now: dt.datetime,
    primary: str | None = None,
) -> None:
    """The quote as the symbol's `metadata.last_update`, other metadata keys kept, and
    `serving` (`serving_since`)."""
    meta["last_update"] = quote.last_update()
    meta["serving"] = serving_since(meta.get("serving"), quote.provider, primary, now)
    conn.execute(
        sa.update(symbols).where(symbols.c.id == symbol_id).values(meta=meta, updated_at=now)
    )


def serving_since(
    held: Any, provider: str, primary: str | None, now: dt.datetime
) -> dict[str, Any]:
    """Which provider serves the symbol, since when; its primary (the one that serves it when
    all are healthy) and, when another serves it, since when a fallback has (the check of a
    critical symbol served by a fallback too long reads it)."""
    held = held if isinstance(held, Mapping) else {}
    primary = primary or provider
    same = held.get("provider") == provider
    on_fallback = provider != primary
    fallback_since = held.get("fallback_since") if held.get("fallback_since") else None
    return {
        "provider": provider,
        "since": held.get("since") if same and held.get("since") else iso_utc(now),
        "primary": primary,
        "fallback_since": (fallback_since or iso_utc(now)) if on_fallback else None,
    }


def _set_fetched_at(
    conn: sa.Connection, symbol_id: int, meta: dict[str, Any], fetched_at: dt.datetime
) -> None:
    """Only when the stored quote was last fetched: its data and the row's `updated_at` stay."""
    meta["last_update"] = {**meta["last_update"], "fetched_at": iso_utc(fetched_at)}
    conn.execute(sa.update(symbols).where(symbols.c.id == symbol_id).values(meta=meta))


def _insert_history(
    conn: sa.Connection,
    symbol_id: int,
    spec: SymbolSpec,
    quote: Quote,
    run_id: str | None,
    now: dt.datetime,
) -> None:
    """The quote's row in the history: one per data time, a correction replacing it, filed
    under the UTC day of its data time (`partition_date`)."""
    values = {
        "symbol_id": symbol_id,
        "symbol": spec.symbol,
        "partition_date": quote.data_time.astimezone(dt.UTC).date(),
        "quote_time": quote.data_time,
        "bid": quote.bid,
        "ask": quote.ask,
        "spread": quote.spread,
        "last_price": quote.last_price,
        "day_open": quote.day_open,
        "day_high": quote.day_high,
        "day_low": quote.day_low,
        "day_close": quote.day_close,
        "day_volume": quote.day_volume,
        "source": quote.source,
        "provider": quote.provider,
        "run_id": run_id,
        "fetched_at": now,
    }
    keys = {"symbol_id", "quote_time"}
    insert = dialect_insert(conn, quote_history).values(**values)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=sorted(keys),
            set_={k: v for k, v in values.items() if k not in keys},
        )
    )
