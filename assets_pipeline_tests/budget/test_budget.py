"""The shared Polygon budget: never over the limit in any window, across processes, failing closed.

The budget counts on its store's own clock (Redis, the database), which no test can freeze, so
these tests wait in real time. They assert what the budget decided (the sleeps it asked for, the
waits it counted) and that no call came before the window allowed it, never that something was
fast enough: a busy machine only makes them wait longer.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from assets_pipeline.budget.fairness import Caller
from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.budget.limiter import WINDOW_MARGIN_SECONDS, PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline_tests.conftest import REDIS_URL, get_engine, max_in_any_window


def make_store(kind: str, target: str):
    """`target` is a database URL for `sql`, a Redis namespace for `redis`."""
    if kind == "redis":
        return RedisBudgetStore(redis.Redis.from_url(REDIS_URL), "polygon", target)
    return SqlBudgetStore(get_engine(target), "polygon")


@pytest.fixture(params=["redis", "sqlite", "postgresql"])
def store_spec(request):
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_namespace")
    if request.param == "sqlite":
        return "sql", request.getfixturevalue("sqlite_url")
    return "sql", request.getfixturevalue("pg_url")


class Sleeps(list):
    """A budget's `sleep` that sleeps for real (the store's clock is real) and records each one."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)


def test_grants_the_limit_then_makes_callers_wait_for_the_window(store_spec):
    sleeps = Sleeps()
    budget = PolygonBudget(make_store(*store_spec), limit=3, window_seconds=1.0, sleep=sleeps)
    started = time.monotonic()
    for _ in range(3):
        budget.acquire(max_wait_seconds=5)
    assert sleeps == []  # the limit is granted at once
    stats = budget.stats()
    assert (stats.remaining, stats.total_calls, stats.total_waits) == (0, 3, 0)
    assert stats.reset_at is not None
    budget.acquire(max_wait_seconds=5)
    # the fourth waited for the first call to leave the window, and no longer than that
    assert sleeps and 0 < sleeps[0] <= 1.0 + WINDOW_MARGIN_SECONDS
    assert time.monotonic() - started >= 1.0  # never granted inside the window
    stats = budget.stats()
    assert (stats.total_calls, stats.total_waits) == (4, 1)


def test_fails_with_a_clear_error_when_no_slot_comes_before_the_deadline(store_spec):
    sleeps = Sleeps()
    budget = PolygonBudget(make_store(*store_spec), limit=1, window_seconds=30.0, sleep=sleeps)
    budget.acquire(max_wait_seconds=1)
    with pytest.raises(
        BudgetError, match=r"no Polygon call slot within 2s: the budget of 1 calls per 30s"
    ):
        budget.acquire(max_wait_seconds=2)
    assert sleeps == []  # it does not sleep in vain


def test_another_providers_budget_names_that_provider_when_it_has_no_slot(pg_url):
    """Kraken's throttling is Kraken's: its sync status must not blame Polygon's budget."""
    budget = PolygonBudget(
        SqlBudgetStore(get_engine(pg_url), "kraken"),
        limit=1,
        window_seconds=30.0,
        provider="Kraken",
    )
    budget.acquire(max_wait_seconds=1)
    with pytest.raises(BudgetError, match=r"^no Kraken call slot within 0.5s"):
        budget.acquire(max_wait_seconds=0.5)


def test_a_429_pauses_every_caller_for_a_window(store_spec):
    first = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=1.5)
    other = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=1.5)
    first.acquire(max_wait_seconds=1)
    started = time.monotonic()
    first.penalize()
    assert other.stats().paused_until is not None and other.stats().remaining == 0
    other.acquire(max_wait_seconds=5)
    assert other.waits == 1
    assert time.monotonic() - started >= 1.5  # no slot for anyone until a window has passed


def test_fails_closed_when_redis_is_unreachable():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    budget = PolygonBudget(RedisBudgetStore(dead, "polygon", "x:"), limit=5, window_seconds=60)
    with pytest.raises(
        BudgetError, match=r"budget store \(redis\) is unreachable, so no call is made"
    ):
        budget.acquire(max_wait_seconds=1)


def test_fails_closed_when_the_database_is_unreachable(tmp_path):
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    budget = PolygonBudget(SqlBudgetStore(engine), limit=5, window_seconds=60)
    with pytest.raises(
        BudgetError, match=r"budget store \(database \(postgresql\)\) is unreachable"
    ):
        budget.acquire(max_wait_seconds=1)


