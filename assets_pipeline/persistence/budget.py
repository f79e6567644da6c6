"""The Polygon call budget, shared by every process and run of a deployment.

At most `limit` HTTP requests in any `window` seconds: a sliding-window log of call times kept in
Redis (when `REDIS_URL` is set) or in the trading database. Each Dagster run is its own process, so
the state must live in a store they all share; the store's own clock is the only clock, so skew
between machines cannot let two processes both believe a slot is free.

Why not a library: pyrate-limiter and limits both count on the client's clock (limits passes the
caller's timestamp into its Redis script; pyrate-limiter's Redis bucket does the same) and neither
can pause every caller after a 429, which Polygon needs because it sends no Retry-After. The
atomic step is small enough to own: one Lua script in Redis, one locked transaction in SQL.

Failing closed: if the store cannot be reached, no slot is granted and no request is sent.

Fairness between the critical tier and everything else is `rules/fairness.py`'s rule; the
Lua script below is that rule, line for line, inside Redis.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from assets_pipeline.persistence.database import db_epoch_seconds, dialect_insert, insert_ignore
from assets_pipeline.persistence.schema import api_budget_calls, api_budget_state, api_refusals
from assets_pipeline.rules.fairness import (
    CRITICAL_BURST_SECONDS,
    CRITICAL_CALLER,
    Caller,
    decide,
    free_slots,
)
from assets_pipeline.rules.quotes import iso_utc

#: Slack added to the window: a slot frees this long after the window has strictly passed. A slot
#: is taken just before its request is sent, and a request can be delayed on its way (connection
#: set-up, a busy CPU) while the next one is not; the server then sees the two closer together
#: than we did. Half a second covers such delays for under 1% of a 60 s window's throughput.
WINDOW_MARGIN_SECONDS = 0.5


#: How long a store keeps a refusal at all; readers decide how old is too old to trust.
REFUSAL_MEMORY_SECONDS = 7 * 24 * 3600


class BudgetError(RuntimeError):
    """No slot could be had: the deadline passed, or the store is unreachable (fail closed)."""

    retryable = True


class BudgetCongested(BudgetError):
    """Every slot was taken until past the caller's deadline: busy, not broken. The symbol that
    asked did nothing wrong, so it is not blamed for it (see `refresh.py`)."""


@dataclass(frozen=True)
class BudgetStats:
    """What the status command and run metadata report."""

    limit: int
    window_seconds: float
    remaining: int
    reset_at: dt.datetime | None
    paused_until: dt.datetime | None
    total_calls: int
    total_waits: int
    backend: str

    def as_dict(self) -> dict[str, object]:
        """What `status` and `budget` print (times as ISO-8601 UTC)."""

        def iso(moment: dt.datetime | None) -> str | None:
            return iso_utc(moment) if moment else None

        return {
            "backend": self.backend,
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "remaining": self.remaining,
            "reset_at": iso(self.reset_at),
            "paused_until": iso(self.paused_until),
            "total_calls": self.total_calls,
            "total_waits": self.total_waits,
        }


@dataclass(frozen=True)
class Refusal:
    """Polygon refused a kind of request for this key (a 403: the plan does not include it)."""

    feature: str
    refused_at: dt.datetime
    message: str


class BudgetStore(Protocol):
    """The atomic primitives; times are epoch seconds on the store's clock."""

    backend: str

    def try_acquire(self, limit: int, window: float, caller: Caller) -> float:
        """Take a slot and return 0, or take nothing and return the seconds to wait (`decide`)."""
        ...

    def free_slots(self, limit: int, window: float, caller: Caller) -> int: ...

    def pause(self, seconds: float) -> None:
        """Grant no slot to anyone for `seconds` (after a 429)."""
        ...

    def record_wait(self) -> None: ...

    def stats(self, limit: int, window: float) -> BudgetStats: ...

    def refuse(self, feature: str, message: str) -> None:
        """Remember, for every process, that the plan refused `feature` (now, store clock)."""
        ...

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        """The remembered refusal of `feature`, unless it is older than `max_age` seconds."""
        ...


