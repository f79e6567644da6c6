"""Every quote, sync status, history row and event says which provider served it; a symbol's
freshness is judged on its newest successful sync across its providers (docs/architecture.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import api_providers, event_outbox, quote_history
from assets_pipeline.rules import clock
from assets_pipeline_tests.conftest import T0, get_engine, quote

SOURCES = {"kraken": "kraken:v0-public-ticker", "oanda": "oanda:v3-pricing"}
PLANS = {"kraken": "public", "oanda": "practice"}


@pytest.fixture
def store(database_url) -> QuoteStore:
    return QuoteStore(get_engine(database_url), namespace="ns:")


def served_by(name: str, at: dt.datetime = T0, bid: float = 1.08):
    made = quote(at=at, bid=bid, ask=bid + 0.0002, plan=PLANS[name])
    return dataclasses.replace(made, source=SOURCES[name], provider=name)


@pytest.mark.parametrize("name", ["kraken", "oanda"])
def test_a_quote_lands_with_its_provider_in_every_row_and_the_event(store, registry, name):
    assert store.write_quote(registry.get("EURUSD"), served_by(name)).written
    assert store.sync_status("EURUSD")["provider"] == name
    assert store.sync_status("EURUSD")["sync_status"] == "success"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(quote_history.c.provider)).scalars().all() == [name]
        payload = json.loads(conn.execute(sa.select(event_outbox.c.payload)).scalar_one())
        row = conn.execute(sa.select(api_providers).where(api_providers.c.name == name)).one()
    assert (payload["data"]["provider"], payload["data"]["plan"]) == (name, "free")
    assert row.base_url.startswith("https://api")
    assert store.latest_quote("EURUSD").provider == name


def test_two_providers_sync_rows_coexist_and_the_newest_sync_speaks(store, registry, frozen_clock):
    eur = registry.get("EURUSD")
    frozen_clock.move_to(T0 + dt.timedelta(seconds=5))
    store.write_quote(eur, quote(at=T0))  # Polygon's
    frozen_clock.move_to(T0 + dt.timedelta(seconds=65))
    store.write_quote(eur, served_by("oanda", at=T0 + dt.timedelta(seconds=60)))
    store.record_failure(eur, "503 from Polygon")  # Polygon's row fails; OANDA's stands
    polygon = store.sync_statuses(["EURUSD"], provider="polygon")["EURUSD"]
    assert (polygon["sync_status"], polygon["error_message"]) == ("failed", "503 from Polygon")
    judged = store.sync_status("EURUSD")
    assert (judged["provider"], judged["sync_status"]) == ("oanda", "success")
    assert store.last_syncs()["EURUSD"] == T0 + dt.timedelta(seconds=65)


def test_a_symbol_is_marked_stale_only_if_no_provider_synced_it_since(
    store, registry, frozen_clock
):
    eur = registry.get("EURUSD")
    frozen_clock.move_to(T0 + dt.timedelta(seconds=5))
    store.write_quote(eur, quote(at=T0))
    seen = store.last_syncs()["EURUSD"]
    frozen_clock.move_to(T0 + dt.timedelta(seconds=65))
    store.write_quote(eur, served_by("kraken", at=T0 + dt.timedelta(seconds=60)))
    assert store.mark_stale({eur: seen}) == 0  # Kraken synced it after the check read
    assert store.mark_stale({eur: store.last_syncs()["EURUSD"]}) == 1  # one symbol, both rows
    rows = store.sync_statuses(["EURUSD"], provider="kraken"), store.sync_statuses(["EURUSD"])
    assert [r["EURUSD"]["sync_status"] for r in rows] == ["stale", "stale"]
    assert clock.utcnow() == T0 + dt.timedelta(seconds=65)
