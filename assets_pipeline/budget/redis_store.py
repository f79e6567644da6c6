"""The budget's store in Redis: a sliding-window log in a sorted set, each step one Lua script
run atomically on Redis's own clock, so skew between machines cannot let two processes both
believe a slot is free. `DECIDE_LUA` is `fairness.py`'s rule, line for line
(`assets_pipeline_tests/budget/test_fairness_table.py` holds them to the same answers)."""

from __future__ import annotations

import uuid

from assets_pipeline.budget.fairness import CRITICAL_BURST_SECONDS, Caller
from assets_pipeline.budget.interface import Refusal
from assets_pipeline.budget.limiter import (
    REFUSAL_MEMORY_SECONDS,
    WINDOW_MARGIN_SECONDS,
    BudgetStats,
    as_datetime,
    window_stats,
)

#: The store's clock: each script starts by setting `now` from Redis's own TIME (a test may
#: pass `clock=` to fix it).
CLOCK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

#: `fairness.decide` and `fairness.free_slots`, in Lua (1-based lists), after the pause and the
#: window's trimming; `now` is set before it. ARGV: limit, window, nonce, critical (0/1),
#: reserve, critical_gap, mode ("take" or "peek"), CRITICAL_BURST_SECONDS.
DECIDE_LUA = """
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
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], tostring(untl), 'EX', math.ceil(tonumber(ARGV[1])) + 1)
end
return tostring(untl)
"""

_STATS_LUA = """
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

    def __init__(
        self, client: object, name: str = "polygon", namespace: str = "", clock: str = CLOCK_LUA
    ) -> None:
        import redis

        assert isinstance(client, redis.Redis)
        self._client = client
        # one hash tag ({name}) for every key a script touches: Redis Cluster runs a script
        # only on keys of one slot
        base = f"{namespace}budget:{{{name}}}"
        self._keys = [f"{base}:calls", f"{base}:paused_until", f"{base}:stats"]
        self._acquire = client.register_script(clock + DECIDE_LUA)
        self._pause = client.register_script(clock + _PAUSE_LUA)
        self._stats = client.register_script(clock + _STATS_LUA)

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
        return window_stats(
            limit, window, now, int(used), oldest, paused, calls, waits, self.backend
        )

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
        return Refusal(feature, as_datetime(at), raw.get(b"message", b"").decode())  # type: ignore[arg-type]