class PolygonBudget:
    """Waits for a slot up to a deadline, then fails with a clear error."""

    def __init__(
        self,
        store: BudgetStore,
        limit: int,
        window_seconds: float,
        *,
        caller: Caller = CRITICAL_CALLER,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"the budget needs at least 1 call per window, got {limit}")
        if window_seconds <= 0:
            raise ValueError(f"the budget window must be positive, got {window_seconds}")
        if caller.reserve >= limit:
            raise ValueError(
                f"reserving {caller.reserve} of {limit} calls per window for the critical tier"
                " leaves nothing for other callers"
            )
        self.store = store
        self.limit = limit
        self.window_seconds = window_seconds
        self.caller = caller
        self._sleep = sleep
        self._monotonic = monotonic
        #: What this process has done; the store keeps the deployment-wide totals.
        self.calls = 0
        self.waits = 0
        self.waited_seconds = 0.0

    def acquire(
        self, max_wait_seconds: float, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Take one slot for one HTTP request; return how long we waited for it.

        `on_wait` hears, once per acquire, how long the first wait will be (for a log line).
        """
        started = self._monotonic()
        deadline = started + max_wait_seconds
        counted_wait = False
        while True:
            wait = self._try(self.store.try_acquire, self.limit, self.window_seconds, self.caller)
            if wait <= 0:
                self.calls += 1
                waited = self._monotonic() - started
                self.waited_seconds += waited
                return waited
            remaining = deadline - self._monotonic()
            if wait > remaining:
                # The next slot frees after our deadline: fail now rather than sleep in vain.
                reserve = self.caller.reserve
                reserved = f", {reserve} kept for critical" if reserve else ""
                raise BudgetCongested(
                    f"no Polygon call slot within {max_wait_seconds:g}s: the budget of"
                    f" {self.limit} calls per {self.window_seconds:g}s is in use{reserved}"
                    f" (next slot in {wait:.1f}s)"
                )
            if not counted_wait:
                counted_wait = True
                self.waits += 1
                self._try(self.store.record_wait)
                if on_wait is not None:
                    on_wait(wait)
            self._sleep(min(wait, max(remaining, 0.01)))

    def penalize(self) -> None:
        """Polygon said 429: everybody waits a full window."""
        self._try(self.store.pause, self.window_seconds + WINDOW_MARGIN_SECONDS)

    def stats(self) -> BudgetStats:
        return self._try(self.store.stats, self.limit, self.window_seconds)

    def free_slots(self) -> int:
        """Slots this caller could take now, without taking any."""
        return self._try(self.store.free_slots, self.limit, self.window_seconds, self.caller)

    def refuse(self, feature: str, message: str) -> None:
        """Remember that the plan refused `feature`, for every process sharing this budget."""
        self._try(self.store.refuse, feature, message[:500])

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        """What the plan refused and when, if it was learnt within `max_age` seconds."""
        return self._try(self.store.refusal, feature, max_age)

    def _try(self, call: Callable[..., object], *args: object) -> object:  # type: ignore[return]
        try:
            return call(*args)
        except BudgetError:
            raise
        except Exception as exc:
            raise BudgetError(
                f"the Polygon budget store ({self.store.backend}) is unreachable, so no call is"
                f" made: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _as_datetime(epoch: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


# --- Redis -----------------------------------------------------------------------------------

# `decide` and `free_slots`, in Lua (1-based lists); a peek, like the stats, writes nothing.
# ARGV: limit, window, nonce, critical (0/1),
# reserve, critical_gap, mode ("take" or "peek"), CRITICAL_BURST_SECONDS.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local critical = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local gap = tonumber(ARGV[6])
local peek = ARGV[7] == 'peek'
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  if peek then return '0' end
  return tostring(paused - now)
end
if not peek then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window) end
local raw = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), '+inf', 'WITHSCORES')
local times = {}
for i = 2, #raw, 2 do times[#times + 1] = tonumber(raw[i]) end
local used = #times
local allowed = limit - used
local wait = 0
if used >= limit then
  wait = math.max(times[used - limit + 1] + window - now, 0.001)
elseif critical == 0 and reserve > 0 then
  local last = tonumber(redis.call('HGET', KEYS[3], 'last_critical') or '0')
  local burst = tonumber(ARGV[8])
  local due = now
  if last > 0 and gap > 0 and now - last >= math.min(burst, gap / 2) then
    due = math.max(now, last + gap)
  end
  if now + window > due then
    local protected = {}
    for _, v in ipairs(times) do
      if v > due - window then protected[#protected + 1] = v end
    end
    local usable = limit - reserve
    allowed = math.min(allowed, usable - #protected)
    if #protected >= usable then
      if due > now then
        wait = due - now
      else
        wait = math.max(protected[#protected - usable + 1] + window - now, 0.001)
      end
    end
  end
end
if peek then return tostring(math.max(allowed, 0)) end
if wait > 0 then return tostring(wait) end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
redis.call('HINCRBY', KEYS[3], 'total_calls', 1)
if critical == 1 then redis.call('HSET', KEYS[3], 'last_critical', tostring(now)) end
return '0'
"""

_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], tostring(untl), 'EX', math.ceil(tonumber(ARGV[1])) + 1)
end
return tostring(untl)
"""

_STATS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local since = '(' .. (now - window)
local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local oldest_at = '0'
if #oldest > 0 then oldest_at = oldest[2] end
return {tostring(now), tostring(redis.call('ZCOUNT', KEYS[1], since, '+inf')), oldest_at,
        redis.call('GET', KEYS[2]) or '0',
        redis.call('HGET', KEYS[3], 'total_calls') or '0',
        redis.call('HGET', KEYS[3], 'total_waits') or '0'}
"""


