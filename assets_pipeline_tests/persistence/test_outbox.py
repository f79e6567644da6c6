"""The outbox relay, with the real Redis, on both the embedded SQLite and the real PostgreSQL.

What subscribers rely on: events arrive oldest first and once, an event that cannot be published
on its own does not hold back the ones behind it, and a Redis outage or a relay stopped mid-way
re-sends nothing that already went out.
"""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from assets_pipeline.persistence.outbox import MAX_FAILURES, pending_count, relay_pending
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.schema import event_outbox
from assets_pipeline_tests.conftest import REDIS_URL, T0, get_engine, quote


@pytest.fixture
def store(database_url, redis_namespace) -> QuoteStore:
    return QuoteStore(get_engine(database_url), namespace=redis_namespace)


@pytest.fixture
def listener(redis_namespace):
    """A subscriber to every update channel of the test's namespace."""
    pubsub = redis.Redis.from_url(REDIS_URL).pubsub()
    pubsub.psubscribe(f"{redis_namespace}asset:update:*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    yield pubsub
    pubsub.close()


def received(listener, timeout=0.5) -> list[str]:
    """The raw payloads that arrived, in order, until none comes for `timeout` seconds."""
    out = []
    while (message := listener.get_message(timeout=timeout)) is not None:
        if message["type"] == "pmessage":
            out.append(message["data"].decode())
    return out


def write_events(store, registry, count, start=0) -> list[str]:
    """`count` stored quotes, hence `count` events in the outbox; their event ids, oldest first.
    Quote times are `start`, `start` + 1 ... seconds after T0 (an older quote is not stored)."""
    spec = registry.get("EURUSD")
    return [
        store.write_quote(spec, quote(at=T0 + dt.timedelta(seconds=start + n))).event_id
        for n in range(count)
    ]


def event_ids(payloads) -> list[str]:
    """Each payload's event id (a payload that is not an event stands for itself)."""
    out = []
    for payload in payloads:
        try:
            out.append(json.loads(payload)["event_id"])
        except (ValueError, KeyError, TypeError):
            out.append(payload)
    return out


def outbox_row(store, event_id):
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(event_outbox).where(event_outbox.c.event_id == event_id)
        ).one()


class FlakyRedis:
    """The real client, except that one announcement raises what a test wants (`fail(n,
    payload)` says whether the n-th, counting from 1, raises)."""

    def __init__(self, client, error, fail):
        self.client, self.error, self.fail, self.calls = client, error, fail, 0
        self.connection_pool = client.connection_pool

    def register_script(self, lua):
        script = self.client.register_script(lua)

        def run(keys, args):
            self.calls += 1
            if self.fail(self.calls, args[3]):
                raise self.error
            return script(keys=keys, args=args)

        return run


def poison(store, event_id, payload):
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(event_outbox)
            .where(event_outbox.c.event_id == event_id)
            .values(payload=payload)
        )


@pytest.mark.parametrize(
    "kind",
    [
        # the poisoned row is not an event at all: the contract check leaves it to this test
        pytest.param("undecodable payload", marks=pytest.mark.allow_invalid_events),
        "publish refused for that row",
    ],
)
def test_a_poisoned_row_in_the_middle_does_not_stop_the_rows_behind_it(
    store, registry, redis_client, listener, kind
):
    first, bad, third, fourth = write_events(store, registry, 4)
    if kind == "undecodable payload":
        poison(store, bad, '{"type": "price_update", "symbol": ')  # cut short
        client = redis_client
    else:
        refused = redis.ResponseError("WRONGTYPE the server refuses this one")
        client = FlakyRedis(redis_client, refused, lambda _n, payload: bad in payload)

    result = relay_pending(store.engine, client)

    assert event_ids(received(listener)) == [first, third, fourth]
    assert (result.sent, result.failed, result.pending, result.parked) == (3, 1, 1, 0)
    assert result.error is None  # Redis is fine: nothing to stop for
    row = outbox_row(store, bad)
    assert row.sent_at is None and row.attempts == 1
    assert row.last_error.startswith(f"failed 1 of {MAX_FAILURES}: ")
    assert (row.failures, row.parked_at) == (1, None)  # the state is in columns
    assert ("JSONDecodeError" if kind == "undecodable payload" else "WRONGTYPE") in row.last_error


@pytest.mark.allow_invalid_events  # its row is poisoned on purpose
def test_a_row_that_keeps_failing_is_parked_and_skipped_and_reported(
    store, registry, redis_client, listener
):
    (bad,) = write_events(store, registry, 1)
    poison(store, bad, "not json")
    for n in range(1, MAX_FAILURES + 1):
        result = relay_pending(store.engine, redis_client)
        assert result.failed == 1 and result.parked == (1 if n == MAX_FAILURES else 0)
    row = outbox_row(store, bad)
    assert row.attempts == MAX_FAILURES and row.sent_at is None
    assert row.last_error.startswith(f"parked after {MAX_FAILURES} failures: ")
    assert row.failures == MAX_FAILURES and row.parked_at is not None

    # later relays leave it alone, and say so; events behind it flow
    (good,) = write_events(store, registry, 1, start=60)
    later = relay_pending(store.engine, redis_client)
    assert (later.sent, later.failed, later.pending, later.parked) == (1, 0, 0, 1)
    assert outbox_row(store, bad).attempts == MAX_FAILURES
    assert event_ids(received(listener)) == [good]
    assert pending_count(store.engine) == 0


