"""Every fairness case, answered alike by the Python rule, the Lua script Redis runs and the SQL
store in PostgreSQL.

Each case is a window's contents (calls by age, the last critical call, a 429 pause), a limit, a
window and a caller, with the answer expected: the seconds to wait (0: granted) and the slots
free. The stores run on a fixed clock (their `clock=`), so boundaries are exact; everything else
is the code in use: `fairness.decide` and `free_slots`, `redis_store.DECIDE_LUA` in the real
Redis, `SqlBudgetStore` in a real PostgreSQL database.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import redis
import sqlalchemy as sa

from assets_pipeline.budget.fairness import CRITICAL_CALLER, Caller, decide, free_slots
from assets_pipeline.budget.limiter import WINDOW_MARGIN_SECONDS
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.persistence.schema import api_budget_calls, api_budget_state
from assets_pipeline_tests.conftest import REDIS_URL, get_engine

#: The stores' clock in every case: epoch seconds, small enough to be exact in Lua's numbers.
NOW = 1000.0
#: Secondary traffic as the tests of the rule know it: 3 of 5 kept, critical every 240 s.
SECONDARY = Caller(critical=False, reserve=3, critical_gap=240)


@dataclass(frozen=True)
class Case:
    name: str
    caller: Caller
    ages: tuple[float, ...]  # seconds since each call of the log (expired ones included)
    wait: float  # expected: 0 to grant, else the seconds to wait
    free: int  # expected: the slots the caller could take now
    last_critical: float | None = None  # seconds since the last critical call (None: never)
    paused_for: float = 0.0  # a 429 pause still this long (the stores' step, before the rule)
    limit: int = 5
    window: float = 60.0

    def times(self) -> list[float]:
        return sorted(NOW - age for age in self.ages)

    def last_critical_at(self) -> float:
        return NOW - self.last_critical if self.last_critical is not None else 0.0


CASES = [
    # the window itself: full means wait for the oldest call that keeps it full, whoever asks
    Case("critical, room", CRITICAL_CALLER, (10, 5, 1), wait=0, free=2),
    Case("critical, full", CRITICAL_CALLER, (50, 40, 30, 20, 10), wait=10, free=0),
    Case("over the limit", CRITICAL_CALLER, (50, 45, 40, 30, 20, 10), wait=15, free=0),
    Case("full, 1 ms at least", CRITICAL_CALLER, (59.9999, 40, 30, 20, 10), wait=0.001, free=0),
    Case("secondary, full", SECONDARY, (50, 40, 30, 20, 10), wait=10, free=0, last_critical=1),
    Case("expired calls", CRITICAL_CALLER, (70, 60, 10), wait=0, free=4),
    Case("paused", CRITICAL_CALLER, (), wait=30, free=0, paused_for=30),
    # no reserve to keep: a non-critical caller uses everything
    Case("no reserve", Caller(critical=False, critical_gap=240), (10, 5, 1, 0.5), wait=0, free=1),
    # the next critical refresh's time unknown: the reserve holds in every window
    Case("unknown, room", SECONDARY, (1,), wait=0, free=1),
    Case("unknown, reserve reached", SECONDARY, (2, 1), wait=58, free=0),
    Case("gap unknown", Caller(False, 3, 0), (2, 1), wait=58, free=0, last_critical=100),
    # a critical refresh may still be making its calls (15 s, or half the gap if shorter)
    Case("burst", SECONDARY, (10, 5), wait=50, free=0, last_critical=10),
    Case("burst just over", SECONDARY, (15, 5), wait=0, free=3, last_critical=15),
    Case("half-gap burst", Caller(False, 3, 20), (50, 30), wait=10, free=0, last_critical=9),
    Case("half-gap over", Caller(False, 3, 20), (50, 30), wait=8, free=0, last_critical=12),
    # calls that expire before the next critical refresh is due use the budget freely
    Case("fresh", SECONDARY, (20, 19, 18), wait=0, free=2, last_critical=20),
    Case("expires as it is due", SECONDARY, (30, 20, 10), wait=0, free=2, last_critical=180),
    Case("due within the window", SECONDARY, (30, 20, 10), wait=0, free=2, last_critical=181),
    Case("protected, room", SECONDARY, (1, 0.5), wait=0, free=1, last_critical=181),
    Case("protected, full", SECONDARY, (0.75, 0.5), wait=59, free=0, last_critical=181),
    Case("close, full", SECONDARY, (10, 5), wait=30, free=0, last_critical=210),
    Case("overdue", SECONDARY, (50, 40), wait=10, free=0, last_critical=300),
    Case(
        "short window",
        Caller(False, 4, 6),
        (0.9, 0.5),
        wait=0,
        free=8,
        last_critical=3.5,
        limit=10,
        window=1.0,
    ),
]


def python_answer(case: Case) -> tuple[float, int]:
    """What a store asks the rule: no slot while paused, else the rule on the calls still in the
    window (both stores drop those at or before `now - window` first)."""
    if case.paused_for:
        return case.paused_for, 0
    times = [t for t in case.times() if t > NOW - case.window]
    args = (NOW, times, case.limit, case.window, case.caller, case.last_critical_at())
    return decide(*args), free_slots(*args)


def ask(store: RedisBudgetStore | SqlBudgetStore, case: Case) -> tuple[float, int]:
    """The store's answer (free slots first: looking takes nothing). The stores add the margin
    to the window they are given; the case's window is the one they end up using."""
    window = case.window - WINDOW_MARGIN_SECONDS
    free = store.free_slots(case.limit, window, case.caller)
    return store.try_acquire(case.limit, window, case.caller), free