class RedisBudgetStore:
    """Sliding-window log in a sorted set; each step one Lua script on Redis's own clock."""

    backend = "redis"

    def __init__(self, client: object, name: str = "polygon", namespace: str = "") -> None:
        import redis

        assert isinstance(client, redis.Redis)
        self._client = client
        # one hash tag ({name}) for every key a script touches: Redis Cluster runs a script
        # only on keys of one slot
        base = f"{namespace}budget:{{{name}}}"
        self._keys = [f"{base}:calls", f"{base}:paused_until", f"{base}:stats"]
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._pause = client.register_script(_PAUSE_LUA)
        self._stats = client.register_script(_STATS_LUA)

    def _run(self, limit: int, window: float, caller: Caller, mode: str) -> float:
        args = [
            limit,
            window + WINDOW_MARGIN_SECONDS,
            uuid.uuid4().hex,
            int(caller.critical),
            caller.reserve,
            caller.critical_gap,
            mode,
            CRITICAL_BURST_SECONDS,
        ]
        return float(self._acquire(keys=self._keys, args=args))

    def try_acquire(self, limit: int, window: float, caller: Caller) -> float:
        return self._run(limit, window, caller, "take")

    def free_slots(self, limit: int, window: float, caller: Caller) -> int:
        return int(self._run(limit, window, caller, "peek"))

    def pause(self, seconds: float) -> None:
        self._pause(keys=[self._keys[1]], args=[seconds])

    def record_wait(self) -> None:
        self._client.hincrby(self._keys[2], "total_waits", 1)

    def stats(self, limit: int, window: float) -> BudgetStats:
        now, used, oldest, paused, calls, waits = (
            float(v) for v in self._stats(keys=self._keys, args=[window + WINDOW_MARGIN_SECONDS])
        )
        return _stats(limit, window, now, int(used), oldest, paused, calls, waits, self.backend)

    def _refusal_key(self, feature: str) -> str:
        return f"{self._keys[2].rsplit(':', 1)[0]}:refused:{feature}"

    def refuse(self, feature: str, message: str) -> None:
        seconds, micros = self._client.time()
        key = self._refusal_key(feature)
        self._client.hset(key, mapping={"at": f"{seconds}.{micros:06d}", "message": message})
        self._client.expire(key, REFUSAL_MEMORY_SECONDS)

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        raw = self._client.hgetall(self._refusal_key(feature))
        if not raw:
            return None
        seconds, micros = self._client.time()
        at = float(raw[b"at"])
        if seconds + micros / 1e6 - at > max_age:
            return None
        return Refusal(feature, _as_datetime(at), raw.get(b"message", b"").decode())  # type: ignore[arg-type]


def _stats(
    limit: int,
    window: float,
    now: float,
    used: int,
    oldest: float,
    paused: float,
    calls: float,
    waits: float,
    backend: str,
) -> BudgetStats:
    paused_until = paused if paused > now else None
    reset = oldest + window + WINDOW_MARGIN_SECONDS if used else None
    return BudgetStats(
        limit=limit,
        window_seconds=window,
        remaining=0 if paused_until else max(limit - used, 0),
        reset_at=_as_datetime(max(filter(None, [reset, paused_until]), default=None)),
        paused_until=_as_datetime(paused_until),
        total_calls=int(calls),
        total_waits=int(waits),
        backend=backend,
    )


# --- SQL (the embedded default, or PostgreSQL without Redis) --------------------------------