def test_after_a_redis_outage_mid_way_what_went_out_is_marked_sent_and_not_sent_again(
    store, registry, redis_client, listener
):
    ids = write_events(store, registry, 5)
    outage = FlakyRedis(
        redis_client, redis.ConnectionError("Connection refused"), lambda n, _: n == 3
    )

    stopped = relay_pending(store.engine, outage)

    assert (stopped.sent, stopped.failed, stopped.pending) == (2, 0, 3)
    assert stopped.error and "ConnectionError" in stopped.error
    assert outage.calls == 3  # it stopped at the outage instead of trying the rest
    head = outbox_row(store, ids[2])
    assert head.sent_at is None and head.attempts == 1 and "Connection refused" in head.last_error
    assert outbox_row(store, ids[3]).attempts == 0
    assert event_ids(received(listener)) == ids[:2]

    # an outage is not the row's fault: however long it lasts, the event is never parked
    down = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))  # nothing there
    for _ in range(MAX_FAILURES + 1):
        assert relay_pending(store.engine, down).error
    assert outbox_row(store, ids[2]).attempts == MAX_FAILURES + 2

    resumed = relay_pending(store.engine, redis_client)
    assert (resumed.sent, resumed.pending, resumed.parked, resumed.error) == (3, 0, 0, None)
    assert event_ids(received(listener)) == ids[2:]  # the rest, once, in order


def test_a_relay_stopped_mid_way_re_sends_only_the_event_it_was_publishing(
    store, registry, redis_client, listener
):
    ids = write_events(store, registry, 5)
    # the relay's process is stopped while it publishes the fourth event
    stopping = FlakyRedis(redis_client, KeyboardInterrupt(), lambda n, _: n == 4)
    with pytest.raises(KeyboardInterrupt):
        relay_pending(store.engine, stopping)
    assert event_ids(received(listener)) == ids[:3]

    again = relay_pending(store.engine, redis_client)
    assert (again.sent, again.pending) == (2, 0)
    assert event_ids(received(listener)) == ids[3:]


def test_two_relays_at_once_send_each_event_once_oldest_first(store, registry, listener):
    ids = write_events(store, registry, 30)
    results = []
    start = threading.Barrier(2)

    def relay():
        client = redis.Redis.from_url(REDIS_URL)
        start.wait(timeout=10)
        results.append(relay_pending(store.engine, client))
        client.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r.sent for r in results) == 30 and all(r.error is None for r in results)
    assert event_ids(received(listener, timeout=1)) == ids  # once each, oldest first


# --- the stream: events a consumer can catch up on ------------------------------------------


def test_a_consumer_that_was_down_reads_every_event_from_the_stream_in_sequence(
    store, registry, redis_client, redis_namespace
):
    # Nobody listens on Pub/Sub while three quotes are stored and announced...
    ids = write_events(store, registry, 3)
    assert relay_pending(store.engine, redis_client).sent == 3
    # ...and a consumer that comes up afterwards finds all three in the stream, in order, with
    # the symbol's sequence numbers 1, 2, 3 and the schema version.
    entries = redis_client.xrange(f"{redis_namespace}asset:{{updates}}")
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    assert [e["event_id"] for e in events] == ids
    assert [e["sequence"] for e in events] == [1, 2, 3]
    assert {e["schema_version"] for e in events} == {3} and {e["symbol"] for e in events} == {
        "EURUSD"
    }
    # resuming after the first one it had seen gives the rest, and no gap
    first_id = entries[0][0]
    rest = redis_client.xread({f"{redis_namespace}asset:{{updates}}": first_id})[0][1]
    assert [int(fields[b"sequence"]) for _, fields in rest] == [2, 3]


def test_an_event_announced_twice_reaches_consumers_once(store, registry, redis_client):
    from assets_pipeline.persistence.outbox import announce

    (event_id,) = write_events(store, registry, 1)
    row = outbox_row(store, event_id)
    event = json.loads(row.payload)
    assert announce(redis_client, row.channel, event) == 1
    assert announce(redis_client, row.channel, event) == 0  # the relay's re-send after a stop
    namespace = row.channel.rsplit("asset:update:", 1)[0]
    assert redis_client.xlen(f"{namespace}asset:{{updates}}") == 1


def test_after_an_outage_writers_leave_publishing_to_the_relay_for_a_while(
    store, registry, redis_client, frozen_clock
):
    # A hung or dead Redis costs the first write its timeout; the writes after it do not wait
    # on Redis again until the breaker closes, and the relay delivers what they stored. The
    # breaker is the client's (the Redis resource's, for its run): another client's is closed.
    from assets_pipeline.persistence import redis_client as clients
    from assets_pipeline.persistence.outbox import BREAKER_SECONDS, publishing_paused

    down = clients.connect("redis://127.0.0.1:1/0")
    write_events(store, registry, 1)
    assert not publishing_paused(down)
    assert relay_pending(store.engine, down).error is not None
    assert publishing_paused(down) and not publishing_paused(clients.connect(REDIS_URL))
    assert not publishing_paused(redis_client)  # a client without a breaker never pauses
    frozen_clock.advance(BREAKER_SECONDS + 1)
    assert not publishing_paused(down)