# --- many processes ----------------------------------------------------------------------------

LIMIT, WINDOW = 4, 2.0


def _hammer(kind: str, target: str, base_url: str, calls: int) -> None:
    from assets_pipeline.config.registry import AssetType
    from assets_pipeline.polygon.client import PolygonClient

    budget = PolygonBudget(make_store(kind, target), LIMIT, WINDOW)
    client = PolygonClient(base_url, "hammer-key", budget, max_retries=0)
    for _ in range(calls):
        client.snapshot("C:EURUSD", AssetType.FOREX)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [4])
def test_many_processes_never_exceed_the_limit_in_any_window(store_spec, processes):
    from assets_pipeline.simulator import PolygonSimulator

    calls_each = 3
    # The simulator enforces the same budget and answers 429 when it is exceeded.
    with PolygonSimulator(
        host="127.0.0.1", port=0, rate_limit_calls=LIMIT, rate_limit_window=WINDOW
    ) as sim:
        ctx = multiprocessing.get_context("spawn")
        workers = [
            ctx.Process(target=_hammer, args=(*store_spec, sim.url, calls_each))
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        log = [r for r in sim.requests if r.path.startswith("/v2/")]
    assert all(w.exitcode == 0 for w in workers)
    assert len(log) == processes * calls_each
    assert [r.status for r in log if r.status != 200] == []  # zero 429s
    assert max_in_any_window([r.at for r in log], WINDOW) <= LIMIT


def test_non_critical_callers_leave_the_critical_reserve_free(store_spec):
    # per_ticker: the critical tier needs 3 of the 5 calls in a window
    # no critical refresh seen yet: its time is unknown, so the reserve always applies
    caller = Caller(critical=False, reserve=3, critical_gap=240)
    secondary = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=30, caller=caller)
    critical = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=30)
    secondary.acquire(max_wait_seconds=1)
    secondary.acquire(max_wait_seconds=1)
    with pytest.raises(BudgetError, match="3 kept for critical"):
        secondary.acquire(max_wait_seconds=1)
    for _ in range(3):
        critical.acquire(max_wait_seconds=1)  # never waits on secondary traffic
    assert critical.waits == 0


def test_after_a_critical_refresh_secondaries_use_what_expires_before_the_next(store_spec):
    # critical every 6 s, a 0.5 s window (1 s with its margin): after the critical burst (half
    # the gap, 3 s), calls made in the next 2 s expire before the next critical refresh is due
    caller = Caller(critical=False, reserve=3, critical_gap=6.0)
    critical = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=0.5)
    secondary = PolygonBudget(make_store(*store_spec), limit=5, window_seconds=0.5, caller=caller)
    critical.acquire(max_wait_seconds=1)
    # right after it, the critical refresh may still be making calls: the reserve holds
    assert secondary.free_slots() == 1
    time.sleep(3.1)  # past the burst and past the window
    assert secondary.free_slots() == 5
    for _ in range(5):
        secondary.acquire(max_wait_seconds=0.5)  # all expire before the next critical is due
    assert secondary.free_slots() == 0


def test_every_key_a_budget_script_touches_is_in_one_redis_cluster_slot(redis_client):
    # Redis Cluster runs a Lua script only on keys of one hash slot: one hash tag for all of them
    from redis.crc import key_slot

    from assets_pipeline.budget.redis_store import RedisBudgetStore

    store = RedisBudgetStore(redis_client, "polygon", namespace="prod:")
    assert len({key_slot(key.encode()) for key in store._keys}) == 1
    assert store._keys[0] == "prod:budget:{polygon}:calls"


def test_every_key_the_announce_script_touches_is_in_one_redis_cluster_slot(
    redis_client, redis_namespace
):
    from redis.crc import key_slot

    from assets_pipeline.persistence.outbox import announce

    seen = []

    class Recorder:
        connection_pool = redis_client.connection_pool

        def register_script(self, lua):
            def run(keys, args):
                seen.extend(keys)
                return 1

            return run

    announce(Recorder(), f"{redis_namespace}asset:update:EURUSD", {"event_id": "e"})
    assert len(seen) == 3 and len({key_slot(key.encode()) for key in seen}) == 1