class SqlBudgetStore:
    """The same log in two tables; the state row is locked for the length of each step."""

    backend = "database"

    def __init__(self, engine: sa.Engine, name: str = "polygon") -> None:
        self._engine = engine
        self._name = name
        self.backend = f"database ({engine.dialect.name})"

    def _locked(self, conn: sa.Connection) -> sa.Row:
        conn.execute(insert_ignore(conn, api_budget_state, {"name": self._name}))
        query = sa.select(api_budget_state).where(api_budget_state.c.name == self._name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).one()

    def _window(self, conn: sa.Connection, now: float, window: float) -> list[float]:
        calls = api_budget_calls.c
        conn.execute(
            sa.delete(api_budget_calls).where(calls.name == self._name, calls.at <= now - window)
        )
        query = sa.select(calls.at).where(calls.name == self._name).order_by(calls.at)
        return list(conn.execute(query).scalars())

    def try_acquire(self, limit: int, window: float, caller: Caller) -> float:
        window += WINDOW_MARGIN_SECONDS
        with self._engine.begin() as conn:
            state = self._locked(conn)
            now = db_epoch_seconds(conn)
            if state.paused_until > now:
                return state.paused_until - now
            times = self._window(conn, now, window)
            wait = decide(now, times, limit, window, caller, state.last_critical_at)
            if wait > 0:
                return wait
            conn.execute(sa.insert(api_budget_calls).values(name=self._name, at=now))
            conn.execute(self._bump("total_calls"))
            if caller.critical:
                conn.execute(
                    sa.update(api_budget_state)
                    .where(api_budget_state.c.name == self._name)
                    .values(last_critical_at=now)
                )
            return 0.0

    def _read(self, conn: sa.Connection) -> tuple[float, float, int, int]:
        """(paused_until, last_critical_at, total_calls, total_waits), read without a write:
        a missing state row reads as the row `_locked` would insert."""
        query = sa.select(
            api_budget_state.c.paused_until,
            api_budget_state.c.last_critical_at,
            api_budget_state.c.total_calls,
            api_budget_state.c.total_waits,
        ).where(api_budget_state.c.name == self._name)
        row = conn.execute(query).one_or_none()
        return tuple(row) if row is not None else (0.0, 0.0, 0, 0)  # type: ignore[return-value]

    def free_slots(self, limit: int, window: float, caller: Caller) -> int:
        """A peek: reads the window's calls without pruning the expired ones."""
        window += WINDOW_MARGIN_SECONDS
        calls = api_budget_calls.c
        with self._engine.connect() as conn:
            paused_until, last_critical, _, _ = self._read(conn)
            now = db_epoch_seconds(conn)
            if paused_until > now:
                return 0
            query = sa.select(calls.at).where(calls.name == self._name, calls.at > now - window)
            times = list(conn.execute(query.order_by(calls.at)).scalars())
        return free_slots(now, times, limit, window, caller, last_critical)

    def pause(self, seconds: float) -> None:
        with self._engine.begin() as conn:
            state = self._locked(conn)
            until = db_epoch_seconds(conn) + seconds
            if until > state.paused_until:
                conn.execute(
                    sa.update(api_budget_state)
                    .where(api_budget_state.c.name == self._name)
                    .values(paused_until=until)
                )

    def record_wait(self) -> None:
        with self._engine.begin() as conn:
            self._locked(conn)
            conn.execute(self._bump("total_waits"))

    def stats(self, limit: int, window: float) -> BudgetStats:
        with self._engine.connect() as conn:
            paused_until, _, total_calls, total_waits = self._read(conn)
            now = db_epoch_seconds(conn)
            calls = api_budget_calls.c
            used, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(calls.at)).where(
                    calls.name == self._name,
                    calls.at > now - window - WINDOW_MARGIN_SECONDS,
                )
            ).one()
        return _stats(
            limit,
            window,
            now,
            used,
            oldest or 0.0,
            paused_until,
            total_calls,
            total_waits,
            self.backend,
        )

    def refuse(self, feature: str, message: str) -> None:
        with self._engine.begin() as conn:
            values = {"refused_at": db_epoch_seconds(conn), "message": message}
            conn.execute(
                dialect_insert(conn, api_refusals)
                .values(name=self._name, feature=feature, **values)
                .on_conflict_do_update(index_elements=["name", "feature"], set_=values)
            )

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        with self._engine.connect() as conn:
            now = db_epoch_seconds(conn)
            row = conn.execute(
                sa.select(api_refusals.c.refused_at, api_refusals.c.message).where(
                    api_refusals.c.name == self._name, api_refusals.c.feature == feature
                )
            ).one_or_none()
        if row is None or now - row.refused_at > max_age:
            return None
        return Refusal(feature, _as_datetime(row.refused_at), row.message or "")  # type: ignore[arg-type]

    def _bump(self, column: str) -> sa.Update:
        col = api_budget_state.c[column]
        return (
            sa.update(api_budget_state)
            .where(api_budget_state.c.name == self._name)
            .values({column: col + 1})
        )