def by_name(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.name) for case in cases]


def test_the_cases_are_many_and_named_once():
    assert len(CASES) >= 12
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", by_name(CASES))
def test_the_python_rule(case):
    wait, free = python_answer(case)
    assert (wait, free) == (pytest.approx(case.wait, abs=1e-6), case.free)


@pytest.mark.parametrize("case", by_name(CASES))
def test_the_lua_script_in_redis(case, redis_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    store = RedisBudgetStore(client, "polygon", redis_namespace, clock=f"local now = {NOW!r}\n")
    calls, paused, stats = store._keys
    if case.ages:
        client.zadd(calls, {f"call-{i}": t for i, t in enumerate(case.times())})
    if case.last_critical is not None:
        client.hset(stats, "last_critical", repr(case.last_critical_at()))
    if case.paused_for:
        client.set(paused, repr(NOW + case.paused_for))
    try:
        wait, free = ask(store, case)
        assert (wait, free) == (pytest.approx(case.wait, abs=1e-6), case.free)
        assert (wait, free) == pytest.approx(python_answer(case), abs=1e-6)
        granted = [t for _, t in client.zrange(calls, 0, -1, withscores=True) if t == NOW]
        assert len(granted) == (wait == 0)  # a grant is logged at the store's now
        last = float(client.hget(stats, "last_critical") or 0)
        assert last == (NOW if wait == 0 and case.caller.critical else case.last_critical_at())
    finally:
        client.close()


@pytest.mark.parametrize("case", by_name(CASES))
def test_the_sql_store_in_postgresql(case, pg_url):
    engine = get_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(api_budget_state).values(
                name="polygon",
                last_critical_at=case.last_critical_at(),
                paused_until=NOW + case.paused_for if case.paused_for else 0.0,
            )
        )
        for t in case.times():
            conn.execute(sa.insert(api_budget_calls).values(name="polygon", at=t))
    store = SqlBudgetStore(engine, "polygon", clock=lambda conn: NOW)
    wait, free = ask(store, case)
    assert (wait, free) == (pytest.approx(case.wait, abs=1e-6), case.free)
    assert (wait, free) == pytest.approx(python_answer(case), abs=1e-6)
    with engine.connect() as conn:
        logged = list(conn.execute(sa.select(api_budget_calls.c.at)).scalars())
        last = conn.execute(sa.select(api_budget_state.c.last_critical_at)).scalar_one()
    assert logged.count(NOW) == (wait == 0)  # a grant is logged at the store's now
    assert last == (NOW if wait == 0 and case.caller.critical else case.last_critical_at())
