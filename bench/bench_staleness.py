"""Benchmark: how stale each tier gets under a 5-calls-per-minute budget, simulated.

    .venv/bin/python bench/bench_staleness.py [--hours 6] [--quick] [--symbols 9 100 500]
        [--days 1] [--plan-symbols 9 100 500] [--plans free paid] [--provider-symbols 9 100 500]
        [--outage-minutes 60] [--outage-at-minutes 60] [--outage-hours 3] [--paid-polygon-calls 100]

Nothing sleeps, nothing goes over HTTP, nothing touches a database: a discrete-event simulation
runs on a simulated clock (float seconds) and prints plain-text tables. The one thing it checks:
no simulated design may make more than `--calls` calls in any `--window` seconds; if one does,
it raises `BudgetExceeded` instead of printing numbers. It prints two tables: staleness on
snapshots over `--hours` (below), then data age and calls per day on each plan over `--days`
on the market's calendar ("Plan scenarios", further below), with a verdict line per requirement.

What is compared
----------------
For 9, 100 and 500 symbols, in `batch` and `per_ticker` snapshot modes, with a budget of
`--calls` (5) per `--window` (60 s):

* **ours**: this project's scheduling (schedules.py, sensors.py, assets.py, budget/fairness.py).
* **reference**: the design it replaces (critical every 5 min, an in-memory queue drained two
  symbols at a time, one shared rate limiter with no reserve). The reference client has no batch
  mode; `reference+batch` is a what-if in which its client sends one call per 250 tickers.
* **ref-overlap**: the reference design again, but with drain ticks that do not wait for the
  previous drain to finish (see the assumptions below). Also shown with `+batch`.

The decision code is not re-implemented: whether a call may go now and how long it waits comes
from `fairness.decide`, the drain's free slots from `fairness.free_slots`, who asks from
`Registry.secondary_caller` (its reserve is `critical_reserve`, its gap `critical_gap`) and
`fairness.CRITICAL_CALLER`, the costs from `registry.refresh_cost`, queue ordering, de-duplication
and retries from `queue_rules` (plan_enqueue, next_batch, after_failure, demote), the cadences
from the registry (`DEFAULT_TIERS` and `QueuePolicy` unless the symbols file changes them), and
the batch size from `V3_MAX_TICKERS`. Only the clock, the budget store and the Dagster daemon are
simulated.

Model of ours
-------------
* Budget store: the call times in the last `window + WINDOW_MARGIN_SECONDS` and the time of the
  last critical call (`last_critical_at`), as SqlBudgetStore keeps them. Every request asks
  `fairness.decide`: it is granted at once if `decide` says 0, and a critical grant sets
  `last_critical_at`; otherwise the caller sleeps the seconds `decide` returned and asks again,
  the same as `PolygonBudget.acquire`. So a critical caller takes any free slot, and a queue run
  (`registry.secondary_caller(mode)`: reserve = one critical refresh's calls, 3 per_ticker or 1
  batch with the registry's critical tier; gap = `critical_gap`, 240 s for a 5 min cadence) uses
  the budget freely while its call would expire before the next critical refresh is due
  (`last_critical_at + critical_gap`), and otherwise leaves `reserve` slots free in the window
  that refresh will see. A caller gives up once its wait would exceed `max_budget_wait_seconds`
  (180 s), and that symbol then fails. Refused callers poll and are not served in FIFO order; at
  equal times, the one that asked first wins. The store's clock reads epoch seconds, as a real
  store's does.
* Direct (critical) tier: a run is launched at t=0 (the start-up catch-up sensor) and then every
  300 s. The tick is skipped while the previous run is still in flight. A run starts
  `--run-start` (5 s) after launch, to model Dagster's run process start-up. It then makes
  `refresh_cost(critical, mode)` calls one after another as `CRITICAL_CALLER`. Each call takes
  `--call-seconds` (0.5 s). A symbol's update time is when its call completes (the quote's fetch
  time, not the later materialization). A failed call is retried up to 2 times, after 1 s and
  2 s (the client's defaults); a budget timeout is not retried. At the end of the run, as in
  assets.py, a symbol that still failed is queued one tier lower (`RefreshQueue.fail`) and the
  refreshed ones leave the queue (`RefreshQueue.complete`).
* Queued tiers: `plan_enqueue(max_size=1000)` at t=0 and then every 1800 s.
* Drain sensor (sensors.drain_tick): runs every 15 s. It does nothing while a queue run is in
  flight or while no item is waiting. Otherwise it asks `slots = fairness.free_slots(...)` for the
  secondary caller and does nothing if that is 0. It then claims, through `next_batch`, 1 call of
  up to 250 symbols in batch mode, or `slots + lookahead` calls of 1 symbol in per_ticker mode,
  where `lookahead` = `--calls` (one window more than is free now) because
  `max_budget_wait_seconds` (180) > 2 x `--window`, else 0. The run starts `--run-start` later
  and takes its calls one after another as the secondary caller, waiting as `decide` says (up to
  180 s per call). Each symbol is updated when its own call completes (assets.py stores each
  answer as soon as it is in), not when the run ends. Queue runs do not retry: at the end of the
  run, failed items go through `after_failure` and refreshed ones leave the queue.
* At equal times, schedules come first, then the drain sensor, then runs in progress. This order
  decides little because runs start 5 s after their tick.

Model of the reference design
-----------------------------
* There is one long-running process, so no run starts late. The cadences are the same: critical
  at t=0 and every 300 s, and the secondary tiers enqueued at t=0 and every 1800 s into an
  in-memory queue with the same rules (`plan_enqueue`, `next_batch`).
* A single rate limiter is shared: the same sliding window, but with no reserve (`decide` asked
  for a caller with reserve 0). Callers that find no free slot wait in one FIFO line and are
  served in order of arrival as slots free, without a deadline. A critical call that arrives
  behind secondary calls waits for them.
* The critical job makes one call per ticker, one after another (`reference+batch`: one call per
  250). A tick is skipped while the previous critical job is still running. Failures are not
  retried within the job.
* The drain runs every 15 s. It pops the next two symbols (`next_batch(items, 2, 1)`), which leave
  the in-memory queue at once, and fetches them one call each, one after another. With `+batch`
  the two share one call: only the client changes, not the drain's size, so `reference+batch`
  can refresh at most 8 secondary symbols a minute (`--reference-drain-symbols` changes the 2).
  `reference` (serial) skips a tick while the previous drain is still waiting or calling, like a
  sleep loop or an APScheduler job with `max_instances=1`.
  `ref-overlap` starts a drain on every tick regardless, so drains pile up in the limiter's line.
  The description of the reference does not settle which of the two it does, so both are shown.
  A failed secondary symbol is requeued through `after_failure`.

Not modelled: Dagster's run queue and daemon tick jitter, the time a sensor takes to evaluate,
429 pauses (`penalize`), runs that die, and clock skew. A run holds no Dagster concurrency slot
here, and every tick fires exactly on time.

Measurement
-----------
* Staleness of a symbol at time t is t minus the completion time of its last update. Before the
  first update it is measured from t=0. It is sampled once per simulated second, in whole seconds,
  from the end of the warm-up (30 min) up to, but not including, the end of the span. A tier
  refreshed every 300 s with a constant delay therefore shows a worst of 299 s; the delay itself
  is in `crit lag max`.
* worst: the largest sample in the tier. p95: the nearest-rank 95th percentile of all of the
  tier's samples (every symbol, every second). never: how many of the tier's symbols were never
  updated in the whole span. Their staleness is the span itself, so a longer `--hours` raises it.
* crit waits: critical refreshes in which at least one call had to wait for a slot, out of all
  critical refreshes. crit wait max: the longest total wait for slots in one refresh. crit lag
  max: the longest time from a critical tick to the refresh's last completed call (run start,
  waits and call latency together). calls/h: calls granted after the warm-up, per simulated
  hour. Ticks that were skipped and calls that failed are listed under the table.
* Synthetic sets keep the registry's 3 critical symbols. The rest are synthetic forex symbols,
  each with its own ticker, dealt round-robin to high, medium and low.

Plan scenarios
--------------
Every quote has a `data_time` (the market's time of the price) and a `fetched_at`; freshness is
judged on `data_time`. For the `--plan-symbols` sets (default: as `--symbols`), in both modes,
for `--days` (default 1, also with `--quick`) measured from Tuesday 2026-01-13 00:00 UTC after
the 30 min warm-up (a weekday without holidays: forex and crypto trade all day and each
publishes one day bar a day, the UTC day's, closing at midnight and published 30 min later):

1. **free** (end-of-day plan): every market on day bars. `ours` spends a call only on symbols
   whose market trades (`Registry.trading`) and for which `Registry.due(spec, stored, at)`
   (`end_of_day.bar_due`, a real `MarketHours()`, the registry's publication delay) says a newer
   bar is published: at the critical tick and the enqueue ticks (as `schedules.due_symbols`),
   and again at a run's start (as `refresh.plan_refresh`: closed markets go back to the queue,
   current bars leave it). A refresh costs one grouped-daily call per market and one per index
   ticker (`fetch_groups`, checked against `refresh_cost(specs, mode, bars)`), and queue runs
   keep `Registry.critical_reserve(mode, bars)` free (`secondary_caller(mode, bars)`). What a
   call brings is the newest bar published at its completion (`Registry.newest_bar`): its data
   time is that session's close.
2. **paid** (snapshots): as the model above, plus the same trading and due gates (always due on
   snapshots); a quote is live, so its data time is its call's completion.
3. **seed** (`reference`, serial drain): the fixed cadences on both plans; on the free plan each
   call fetches the newest bar with today's client (one grouped-daily call per market), whether
   or not anything new was published.

Both designs start holding what a call at t=0 would bring (`PlanMarket.hold`), so a symbol never
refreshed ages from that. Data age at a whole second t is t minus the data time of the newest
update completed by t, in plain wall time (not open-market time; on the simulated weekday forex
and crypto trade throughout, so the two agree). p50/p95 are nearest-rank over every symbol and
second of the tier. calls/day: granted calls in the measured span, per day, that fetched the
tier's symbols, also per market (a call serving two tiers or markets counts in each);
unused/day: the budget's calls per day less all calls. Verdicts: free plan, ours, each tier's
calls/day per market <= `--max-bar-calls` (2); paid plan, ours, each secondary tier's p95 <=
`--secondary-p95-limit` (1800 s) and no critical refresh waited; free plan, ours' p95 no more
than the seed's plus one window. The model has no rule that spends unused budget on the
stalest secondary symbols first (the queue orders by tier, then first enqueued, and a tier is
enqueued once per cadence); the verdicts say so and give the unused calls. Verdicts are
figures to read: the exit status is 0 unless the budget check fails.

Provider sections
-----------------
Two more tables model Polygon, Kraken and OANDA together (`ChainSim`), each symbol asked of its
providers as `sourcing.Sourcing` asks them, through the real pure rules: `rules.fallback.order`
over `Candidate`s (live first, then not recently failed, then with a budget slot), `Circuit`
(an outage opens it for `retry_after`; a provider alone on a list is asked all the same),
`return_after` hysteresis, an end-of-day answer passed on while a live provider is left. Each
provider has its own simulated budget store and `fairness.decide` (Kraken 60/60 s: its clock
and one ticker call per 20 pairs; OANDA 2/1 s: one call per 50 instruments; Polygon's free plan
5/60 s on day bars, or a paid one); `check_budget` is asserted per provider.

4. **Free accounts on every provider vs Polygon alone** (`--provider-symbols`, one day from
   PLAN_START): data age per tier for Polygon's free plan alone (the plan model above) and for
   the default chains with free Kraken and OANDA accounts, on `POLYGON_PLAN=auto` and `free`.
5. **Polygon down for an hour** (`--outage-minutes`): a paid Polygon first for the critical
   symbols (`[polygon, oanda]`, `[polygon, kraken]`) or alone, unreachable mid-run; the critical
   data age over time, its p95 and max, and the requests each provider was sent.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import datetime as dt
import functools
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field

from assets_pipeline.budget.fairness import (
    CRITICAL_CALLER,
    Caller,
    decide,
    free_slots,
    secondary_caller,
)
from assets_pipeline.budget.limiter import WINDOW_MARGIN_SECONDS
from assets_pipeline.config.registry import (
    AssetType,
    Registry,
    SymbolSpec,
    load_registry,
    refresh_cost,
)
from assets_pipeline.polygon.client import V3_MAX_TICKERS
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.providers.oanda import OandaProvider
from assets_pipeline.rules.cadence import (
    DEFAULT_KRAKEN_BUDGET,
    DEFAULT_OANDA_BUDGET,
    DEFAULT_TIERS,
    QueuePolicy,
    format_duration,
)
from assets_pipeline.rules.fallback import Candidate, Circuit, order
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.queue_rules import (
    IN_FLIGHT,
    QUEUED,
    QueueItem,
    after_failure,
    claim_size,
    leaves_on_refresh,
    next_batch,
    on_failure,
    plan_enqueue,
)
from assets_pipeline.rules.quotes import Quote, Timeframe
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline.sourcing import polygon_live

MODES = ("batch", "per_ticker")
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: The simulated budget store's clock at t=0: epoch seconds, like the real stores' clocks.
STORE_CLOCK = EPOCH.timestamp()
#: The reference design's limiter asks as this caller: no reserve, so `decide` is a plain sliding
#: window, and it never marks a call as critical.
PLAIN = Caller(critical=False, reserve=0)
SIMULATED_FAILURE = "simulated failure"
#: PolygonResource.max_budget_wait_seconds and the client's retry defaults.
MAX_BUDGET_WAIT_SECONDS = 180.0
CRITICAL_MAX_RETRIES = 2
BACKOFF_SECONDS = 1.0
#: The reference drain: symbols popped per tick.
REFERENCE_DRAIN_SYMBOLS = 2
#: Event priorities at equal times: schedules, then the drain sensor, then runs in progress.
SCHEDULE, SENSOR, PROCESS = 0, 1, 2


# --- the simulated clock, budget and processes ----------------------------------------------


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Call:
    """One API call: wait for a slot as `caller` (fairness.decide says when), then take
    `call_seconds`."""

    caller: Caller = CRITICAL_CALLER
    max_wait: float = math.inf
    #: The (tier, market) pairs whose symbols the call fetches, for calls per tier and market.
    serves: tuple[tuple[Tier, str], ...] = ()


@dataclass(frozen=True)
class CallResult:
    ok: bool
    waited: float
    done_at: float
    error: str = ""


Process = Generator[Delay | Call, CallResult | None, None]


class SimStore:
    """A BudgetStore on the simulated clock: the call times in the window and the time of the
    last critical call, with budget/fairness.py's own rule (`decide`, `free_slots`) deciding, as
    SqlBudgetStore does (window + WINDOW_MARGIN_SECONDS). The store's clock reads epoch seconds
    (EPOCH + simulated time), as the real stores' clocks do, so a critical call at t=0 is still
    remembered (`decide` treats a last critical time of 0 as "none yet")."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.span = window + WINDOW_MARGIN_SECONDS
        self.times: list[float] = []  # sorted: the simulated clock only moves forward
        self.last_critical_at = 0.0

    def _window(self, now: float) -> list[float]:
        del self.times[: bisect.bisect_right(self.times, now - self.span)]
        return self.times

    def try_acquire(self, t: float, caller: Caller) -> float:
        """0 and a slot taken, or the seconds `decide` says this caller must wait."""
        now = STORE_CLOCK + t
        times = self._window(now)
        wait = decide(now, times, self.limit, self.span, caller, self.last_critical_at)
        if wait > 0:
            return wait
        times.append(now)
        if caller.critical:
            self.last_critical_at = now
        return 0.0

    def free_slots(self, t: float, caller: Caller) -> int:
        """What PolygonBudget.free_slots answers the drain sensor."""
        now = STORE_CLOCK + t
        times = self._window(now)
        return free_slots(now, times, self.limit, self.span, caller, self.last_critical_at)


class Engine:
    """Events on a heap; processes are generators that yield Delay or Call."""

    def __init__(
        self,
        limit: int,
        window: float,
        call_seconds: float,
        failure_rate: float,
        seed: int,
        fifo: bool,
    ) -> None:
        self.now = 0.0
        self.store = SimStore(limit, window)
        self.call_seconds = call_seconds
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.fifo = fifo
        self.grants: list[float] = []
        #: Each granted call: when, and the (tier, market) pairs it served.
        self.spent: list[tuple[float, tuple[tuple[Tier, str], ...]]] = []
        self._events: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._line: deque[tuple[Process, Call, float]] = deque()
        self._pump_pending = False

    def at(self, when: float, priority: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, priority, next(self._seq), action))

    def every(self, period: float, priority: int, action: Callable[[], None]) -> None:
        """`action` at 0, period, 2*period, ..."""

        def tick(k: int) -> None:
            action()
            self.at((k + 1) * period, priority, functools.partial(tick, k + 1))

        self.at(0.0, priority, functools.partial(tick, 0))

    def run(self, until: float) -> None:
        while self._events and self._events[0][0] <= until:
            when, _, _, action = heapq.heappop(self._events)
            self.now = when
            action()

    def spawn(self, process: Process) -> None:
        self._step(process, None)

    def _step(self, process: Process, value: CallResult | None) -> None:
        try:
            request = process.send(value)
        except StopIteration:
            return
        if isinstance(request, Delay):
            self.at(
                self.now + request.seconds, PROCESS, functools.partial(self._step, process, None)
            )
        elif self.fifo:
            self._line.append((process, request, self.now))
            self._pump()
        else:
            self._poll(process, request, self.now)

    def _poll(self, process: Process, call: Call, arrived: float) -> None:
        """PolygonBudget.acquire: try, and sleep until the next slot or give up at the deadline."""
        wait = self.store.try_acquire(self.now, call.caller)
        if wait <= 0:
            self._grant(process, call, arrived)
            return
        if wait > arrived + call.max_wait - self.now:
            result = CallResult(False, self.now - arrived, self.now, "no budget slot in time")
            self.at(self.now, PROCESS, functools.partial(self._step, process, result))
            return
        self.at(self.now + wait, PROCESS, functools.partial(self._poll, process, call, arrived))

    def _pump(self) -> None:
        """The reference rate limiter: one FIFO line, served as slots free."""
        self._pump_pending = False
        while self._line:
            wait = self.store.try_acquire(self.now, PLAIN)
            if wait > 0:
                self._pump_pending = True
                self.at(self.now + wait, PROCESS, self._pump)
                return
            process, call, arrived = self._line.popleft()
            self._grant(process, call, arrived)

    def _step_later(self, process: Process, result: CallResult) -> None:
        self.at(result.done_at, PROCESS, functools.partial(self._step, process, result))

    def _grant(self, process: Process, call: Call, arrived: float) -> None:
        self.grants.append(self.now)
        self.spent.append((self.now, call.serves))
        ok = self.failure_rate <= 0 or self.rng.random() >= self.failure_rate
        done = self.now + self.call_seconds
        self._step_later(
            process, CallResult(ok, self.now - arrived, done, "" if ok else SIMULATED_FAILURE)
        )


# --- shared bookkeeping ---------------------------------------------------------------------


def at_time(seconds: float) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


def call_groups(specs: Iterable[SymbolSpec], per_call: int) -> list[list[SymbolSpec]]:
    """Symbols per call, the way PolygonClient.fetch groups them: by ticker, in order."""
    by_ticker: dict[str, list[SymbolSpec]] = {}
    for spec in specs:
        by_ticker.setdefault(spec.polygon_ticker, []).append(spec)
    tickers = list(by_ticker)
    return [
        [spec for ticker in tickers[i : i + per_call] for spec in by_ticker[ticker]]
        for i in range(0, len(tickers), per_call)
    ]


def serves(group: Iterable[SymbolSpec]) -> tuple[tuple[Tier, str], ...]:
    """The (tier, market) pairs one call's symbols belong to."""
    return tuple(sorted({(spec.tier, spec.asset_type.value) for spec in group}))


def fetch_groups(
    specs: Iterable[SymbolSpec], mode: str, bars: frozenset[AssetType], per_call: int
) -> list[list[SymbolSpec]]:
    """Symbols per call, as PolygonClient.fetch makes them: snapshots grouped by `call_groups`
    (`per_call` tickers a call); the `bars` markets' day bars one grouped-daily call per market,
    and one call per index ticker (`feasibility.bars_cost`)."""
    specs = list(specs)
    groups = call_groups([s for s in specs if s.asset_type not in bars], per_call)
    by_market: dict[str, list[SymbolSpec]] = {}
    for spec in specs:
        if spec.asset_type in bars:
            key = spec.polygon_ticker if spec.asset_type is AssetType.INDEX else spec.asset_type
            by_market.setdefault(key, []).append(spec)
    return groups + list(by_market.values())


class PlanMarket:
    """The plan's side of a simulation on the market's calendar: what is due, and what a call
    brings back. Whether a symbol's market trades comes from `Registry.trading`, whether a call
    can bring anything new from `Registry.due` (on day bars: `end_of_day.bar_due`, with a real
    `MarketHours()` and the registry's publication delay), on the stored quote, as
    `schedules.due_symbols` and `refresh.plan_refresh` ask. What a day-bar call returns is the
    newest bar published at its completion (`Registry.newest_bar`): its data time is that
    session's close. A snapshot is live: its data time is the call's completion."""

    def __init__(self, registry: Registry, plan: str, start: dt.datetime) -> None:
        self.registry = dataclasses.replace(registry, plan=plan)
        self.plan = plan
        self.start = start
        self.bars: frozenset[AssetType] = frozenset(AssetType) if plan == "free" else frozenset()
        self.timeframe = Timeframe.END_OF_DAY if plan == "free" else Timeframe.REAL_TIME
        self.stored: dict[str, Quote] = {}

    def at(self, t: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=t)

    def hold(self, specs: Iterable[SymbolSpec]) -> dict[str, float]:
        """Start as a pipeline that already ran: every symbol holds what a call at t=0 would
        bring (on day bars the newest published bar, on snapshots a quote of t=0). Returns
        their data times, from which a symbol's age counts until its first update."""
        held = {}
        for spec in specs:
            held[spec.symbol] = self.fetched([spec], 0.0)
        return held

    def due(self, specs: Iterable[SymbolSpec], t: float) -> list[SymbolSpec]:
        at = self.at(t)
        trading = self.registry.trading(specs, at)
        return [s for s in trading if self.registry.due(s, self.stored.get(s.symbol), at)]

    def trading(self, specs: Iterable[SymbolSpec], t: float) -> list[SymbolSpec]:
        return self.registry.trading(specs, self.at(t))

    def fetched(self, group: Iterable[SymbolSpec], t: float) -> float:
        """Store what a call completed at `t` brought; its data time, in simulated seconds."""
        at = self.at(t)
        group = list(group)
        data_time = at
        if group and group[0].asset_type in self.bars:
            close = self.registry.newest_bar(group[0], at).close
            assert close is not None, "a bar is published every fortnight"
            data_time = close
        for spec in group:
            self.stored[spec.symbol] = Quote(
                ticker=spec.polygon_ticker,
                data_time=data_time,
                source="bench",
                symbol=spec.symbol,
                fetched_at=at,
                timeframe=self.timeframe,
            )
        return (data_time - self.start).total_seconds()


@dataclass
class Outcome:
    """What one simulated design did."""

    updates: dict[str, list[float]] = field(default_factory=dict)
    #: Per symbol, each update's (completion, data time), in simulated seconds.
    data: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: Cadence ticks that found no symbol due (day bars already stored, market closed).
    idle_ticks: int = 0
    #: Per symbol, the data time it held at t=0 (plan scenarios); else its age counts from 0.
    held: dict[str, float] = field(default_factory=dict)
    critical_refreshes: int = 0
    critical_waits: int = 0
    critical_wait_max: float = 0.0
    critical_lag_max: float = 0.0
    critical_skipped: int = 0
    critical_failed_calls: int = 0
    queue_failures: int = 0
    calls: list[float] = field(default_factory=list)
    spent: list[tuple[float, tuple[tuple[Tier, str], ...]]] = field(default_factory=list)

    def updated(
        self, specs: Iterable[SymbolSpec], when: float, data_time: float | None = None
    ) -> None:
        for spec in specs:
            self.updates.setdefault(spec.symbol, []).append(when)
            self.data.setdefault(spec.symbol, []).append(
                (when, when if data_time is None else data_time)
            )

    def critical_done(self, waited: float, lag: float) -> None:
        self.critical_refreshes += 1
        self.critical_lag_max = max(self.critical_lag_max, lag)
        if waited > 0:
            self.critical_waits += 1
            self.critical_wait_max = max(self.critical_wait_max, waited)


class Queue:
    """The queue's rows in memory, changed only through queue_rules."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.items: dict[str, QueueItem] = {}
        self.specs = {spec.symbol: spec for spec in registry}

    def enqueue(self, specs: Iterable[SymbolSpec], now: float) -> None:
        arrivals = [(spec.symbol, spec.tier) for spec in specs]
        plan = plan_enqueue(
            self.items.values(), arrivals, at_time(now), self.registry.queue.max_size
        )
        for symbol in plan.evicted:
            del self.items[symbol]
        for item in [*plan.insert, *plan.update]:
            self.items[item.symbol] = item

    def waiting(self) -> bool:
        return any(item.status == QUEUED for item in self.items.values())

    def complete(self, specs: Iterable[SymbolSpec]) -> None:
        """RefreshQueue.complete: the same rule (`leaves_on_refresh`)."""
        for spec in specs:
            item = self.items.get(spec.symbol)
            if item is not None and leaves_on_refresh(item):
                del self.items[spec.symbol]

    def fail(self, spec: SymbolSpec, error: str, now: float) -> None:
        """RefreshQueue.fail with a retryable error: the same rule (`on_failure`)."""
        item = on_failure(
            self.items.get(spec.symbol),
            spec.symbol,
            spec.tier,
            error,
            True,
            self.registry.queue.max_retries,
            at_time(now),
        )
        if item is not None:
            self.items[spec.symbol] = item


# --- ours -----------------------------------------------------------------------------------


def simulate_ours(
    registry: Registry,
    mode: str,
    cfg: argparse.Namespace,
    market: PlanMarket | None = None,
) -> Outcome:
    """Ours. With `market`, on a plan and the market's calendar: a cadence spends calls only on
    the symbols `market.due` names (schedules.due_symbols), a run fetches only those still due
    at its start (refresh.plan_refresh), and the reserve is sized from the plan's day-bar
    markets. Without it, every symbol is due at every tick (the snapshot model of before)."""
    engine = Engine(cfg.calls, cfg.window, cfg.call_seconds, cfg.failure_rate, cfg.seed, False)
    out = Outcome(calls=engine.grants, spent=engine.spent)
    if market is not None:
        out.held = market.hold(registry)
    queue = Queue(registry)
    bars = market.bars if market is not None else frozenset()
    secondary = registry.secondary_caller(mode, bars)
    per_call = V3_MAX_TICKERS if mode == "batch" else 1
    # sensors.drain_tick: a window's worth more than is free, when the run may wait that long.
    direct = registry.direct()
    assert len(fetch_groups(direct, mode, bars, per_call)) == refresh_cost(direct, mode, bars)
    busy = {"critical": False, "queue": False}

    def due(specs: Iterable[SymbolSpec]) -> list[SymbolSpec]:
        return list(specs) if market is None else market.due(specs, engine.now)

    def fetched(group: list[SymbolSpec], done_at: float) -> None:
        data_time = market.fetched(group, done_at) if market is not None else None
        out.updated(group, done_at, data_time)

    def settle(done: list[SymbolSpec], failed: list[tuple[SymbolSpec, str]]) -> None:
        """The end of a run in assets.py: failures through RefreshQueue.fail, then complete."""
        for spec, error in failed:
            queue.fail(spec, error, engine.now)
        queue.complete(done)

    def critical_run(launched: float, selected: list[SymbolSpec]) -> Process:
        yield Delay(cfg.run_start)
        waited = 0.0
        done: list[SymbolSpec] = []
        failed: list[tuple[SymbolSpec, str]] = []
        # refresh.plan_refresh: only the selected symbols still due at the run's start.
        for group in fetch_groups(due(selected), mode, bars, per_call):
            for attempt in range(CRITICAL_MAX_RETRIES + 1):
                result = yield Call(
                    CRITICAL_CALLER, max_wait=MAX_BUDGET_WAIT_SECONDS, serves=serves(group)
                )
                assert result is not None
                waited += result.waited
                if result.ok:
                    fetched(group, result.done_at)
                    done += group
                    break
                out.critical_failed_calls += 1
                # A budget timeout (BudgetError) is not retried; a failed request is.
                if result.error != SIMULATED_FAILURE or attempt == CRITICAL_MAX_RETRIES:
                    failed += [(spec, result.error) for spec in group]
                    break
                yield Delay(min(BACKOFF_SECONDS * 2**attempt, 30.0))
        settle(done, failed)
        out.critical_done(waited, engine.now - launched)
        busy["critical"] = False

    def critical_tick() -> None:
        if busy["critical"]:
            out.critical_skipped += 1
            return
        selected = due(direct)  # schedules.direct_tick: no run when nothing is due
        if not selected:
            out.idle_ticks += 1
            return
        busy["critical"] = True
        engine.spawn(critical_run(engine.now, selected))

    def queue_run(claimed: list[QueueItem]) -> Process:
        yield Delay(cfg.run_start)
        done: list[SymbolSpec] = []
        failed: list[tuple[SymbolSpec, str]] = []
        specs = [queue.specs[item.symbol] for item in claimed]
        if market is not None:
            # refresh.plan_refresh: closed markets go back to the queue, current bars leave it.
            trading = market.trading(specs, engine.now)
            for spec in specs:
                if spec not in trading:
                    queue.items[spec.symbol] = dataclasses.replace(
                        queue.items[spec.symbol], status=QUEUED
                    )
            still = due(trading)
            queue.complete([spec for spec in trading if spec not in still])
            specs = still
        for group in fetch_groups(specs, mode, bars, per_call):
            result = yield Call(secondary, max_wait=MAX_BUDGET_WAIT_SECONDS, serves=serves(group))
            assert result is not None
            if result.ok:
                fetched(group, result.done_at)
                done += group
            else:
                out.queue_failures += len(group)
                failed += [(spec, result.error) for spec in group]
        settle(done, failed)
        busy["queue"] = False

    def drain_tick() -> None:
        if busy["queue"] or not queue.waiting():
            return
        slots = engine.store.free_slots(engine.now, secondary)
        if slots <= 0:
            return
        calls, per_call = claim_size(mode, slots, cfg.calls, cfg.window, MAX_BUDGET_WAIT_SECONDS)
        items: Iterable[QueueItem] = queue.items.values()
        if market is not None:  # RefreshQueue.claim(eligible=the symbols whose market trades)
            open_now = {s.symbol for s in market.trading(registry, engine.now)}
            items = [item for item in items if item.symbol in open_now]
        claimed = next_batch(items, calls, per_call)
        if not claimed:
            return
        for item in claimed:
            queue.items[item.symbol] = dataclasses.replace(item, status=IN_FLIGHT)
        busy["queue"] = True
        engine.spawn(queue_run(claimed))

    def enqueue_tick(tier: Tier) -> None:
        specs = due(registry.in_tier(tier))  # schedules.enqueue_tick: the due symbols only
        if not specs:
            out.idle_ticks += 1
        queue.enqueue(specs, engine.now)

    for policy in registry.tiers.values():
        if not registry.in_tier(policy.tier):
            continue
        if policy.refresh == "direct":
            engine.every(policy.every_seconds, SCHEDULE, critical_tick)
        else:
            engine.every(
                policy.every_seconds, SCHEDULE, functools.partial(enqueue_tick, policy.tier)
            )
    engine.every(registry.queue.drain_every_seconds, SENSOR, drain_tick)
    engine.run(cfg.span)
    return out


# --- the reference design -------------------------------------------------------------------


def simulate_reference(
    registry: Registry,
    mode: str,
    cfg: argparse.Namespace,
    overlap: bool,
    market: PlanMarket | None = None,
) -> Outcome:
    """The reference design: fixed cadences. With `market`, its calls fetch what the plan
    serves (on the free plan, the newest day bar, with today's client: one grouped-daily call
    per market), but its cadences never ask whether anything new can come."""
    engine = Engine(cfg.calls, cfg.window, cfg.call_seconds, cfg.failure_rate, cfg.seed, True)
    out = Outcome(calls=engine.grants, spent=engine.spent)
    if market is not None:
        out.held = market.hold(registry)
    queue = Queue(registry)
    bars = market.bars if market is not None else frozenset()
    per_call = V3_MAX_TICKERS if mode == "batch" else 1
    direct = registry.direct()
    critical_groups = fetch_groups(direct, mode, bars, per_call)
    assert len(critical_groups) == refresh_cost(direct, mode, bars)
    busy = {"critical": False, "drains": 0}

    def fetched(group: list[SymbolSpec], done_at: float) -> None:
        data_time = market.fetched(group, done_at) if market is not None else None
        out.updated(group, done_at, data_time)

    def critical_job(launched: float) -> Process:
        waited = 0.0
        for group in critical_groups:
            result = yield Call(serves=serves(group))
            assert result is not None
            waited += result.waited
            if result.ok:
                fetched(group, result.done_at)
            else:
                out.critical_failed_calls += 1
        out.critical_done(waited, engine.now - launched)
        busy["critical"] = False

    def critical_tick() -> None:
        if busy["critical"]:
            out.critical_skipped += 1
            return
        busy["critical"] = True
        engine.spawn(critical_job(engine.now))

    def drain(popped: list[QueueItem]) -> Process:
        specs = [queue.specs[item.symbol] for item in popped]
        for group in fetch_groups(specs, mode, bars, per_call):
            result = yield Call(serves=serves(group))
            assert result is not None
            if result.ok:
                fetched(group, result.done_at)
                continue
            out.queue_failures += len(group)
            for spec in group:
                if spec.symbol in queue.items:
                    continue  # enqueued afresh while its call waited
                item = next(i for i in popped if i.symbol == spec.symbol)
                queue.items[spec.symbol] = after_failure(
                    item, result.error, True, registry.queue.max_retries, at_time(engine.now)
                )
        busy["drains"] -= 1

    def drain_tick() -> None:
        if busy["drains"] and not overlap:
            return
        popped = next_batch(queue.items.values(), cfg.reference_drain_symbols, 1)
        if not popped:
            return
        for item in popped:
            del queue.items[item.symbol]
        busy["drains"] += 1
        engine.spawn(drain(popped))

    for policy in registry.tiers.values():
        if not registry.in_tier(policy.tier):
            continue
        if policy.refresh == "direct":
            engine.every(policy.every_seconds, SCHEDULE, critical_tick)
        else:
            tick = functools.partial(
                lambda tier: queue.enqueue(registry.in_tier(tier), engine.now), policy.tier
            )
            engine.every(policy.every_seconds, SCHEDULE, tick)
    engine.every(registry.queue.drain_every_seconds, SENSOR, drain_tick)
    engine.run(cfg.span)
    return out


# --- staleness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierStats:
    tier: Tier
    symbols: int
    worst: int
    p95: int
    never: int


def tier_stats(
    tier: Tier, specs: list[SymbolSpec], out: Outcome, start: int, end: int
) -> TierStats:
    """Whole-second staleness sampled at every t in [start, end], through a histogram.

    A sample at whole second t sees the last update at u <= t; floor(t - u) = t - ceil(u).
    """
    diff = [0] * (end + 3)
    worst = 0
    never = 0
    for spec in specs:
        done = sorted(math.ceil(u) for u in out.updates.get(spec.symbol, []) if u <= end)
        never += not done
        points = [0, *done]
        for k, since in enumerate(points):
            until = points[k + 1] - 1 if k + 1 < len(points) else end
            first = max(since, start)
            if first > until:
                continue
            diff[first - since] += 1
            diff[until - since + 1] -= 1
            worst = max(worst, until - since)
    total = len(specs) * (end - start + 1)
    rank = math.ceil(0.95 * total)
    seen = running = 0
    p95 = 0
    for staleness, step in enumerate(diff):
        running += step
        seen += running
        if seen >= rank:
            p95 = staleness
            break
    return TierStats(tier, len(specs), worst, p95, never)


# --- symbol sets and the table --------------------------------------------------------------


def symbol_set(base: Registry, count: int) -> Registry:
    """The registry itself for its own size; else its critical symbols plus synthetic ones."""
    if count == len(base):
        return base
    critical = base.in_tier(Tier.CRITICAL)
    if count < len(critical):
        raise ValueError(f"{count} symbols cannot hold the {len(critical)} critical ones")
    secondary = (Tier.HIGH, Tier.MEDIUM, Tier.LOW)
    specs = list(critical)
    for i in range(count - len(critical)):
        code = f"SYN{i:04d}"
        specs.append(
            SymbolSpec(
                symbol=code,
                polygon_ticker=f"C:{code}",
                asset_type=AssetType.FOREX,
                tier=secondary[i % len(secondary)],
                name=f"Synthetic {i}",
                base_asset=code,
                quote_asset="USD",
                price_precision=5,
            )
        )
    return Registry(source="bench", symbols=tuple(specs))


@dataclass(frozen=True)
class Row:
    symbols: int
    mode: str
    design: str
    stats: list[TierStats]
    outcome: Outcome
    calls_per_hour: float


class BudgetExceeded(RuntimeError):
    """A simulated design made more calls in some window than the budget allows."""


def check_budget(calls: list[float], limit: int, window: float, what: str) -> None:
    """Raise unless every `window` seconds (closed interval) hold at most `limit` of `calls`."""
    times = sorted(calls)
    for i in range(len(times) - limit):
        if times[i + limit] - times[i] <= window:
            raise BudgetExceeded(
                f"{what}: {limit + 1} calls within {window:g} s, from t={times[i]:.3f} s"
                f" to t={times[i + limit]:.3f} s"
            )


def simulate(registry: Registry, mode: str, design: str, cfg: argparse.Namespace) -> Row:
    if design == "ours":
        out = simulate_ours(registry, mode, cfg)
    else:
        out = simulate_reference(registry, mode, cfg, overlap=design.startswith("ref-overlap"))
    check_budget(out.calls, cfg.calls, cfg.window, f"{len(registry)} symbols {mode} {design}")
    start, end = int(cfg.warmup), int(cfg.span) - 1
    stats = [
        tier_stats(tier, registry.in_tier(tier), out, start, end)
        for tier in Tier
        if registry.in_tier(tier)
    ]
    measured = [t for t in out.calls if cfg.warmup <= t < cfg.span]
    per_hour = len(measured) / ((cfg.span - cfg.warmup) / 3600.0)
    label = design if mode == "per_ticker" or design == "ours" else f"{design}+batch"
    return Row(len(registry), mode, label, stats, out, per_hour)


# --- plans: data age and calls per day on the free and the paid plan ----------------------------

PLANS = ("free", "paid")
#: The first measured instant of the plan scenarios: a Tuesday 00:00 UTC, no holiday, so forex
#: and crypto trade all day and each publishes one day bar a day (the UTC day's, at 00:30).
PLAN_START = dt.datetime(2026, 1, 13, tzinfo=dt.UTC)
DAY = 86400.0


@dataclass(frozen=True)
class AgeStats:
    tier: Tier
    symbols: int
    p50: int
    p95: int
    worst: int
    never: int
    calls_per_day: float
    #: Calls per day per market (forex, crypto, index) that fetched this tier's symbols.
    per_market: dict[str, float]


def nearest_rank(diff: dict[int, int], total: int, q: float) -> int:
    """The nearest-rank `q` quantile of the ages a difference histogram holds."""
    rank = max(1, math.ceil(q * total))
    keys = sorted(diff)
    seen = running = 0
    for i, age in enumerate(keys):
        running += diff[age]
        span = (keys[i + 1] if i + 1 < len(keys) else age + 1) - age
        if running > 0 and seen + running * span >= rank:
            return age + math.ceil((rank - seen) / running) - 1
        seen += running * span
    return keys[-1] if keys else 0


def age_stats(
    tier: Tier, specs: list[SymbolSpec], out: Outcome, cfg: argparse.Namespace
) -> AgeStats:
    """Data age, in whole seconds of wall time, sampled at every whole second t of the measured
    span: t minus the data time of the newest update completed by t (a sample at t sees an
    update completed at u <= t, of data time d: floor(t - d) = t - ceil(d)). Before the first
    update it counts from the data time the symbol held at t=0 (`PlanMarket.hold`). Calls: those
    granted in the measured span whose symbols include this tier's, per day (a call that serves
    two tiers, or two markets, counts in each)."""
    start, end = int(cfg.warmup), int(cfg.span) - 1
    diff: dict[int, int] = {}
    worst = never = 0
    for spec in specs:
        points = sorted(
            (math.ceil(done), math.ceil(data))
            for done, data in out.data.get(spec.symbol, [])
            if done <= end
        )
        never += not points
        points = [(0, math.ceil(out.held.get(spec.symbol, 0.0))), *points]
        for k, (since, base) in enumerate(points):
            until = points[k + 1][0] - 1 if k + 1 < len(points) else end
            first = max(since, start)
            if first > until:
                continue
            diff[first - base] = diff.get(first - base, 0) + 1
            diff[until - base + 1] = diff.get(until - base + 1, 0) - 1
            worst = max(worst, until - base)
    total = len(specs) * (end - start + 1)
    days = (cfg.span - cfg.warmup) / DAY
    calls = 0
    per_market: dict[str, float] = {}
    for when, pairs in out.spent:
        if not cfg.warmup <= when < cfg.span:
            continue
        markets = {market for t, market in pairs if t is tier}
        calls += bool(markets)
        for market in markets:
            per_market[market] = per_market.get(market, 0) + 1
    return AgeStats(
        tier,
        len(specs),
        nearest_rank(diff, total, 0.50),
        nearest_rank(diff, total, 0.95),
        worst,
        never,
        calls / days,
        {market: n / days for market, n in sorted(per_market.items())},
    )


@dataclass(frozen=True)
class PlanRow:
    plan: str
    symbols: int
    mode: str
    design: str
    stats: list[AgeStats]
    outcome: Outcome
    calls_per_day: float
    unused_per_day: float


def simulate_plan(
    registry: Registry, plan: str, mode: str, design: str, cfg: argparse.Namespace
) -> PlanRow:
    """One design for a day (or `--days`) on a plan, from PLAN_START less the warm-up."""
    market = PlanMarket(registry, plan, PLAN_START - dt.timedelta(seconds=cfg.warmup))
    if design == "ours":
        out = simulate_ours(registry, mode, cfg, market)
    else:
        out = simulate_reference(registry, mode, cfg, overlap=False, market=market)
    what = f"{plan} plan {len(registry)} symbols {mode} {design}"
    check_budget(out.calls, cfg.calls, cfg.window, what)
    stats = [age_stats(t, registry.in_tier(t), out, cfg) for t in Tier if registry.in_tier(t)]
    days = (cfg.span - cfg.warmup) / DAY
    per_day = sum(cfg.warmup <= t < cfg.span for t in out.calls) / days
    capacity = cfg.calls * DAY / cfg.window
    label = design if mode == "per_ticker" or design == "ours" else f"{design}+batch"
    return PlanRow(plan, len(registry), mode, label, stats, out, per_day, capacity - per_day)


def age_text(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


def number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def render_plans(rows: list[PlanRow]) -> list[str]:
    header = [
        "plan",
        "symbols",
        "mode",
        "design",
        "tier",
        "n",
        "age p50 s",
        "p50",
        "age p95 s",
        "p95",
        "never",
        "calls/day",
        "per market/day",
        "crit waits",
        "all calls/day",
        "unused/day",
    ]
    right = {1, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15}
    table: list[list[str]] = []
    previous = None
    for row in rows:
        group = (row.plan, row.symbols, row.mode)
        if previous is not None and group != previous:
            table.append([])
        previous = group
        out = row.outcome
        for i, st in enumerate(row.stats):
            first = i == 0
            table.append(
                [
                    row.plan if first else "",
                    str(row.symbols) if first else "",
                    row.mode if first else "",
                    row.design if first else "",
                    st.tier.value,
                    str(st.symbols),
                    str(st.p50),
                    age_text(st.p50),
                    str(st.p95),
                    age_text(st.p95),
                    str(st.never) if st.never else "-",
                    number(st.calls_per_day),
                    ", ".join(f"{m} {number(n)}" for m, n in st.per_market.items()) or "-",
                    f"{out.critical_waits}/{out.critical_refreshes}" if first else "",
                    number(row.calls_per_day) if first else "",
                    number(row.unused_per_day) if first else "",
                ]
            )
    widths = [max(len(h), *(len(r[i]) for r in table if r)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) if r else "" for r in table]


def verdicts(rows: list[PlanRow], cfg: argparse.Namespace) -> tuple[list[str], int, int]:
    """One line per requirement, tier and row: OK or FAIL (NOTE: a figure to read, no test)."""
    lines: list[str] = []
    counts = {"OK": 0, "FAIL": 0}

    def say(text: str, ok: bool | None) -> None:
        word = "NOTE" if ok is None else "OK" if ok else "FAIL"
        counts[word] = counts.get(word, 0) + 1
        lines.append(f"{text}: {word}")

    def markets(st: AgeStats) -> str:
        return ", ".join(f"{m} {number(n)}" for m, n in st.per_market.items()) or "none"

    by_key = {(r.plan, r.symbols, r.mode, r.design.split("+")[0]): r for r in rows}
    limit = cfg.max_bar_calls
    for row in rows:
        where = f"{row.symbols} symbols, {row.mode}"
        seed = row.design.split("+")[0] == "reference"
        ours = by_key.get((row.plan, row.symbols, row.mode, "ours"))
        if row.plan == "free" and not seed:
            for st in row.stats:
                most = max(st.per_market.values(), default=0.0)
                say(
                    f"free plan ({where}): {st.tier.value} calls/day {markets(st)}"
                    f" <= {number(limit)} per market",
                    most <= limit,
                )
            say(
                f"free plan ({where}): data age = the session close's, wall time: "
                + ", ".join(
                    f"{st.tier.value} p50 {age_text(st.p50)} p95 {age_text(st.p95)}"
                    for st in row.stats
                )
                + " (what an end-of-day plan allows)",
                None,
            )
        if row.plan == "paid" and not seed:
            for st in row.stats:
                if st.tier is not Tier.CRITICAL:
                    say(
                        f"paid plan ({where}): {st.tier.value} data age p95 {age_text(st.p95)}"
                        f" <= {age_text(int(cfg.secondary_p95_limit))}",
                        st.p95 <= cfg.secondary_p95_limit,
                    )
            out = row.outcome
            say(
                f"paid plan ({where}): critical refreshes that waited for budget"
                f" {out.critical_waits}/{out.critical_refreshes}, 0 wanted",
                out.critical_waits == 0,
            )
            say(
                f"paid plan ({where}): {number(row.unused_per_day)} calls/day unused; not spent on"
                " the stalest secondary symbols first: the model has no such rule (the queue"
                " takes tier first, then first enqueued; a tier is enqueued once per cadence)",
                None,
            )
        if seed and ours is not None:
            crit = row.stats[0]
            say(
                f"seed on the {row.plan} plan ({where}): {crit.tier.value} calls/day"
                f" {markets(crit)} (ours {markets(ours.stats[0])})",
                None,
            )
            if row.plan == "free":
                for mine, theirs in zip(ours.stats, row.stats, strict=True):
                    say(
                        f"free plan ({where}): {mine.tier.value} data age p95 ours"
                        f" {age_text(mine.p95)} <= seed {age_text(theirs.p95)}"
                        f" (+{cfg.window:g} s): the calls saved cost no freshness",
                        mine.p95 <= theirs.p95 + cfg.window,
                    )
    return lines, counts["OK"], counts["FAIL"]


def minutes(seconds: int) -> str:
    return f"{seconds / 60:.1f}"


def render(rows: list[Row]) -> list[str]:
    header = [
        "symbols",
        "mode",
        "design",
        "tier",
        "n",
        "worst s",
        "worst min",
        "p95 s",
        "p95 min",
        "never",
        "crit waits",
        "crit wait max",
        "crit lag max",
        "calls/h",
    ]
    right = {0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
    table: list[list[str]] = []
    previous = None
    for row in rows:
        group = (row.symbols, row.mode)
        if previous is not None and group != previous:
            table.append([])
        previous = group
        out = row.outcome
        for i, st in enumerate(row.stats):
            first = i == 0
            table.append(
                [
                    str(row.symbols) if first else "",
                    row.mode if first else "",
                    row.design if first else "",
                    st.tier.value,
                    str(st.symbols),
                    str(st.worst),
                    minutes(st.worst),
                    str(st.p95),
                    minutes(st.p95),
                    str(st.never) if st.never else "-",
                    f"{out.critical_waits}/{out.critical_refreshes}" if first else "",
                    f"{out.critical_wait_max:.1f} s" if first else "",
                    f"{out.critical_lag_max:.1f} s" if first else "",
                    f"{row.calls_per_hour:.0f}" if first else "",
                ]
            )
    widths = [max(len(h), *(len(r[i]) for r in table if r)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(header), line(["-" * w for w in widths])]
    lines += [line(r) if r else "" for r in table]
    return lines


def notes(rows: list[Row]) -> list[str]:
    """Anything the table does not show: skipped ticks, failed calls."""
    lines = []
    for row in rows:
        out = row.outcome
        extras = []
        if out.critical_skipped:
            extras.append(f"{out.critical_skipped} critical tick(s) skipped (previous still busy)")
        if out.critical_failed_calls:
            extras.append(f"{out.critical_failed_calls} critical call(s) failed")
        if out.queue_failures:
            extras.append(f"{out.queue_failures} queued symbol fetch(es) failed")
        if extras:
            lines.append(f"  {row.symbols:>4} {row.mode:<10} {row.design:<18} " + "; ".join(extras))
    return lines


# --- providers: free accounts beside Polygon, and an hour of Polygon's outage -----------------

POLYGON, KRAKEN, OANDA = (
    p.value for p in (ProviderName.POLYGON, ProviderName.KRAKEN, ProviderName.OANDA)
)
#: What a call to a provider that is down ends with (a 502, a refused connection, a timeout).
OUTAGE = "provider unreachable"
#: Kraken's and OANDA's resources wait at most this long for a budget slot (Polygon: 180 s).
PROVIDER_MAX_WAIT_SECONDS = 60.0
#: The providers' retries of a failed request (each paid from the budget), as the clients'.
PROVIDER_MAX_RETRIES = 2


@dataclass(frozen=True)
class Asked(Call):
    """One request to one provider (the engine takes its slot from that provider's budget)."""

    provider: str = POLYGON


@dataclass(frozen=True)
class ProviderModel:
    """One provider as the model sees it: its budget, the markets it serves live, which symbols
    it names (its real `instrument` rule), and what asking it for some of them costs: one group
    per `per_call` instruments, `calls_per_group` requests each (Kraken: its clock, then one
    `Ticker` call per 20 pairs; OANDA: one pricing call per 50; Polygon: as its client groups
    them, `fetch_groups`: on day bars one grouped-daily call per market)."""

    name: str
    calls: int
    window: float
    live: frozenset[AssetType]
    instrument: Callable[[SymbolSpec], str | None]
    per_call: int = V3_MAX_TICKERS
    calls_per_group: int = 1
    max_wait: float = PROVIDER_MAX_WAIT_SECONDS

    @property
    def day_bars(self) -> bool:
        return self.name == POLYGON and not self.live

    def groups(self, specs: list[SymbolSpec]) -> list[list[SymbolSpec]]:
        """The symbols per request group, as the provider's client cuts them."""
        if self.name == POLYGON:
            bars = frozenset(AssetType) if self.day_bars else frozenset()
            return fetch_groups(specs, "batch", bars, V3_MAX_TICKERS)
        by_instrument: dict[str, list[SymbolSpec]] = {}
        for spec in specs:
            by_instrument.setdefault(self.instrument(spec) or "", []).append(spec)
        names = list(by_instrument)
        return [
            [s for name in names[i : i + self.per_call] for s in by_instrument[name]]
            for i in range(0, len(names), self.per_call)
        ]


def provider_models(polygon_paid: bool, cfg: argparse.Namespace) -> dict[str, ProviderModel]:
    """The three providers with their default budgets (`DEFAULT_KRAKEN_BUDGET`,
    `DEFAULT_OANDA_BUDGET`; Polygon's free plan 5 a minute, a paid one `--paid-polygon-calls`)
    and their real instrument rules (`KrakenProvider.instrument`, `OandaProvider.instrument`)."""
    kraken = KrakenProvider(None, "http://127.0.0.1:9")  # only its pure `instrument` is used
    oanda = OandaProvider("http://127.0.0.1:9", "101-004-1234567-001", "unused", None)
    polygon_calls = cfg.paid_polygon_calls if polygon_paid else cfg.calls
    return {
        POLYGON: ProviderModel(
            POLYGON,
            polygon_calls,
            cfg.window,
            polygon_live(not polygon_paid, frozenset()),
            lambda spec: spec.polygon_ticker,
            max_wait=MAX_BUDGET_WAIT_SECONDS,
        ),
        KRAKEN: ProviderModel(
            KRAKEN,
            *DEFAULT_KRAKEN_BUDGET,
            frozenset(AssetType),
            kraken.instrument,
            KrakenProvider.tickers_per_call,
            2,
        ),
        OANDA: ProviderModel(
            OANDA,
            *DEFAULT_OANDA_BUDGET,
            frozenset(AssetType),
            oanda.instrument,
            OandaProvider.tickers_per_call,
        ),
    }


class ProviderEngine(Engine):
    """The event engine with one simulated budget store per provider; a request granted while
    its provider is down (`down(provider, t)`) fails after `outage_seconds`."""

    def __init__(
        self,
        models: dict[str, ProviderModel],
        call_seconds: float,
        down: Callable[[str, float], bool],
        outage_seconds: float,
    ) -> None:
        super().__init__(1, 60.0, call_seconds, 0.0, 1, False)
        self.stores = {n: SimStore(m.calls, m.window) for n, m in models.items()}
        self.granted: dict[str, list[float]] = {name: [] for name in models}
        self.down = down
        self.outage_seconds = outage_seconds

    def _poll(self, process: Process, call: Call, arrived: float) -> None:
        assert isinstance(call, Asked)
        self.store = self.stores[call.provider]
        super()._poll(process, call, arrived)

    def _grant(self, process: Process, call: Call, arrived: float) -> None:
        assert isinstance(call, Asked)
        self.grants.append(self.now)
        self.spent.append((self.now, call.serves))
        self.granted[call.provider].append(self.now)
        ok = not self.down(call.provider, self.now)
        done = self.now + (self.call_seconds if ok else self.outage_seconds)
        result = CallResult(ok, self.now - arrived, done, "" if ok else OUTAGE)
        self._step_later(process, result)

    def free(self, provider: str, caller: Caller) -> int:
        return self.stores[provider].free_slots(self.now, caller)


@dataclass
class Asking:
    """One symbol in one refresh: the providers left to ask, the weaker answers kept (data
    times of end-of-day answers), the providers that failed it, and its last error."""

    names: list[str]
    weak: list[tuple[float, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str = ""


class ChainSim:
    """The project's per-symbol choice and fallback on the simulated clock: each refresh asks
    each symbol's providers in `rules.fallback.order` (live first, then not recently failed,
    then with a slot free), over their closed circuits (`Circuit.is_open`; a provider alone on
    the list is asked whatever its circuit); an answer that is end of day while a live
    provider is left passes the symbol on, kept in case none does better (`sourcing._weakness`,
    `_last_resort`); an outage (every symbol asked failed, none by a budget wait) opens the
    provider's circuit (`_judge_health`); a provider that failed a symbol is held for it for
    `return_after` (`recently_failed`); a quote not newer than the stored one is not written.
    Cadences, queue and due gates as `simulate_ours` (schedules, `plan_refresh`, the drain
    sized on Polygon's free slots)."""

    def __init__(
        self,
        registry: Registry,
        models: dict[str, ProviderModel],
        cfg: argparse.Namespace,
        down: Callable[[str, float], bool] = lambda name, t: False,
    ) -> None:
        self.registry, self.models, self.cfg = registry, models, cfg
        self.start = PLAN_START - dt.timedelta(seconds=cfg.warmup)
        self.engine = ProviderEngine(models, cfg.call_seconds, down, cfg.outage_attempt_seconds)
        self.out = Outcome(calls=self.engine.grants, spent=self.engine.spent)
        self.queue = Queue(registry)
        self.stored: dict[str, Quote] = {}
        self.circuits: dict[str, Circuit] = {}
        #: Per symbol, per provider, when it last failed the symbol (its sync row `failed`).
        self.failed_at: dict[str, dict[str, float]] = {}
        self.busy = {"critical": False, "queue": False}
        self.served: list[tuple[float, str, str]] = []  # (completion, symbol, provider)
        direct = [p.every_seconds for p in registry.tiers.values() if p.refresh == "direct"]
        self.callers = {name: self._secondary(name, direct) for name in models}

    def _secondary(self, name: str, cadences: list[float]) -> Caller:
        """`_ProviderResource.caller`: non-critical runs leave what one refresh of the critical
        symbols that list the provider costs (Polygon: `Registry.secondary_caller`)."""
        model = self.models[name]
        if name == POLYGON:
            return self.registry.secondary_caller(
                "batch", frozenset(AssetType) if model.day_bars else frozenset()
            )
        listing = [s for s in self.registry.direct() if name in self.registry.chain(s)]
        cost = model.calls_per_group * math.ceil(len(listing) / model.per_call)
        return secondary_caller(cost, cadences)

    def at(self, t: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=t)

    # --- what a provider's answer brings, and the symbol's candidates ------------------------

    def data_time(self, spec: SymbolSpec, provider: str, done: float) -> float:
        """Live: the call's completion; day bars: the newest published session's close."""
        if not self.models[provider].day_bars:
            return done
        close = self.registry.newest_bar(spec, self.at(done)).close
        assert close is not None, "a bar is published every fortnight"
        return (close - self.start).total_seconds()

    def quote(self, spec: SymbolSpec, provider: str, data: float, done: float) -> Quote:
        day_bars = self.models[provider].day_bars
        return Quote(
            ticker=spec.polygon_ticker,
            data_time=self.at(data),
            source=provider,
            symbol=spec.symbol,
            fetched_at=self.at(done),
            timeframe=Timeframe.END_OF_DAY if day_bars else Timeframe.REAL_TIME,
            provider=provider,
        )

    def candidates(self, spec: SymbolSpec, busy: set[str], open_: set[str]) -> list[str]:
        """`Sourcing.candidates`: configured providers naming the symbol, in `order`; an open
        circuit is left out while another candidate is left."""
        return_after = self.registry.fallback.return_after_seconds
        failed = self.failed_at.get(spec.symbol, {})
        held = {n for n, when in failed.items() if self.engine.now - when < return_after}
        found = [
            Candidate(name, spec.asset_type in model.live, name in held, name in busy)
            for name in self.registry.chain(spec)
            if (model := self.models.get(name)) is not None and model.instrument(spec)
        ]
        closed = [c for c in found if c.name not in open_]
        return order(closed or found)

    def open_circuits(self) -> set[str]:
        now, retry = self.at(self.engine.now), self.registry.fallback.retry_after_seconds
        return {name for name, c in self.circuits.items() if c.is_open(now, retry)}

    def hold(self) -> None:
        """Start as a pipeline that already ran: each symbol holds what its first candidate
        gives at t=0 (a live quote of t=0, or the newest close)."""
        for spec in self.registry:
            first = self.candidates(spec, set(), set())[0]
            data = self.data_time(spec, first, 0.0)
            self.stored[spec.symbol] = self.quote(spec, first, data, 0.0)
            self.out.held[spec.symbol] = data

    # --- one refresh: `Sourcing.iter_fetch` --------------------------------------------------

    def refresh(
        self, specs: list[SymbolSpec], critical: bool
    ) -> Generator[Delay | Call, CallResult | None, list[SymbolSpec]]:
        """Each symbol asked of its providers in order until one serves it; the symbols no
        provider served (kept as failed)."""
        callers = {n: CRITICAL_CALLER if critical else c for n, c in self.callers.items()}
        busy = {name for name, c in callers.items() if self.engine.free(name, c) <= 0}
        open_ = self.open_circuits()
        asking = {s.symbol: Asking(self.candidates(s, busy, open_)) for s in specs}
        pending, failed = [s for s in specs if asking[s.symbol].names], []
        failed += [s for s in specs if not asking[s.symbol].names]
        while pending:
            later: list[SymbolSpec] = []
            for name, group in self._groups(pending, asking, open_).items():
                answers = yield from self._ask(name, group, callers[name], critical)
                self._health(name, answers, open_)
                for spec in group:
                    final = self._judge(spec, name, answers[spec.symbol], asking[spec.symbol])
                    if final is None:
                        later.append(spec)
                    elif not self._store(spec, final, asking[spec.symbol]):
                        failed.append(spec)
            pending = later
        return failed

    def _groups(
        self, pending: list[SymbolSpec], asking: dict[str, Asking], open_: set[str]
    ) -> dict[str, list[SymbolSpec]]:
        """The symbols by the provider asked next; a circuit opened meanwhile is passed over
        (recorded as that provider's failure, as `Refresh._record_fallbacks` does)."""
        groups: dict[str, list[SymbolSpec]] = {}
        for spec in pending:
            one = asking[spec.symbol]
            while len(one.names) > 1 and one.names[0] in open_:
                one.failed.append(one.names.pop(0))
            groups.setdefault(one.names[0], []).append(spec)
        return groups

    def _ask(
        self, name: str, group: list[SymbolSpec], caller: Caller, critical: bool
    ) -> Generator[Delay | Call, CallResult | None, dict[str, float | str]]:
        """Each symbol's answer from one provider: its data time, or the error."""
        model = self.models[name]
        retries = 0 if name == POLYGON and not critical else PROVIDER_MAX_RETRIES
        answers: dict[str, float | str] = {}
        for chunk in model.groups(group):
            error = ""
            for _ in range(model.calls_per_group):
                error = yield from self._attempts(model, chunk, caller, retries)
                if error:
                    break
            for spec in chunk:
                answers[spec.symbol] = error or self.data_time(spec, name, self.engine.now)
        return answers

    def _attempts(
        self, model: ProviderModel, chunk: list[SymbolSpec], caller: Caller, retries: int
    ) -> Generator[Delay | Call, CallResult | None, str]:
        """One request, retried after an outage as the clients do (each attempt paid)."""
        for attempt in range(retries + 1):
            result = yield Asked(caller, model.max_wait, serves(chunk), model.name)
            assert result is not None
            if result.ok:
                return ""
            if result.error != OUTAGE or attempt == retries:
                return result.error
            yield Delay(min(BACKOFF_SECONDS * 2**attempt, 30.0))
        return OUTAGE

    def _health(self, name: str, answers: dict[str, float | str], open_: set[str]) -> None:
        """`Sourcing._judge_health`: every symbol asked failed, none by its own error (a budget
        wait): an outage, the circuit opens for every process."""
        errors = [a for a in answers.values() if isinstance(a, str)]
        if answers and len(errors) == len(answers) and all(e == OUTAGE for e in errors):
            self.circuits[name] = Circuit(self.at(self.engine.now), OUTAGE)
            open_.add(name)

    def _judge(
        self, spec: SymbolSpec, name: str, answer: float | str, one: Asking
    ) -> tuple[float, str] | str | None:
        """`Sourcing._judge`: (data time, provider), an error, or None: ask the next."""
        if one.names and one.names[0] == name:
            one.names.pop(0)
        if isinstance(answer, float):
            later_live = any(spec.asset_type in self.models[n].live for n in one.names)
            if not (later_live and self.models[name].day_bars):
                return answer, name
            one.weak.append((answer, name))
        else:
            one.error = answer
        one.failed.append(name)
        if one.names:
            return None
        return max(one.weak) if one.weak else one.error

    def _store(self, spec: SymbolSpec, final: tuple[float, str] | str, one: Asking) -> bool:
        """The sync rows (failed for each provider that did not serve it, success for the one
        that did), and the quote unless the stored one is as new."""
        now = self.engine.now
        failed = self.failed_at.setdefault(spec.symbol, {})
        provider = final[1] if isinstance(final, tuple) else None
        for name in one.failed:
            if name != provider:
                failed[name] = now
        if not isinstance(final, tuple):
            return False
        failed.pop(final[1], None)
        data, stored = final[0], self.stored.get(spec.symbol)
        if stored is None or self.at(data) > stored.data_time:
            self.stored[spec.symbol] = self.quote(spec, final[1], data, now)
            self.out.updated([spec], now, data)
            self.served.append((now, spec.symbol, final[1]))
        return True

    # --- cadences: schedules, the queue and its drain ----------------------------------------

    def due(self, specs: Iterable[SymbolSpec]) -> list[SymbolSpec]:
        """`schedules.due_symbols` and `plan_refresh`: market open, and `Registry.due`."""
        at = self.at(self.engine.now)
        trading = self.registry.trading(specs, at)
        return [s for s in trading if self.registry.due(s, self.stored.get(s.symbol), at)]

    def settle(self, specs: list[SymbolSpec], failed: list[SymbolSpec]) -> None:
        for spec in failed:
            self.queue.fail(spec, OUTAGE, self.engine.now)
        self.queue.complete([s for s in specs if s not in failed])

    def critical_run(self, selected: list[SymbolSpec]) -> Process:
        yield Delay(self.cfg.run_start)
        specs = self.due(selected)
        failed = yield from self.refresh(specs, critical=True)
        self.settle(specs, failed)
        self.busy["critical"] = False

    def critical_tick(self) -> None:
        if self.busy["critical"]:
            self.out.critical_skipped += 1
            return
        selected = self.due(self.registry.direct())
        if not selected:
            self.out.idle_ticks += 1
            return
        self.busy["critical"] = True
        self.engine.spawn(self.critical_run(selected))

    def enqueue_tick(self, tier: Tier) -> None:
        self.queue.enqueue(self.due(self.registry.in_tier(tier)), self.engine.now)

    def queue_run(self, claimed: list[QueueItem]) -> Process:
        yield Delay(self.cfg.run_start)
        specs = [self.queue.specs[item.symbol] for item in claimed]
        trading = self.registry.trading(specs, self.at(self.engine.now))
        for spec in specs:
            if spec not in trading:  # closed markets go back to the queue
                item = self.queue.items[spec.symbol]
                self.queue.items[spec.symbol] = dataclasses.replace(item, status=QUEUED)
        still = self.due(trading)
        self.queue.complete([spec for spec in trading if spec not in still])
        failed = yield from self.refresh(still, critical=False)
        self.settle(still, failed)
        self.busy["queue"] = False

    def drain_tick(self) -> None:
        """`sensors.drain_tick`: sized on Polygon's free slots (batch: one claim of 250)."""
        if self.busy["queue"] or not self.queue.waiting():
            return
        polygon = self.models[POLYGON]
        slots = self.engine.free(POLYGON, self.callers[POLYGON])
        if slots <= 0:
            return
        calls, per_call = claim_size(
            "batch", slots, polygon.calls, polygon.window, MAX_BUDGET_WAIT_SECONDS
        )
        open_now = {
            s.symbol for s in self.registry.trading(self.registry, self.at(self.engine.now))
        }
        items = [item for item in self.queue.items.values() if item.symbol in open_now]
        claimed = next_batch(items, calls, per_call)
        if not claimed:
            return
        for item in claimed:
            self.queue.items[item.symbol] = dataclasses.replace(item, status=IN_FLIGHT)
        self.busy["queue"] = True
        self.engine.spawn(self.queue_run(claimed))

    def run(self, what: str) -> Outcome:
        """The whole span; then every provider's budget checked (`check_budget`)."""
        self.hold()
        for policy in self.registry.tiers.values():
            if not self.registry.in_tier(policy.tier):
                continue
            if policy.refresh == "direct":
                action: Callable[[], None] = self.critical_tick
            else:
                action = functools.partial(self.enqueue_tick, policy.tier)
            self.engine.every(policy.every_seconds, SCHEDULE, action)
        self.engine.every(self.registry.queue.drain_every_seconds, SENSOR, self.drain_tick)
        self.engine.run(self.cfg.span)
        for name, model in self.models.items():
            check_budget(self.engine.granted[name], model.calls, model.window, f"{what} {name}")
        return self.out

    def calls(self, name: str, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.engine.granted[name])


def provider_symbol_set(base: Registry, count: int) -> Registry:
    """The bench's symbol set (`symbol_set`), its synthetic forex symbols given three-letter
    base codes (QAA, QAB, ...), so OANDA's instrument rule names them as it names real pairs."""
    registry = symbol_set(base, count)
    if registry is base:
        return base
    specs = []
    for spec in registry:
        if spec.symbol.startswith("SYN"):
            i = int(spec.symbol[3:])
            code = "Q" + chr(65 + i // 26 % 26) + chr(65 + i % 26)
            spec = dataclasses.replace(spec, base_asset=code)
        specs.append(spec)
    return dataclasses.replace(registry, symbols=tuple(specs))


@dataclass(frozen=True)
class ProviderRow:
    symbols: int
    scenario: str
    stats: list[AgeStats]
    calls_per_day: dict[str, float]


FREE_SCENARIOS = (
    ("Polygon alone, free plan", ""),
    ("free accounts, POLYGON_PLAN=auto", "auto"),
    ("free accounts, POLYGON_PLAN=free", "free"),
)


def free_accounts(registry: Registry, cfg: argparse.Namespace) -> list[ProviderRow]:
    """Polygon's free plan alone (the plan scenarios' model, `simulate_plan`), then the default
    chains with free Kraken and OANDA accounts, on the default `POLYGON_PLAN` (auto, which
    learns the free plan) and on `POLYGON_PLAN=free` (as the end-to-end test configures it)."""
    alone = simulate_plan(registry, "free", "batch", "ours", cfg)
    rows = [
        ProviderRow(
            len(registry), FREE_SCENARIOS[0][0], alone.stats, {POLYGON: alone.calls_per_day}
        )
    ]
    days = (cfg.span - cfg.warmup) / DAY
    for label, plan in FREE_SCENARIOS[1:]:
        live = frozenset({KRAKEN, OANDA})  # the free live providers, configured
        planned = dataclasses.replace(registry, plan=plan, live_providers=live)
        sim = ChainSim(planned, provider_models(False, cfg), cfg)
        out = sim.run(f"{label}, {len(registry)} symbols")
        stats = [age_stats(t, planned.in_tier(t), out, cfg) for t in Tier if planned.in_tier(t)]
        per_day = {n: sim.calls(n, cfg.warmup, cfg.span) / days for n in sim.models}
        rows.append(ProviderRow(len(registry), label, stats, per_day))
    return rows


def plain_table(header: list[str], table: list[list[str]], right: set[int]) -> list[str]:
    """Columns padded to their widths; an empty row is a blank line."""
    widths = [max(len(h), *(len(r[i]) for r in table if r)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) if r else "" for r in table]


def render_providers(rows: list[ProviderRow]) -> list[str]:
    header = ["symbols", "scenario", "tier", "n", "age p50", "p95", "max", "never", "calls/day"]
    table: list[list[str]] = []
    previous = None
    for row in rows:
        if previous is not None and row.symbols != previous:
            table.append([])
        previous = row.symbols
        for i, st in enumerate(row.stats):
            calls = ", ".join(f"{n} {number(round(c, 1))}" for n, c in row.calls_per_day.items())
            table.append(
                [
                    str(row.symbols) if i == 0 else "",
                    row.scenario if i == 0 else "",
                    st.tier.value,
                    str(st.symbols),
                    age_text(st.p50),
                    age_text(st.p95),
                    age_text(st.worst),
                    str(st.never) if st.never else "-",
                    calls if i == 0 else "",
                ]
            )
    return plain_table(header, table, {0, 3, 4, 5, 6, 7})


def free_accounts_verdict(rows: list[ProviderRow], registry: Registry) -> str:
    """One line: every tier within its `stale_after` on the default plan; Polygon alone; and
    what `POLYGON_PLAN=free` does to the live providers' symbols."""
    by = {(r.symbols, r.scenario): r for r in rows}
    sizes = sorted({r.symbols for r in rows})
    auto = [by[(n, FREE_SCENARIOS[1][0])] for n in sizes]
    alone = [by[(n, FREE_SCENARIOS[0][0])] for n in sizes]
    free = [by[(n, FREE_SCENARIOS[2][0])] for n in sizes]
    ok = all(st.worst <= registry.stale_after(st.tier) for r in auto for st in r.stats)
    gated = any(st.p95 > registry.stale_after(st.tier) for r in free for st in r.stats)
    crit = auto[0].stats[0]
    return (
        f"verdict: with free Kraken and OANDA accounts every tier's max data age is within its"
        f" stale_after at {'/'.join(map(str, sizes))} symbols (critical p95"
        f" {age_text(crit.p95)}, max {age_text(crit.worst)}, against p95"
        f" {age_text(alone[0].stats[0].p95)} on Polygon's free plan alone):"
        f" {'OK' if ok else 'FAIL'}; on POLYGON_PLAN=free: "
        + (
            f"FAIL, critical p95 {age_text(free[0].stats[0].p95)}: Registry.due gates every"
            " symbol on Polygon's day bars, whoever serves it"
            if gated
            else "OK"
        )
    )


def outage_registry(base: Registry, fallback: bool) -> Registry:
    """A paid Polygon listed first for the critical symbols (`[polygon, oanda]` for forex and
    metals, `[polygon, kraken]` for crypto), or alone (no fallback); the rest keep the defaults."""
    specs = []
    for spec in base:
        if spec.tier is Tier.CRITICAL:
            other = KRAKEN if spec.asset_type is AssetType.CRYPTO else OANDA
            chain = (POLYGON, other) if fallback else (POLYGON,)
            spec = dataclasses.replace(spec, providers=chain)
        specs.append(spec)
    live = frozenset({KRAKEN, OANDA})  # configured beside the paid Polygon
    return dataclasses.replace(base, symbols=tuple(specs), plan="paid", live_providers=live)


def age_at(out: Outcome, symbol: str, t: float) -> float:
    """The symbol's data age at `t`: t less the newest data time completed by t."""
    data = out.held.get(symbol, 0.0)
    for done, data_time in out.data.get(symbol, []):
        if done <= t:
            data = max(data, data_time)
    return t - data


def serving_at(sim: ChainSim, symbol: str, t: float) -> str:
    served = [p for when, s, p in sim.served if s == symbol and when <= t]
    return served[-1] if served else sim.stored[symbol].provider


@dataclass
class OutageRun:
    fallback: bool
    sim: ChainSim
    whole: AgeStats
    during: AgeStats


def outage_run(base: Registry, fallback: bool, cfg: argparse.Namespace) -> OutageRun:
    """One span with Polygon down from `cfg.outage_start` for `cfg.outage_minutes`."""
    registry = outage_registry(base, fallback)
    start, end = cfg.outage_start, cfg.outage_end

    def down(name: str, t: float) -> bool:
        return name == POLYGON and start <= t < end

    sim = ChainSim(registry, provider_models(True, cfg), cfg, down)
    out = sim.run(f"Polygon down, {'with' if fallback else 'without'} fallback")
    critical = registry.in_tier(Tier.CRITICAL)
    window = argparse.Namespace(**vars(cfg))
    window.warmup, window.span = start, end + registry.fallback.return_after_seconds
    whole = age_stats(Tier.CRITICAL, critical, out, cfg)
    return OutageRun(fallback, sim, whole, age_stats(Tier.CRITICAL, critical, out, window))


def render_outage_timeline(runs: list[OutageRun], cfg: argparse.Namespace) -> list[str]:
    """The critical symbols' largest data age, and who served them, every 5 minutes from 10
    minutes before the outage to 25 after it ends."""
    header = ["t (min from outage start)"]
    for run in runs:
        kind = "with fallback" if run.fallback else "without fallback"
        header += [f"max age, {kind}", f"served by, {kind}"]
    table = []
    step = 300.0
    t = cfg.outage_start - 2 * step
    while t <= cfg.outage_end + 5 * step:
        cells = [f"{(t - cfg.outage_start) / 60:+.0f}"]
        for run in runs:
            critical = run.sim.registry.in_tier(Tier.CRITICAL)
            worst = max(age_at(run.sim.out, s.symbol, t) for s in critical)
            served = sorted({serving_at(run.sim, s.symbol, t) for s in critical})
            cells += [age_text(int(worst)), ", ".join(served)]
        table.append(cells)
        t += step
    return plain_table(header, table, {0, 1, 3})


def render_outage_summary(runs: list[OutageRun], cfg: argparse.Namespace) -> list[str]:
    header = ["scenario", "crit age p95", "max", "during p95", "during max", "calls"]
    header += ["polygon asked while down", "back on polygon after"]
    table = []
    for run in runs:
        sim = run.sim
        calls = ", ".join(
            f"{name} {sim.calls(name, 0.0, cfg.span)} (budget {m.calls}/{m.window:g} s)"
            for name, m in sim.models.items()
        )
        table.append(
            [
                "with fallback" if run.fallback else "without fallback (Polygon alone)",
                age_text(run.whole.p95),
                age_text(run.whole.worst),
                age_text(run.during.p95),
                age_text(run.during.worst),
                calls,
                str(sim.calls(POLYGON, cfg.outage_start, cfg.outage_end)),
                back_on_polygon(sim, cfg),
            ]
        )
    return plain_table(header, table, {1, 2, 3, 4, 6})


def back_on_polygon(sim: ChainSim, cfg: argparse.Namespace) -> str:
    """Minutes from Polygon's return until every critical symbol is served by it again."""
    latest = 0.0
    for spec in sim.registry.in_tier(Tier.CRITICAL):
        back = [
            w for w, s, p in sim.served if s == spec.symbol and p == POLYGON and w >= cfg.outage_end
        ]
        if not back:
            return "never in the span"
        latest = max(latest, back[0])
    return f"{(latest - cfg.outage_end) / 60:.1f} min"


def longest_on_fallback(sim: ChainSim) -> float:
    """The longest a critical symbol was stored from a fallback without a Polygon quote."""
    longest = 0.0
    for spec in sim.registry.in_tier(Tier.CRITICAL):
        since = None
        for when, symbol, provider in sim.served:
            if symbol != spec.symbol:
                continue
            if provider != POLYGON and since is None:
                since = when
            elif provider == POLYGON and since is not None:
                longest, since = max(longest, when - since), None
    return longest


def outage_verdict(runs: list[OutageRun], registry: Registry, cfg: argparse.Namespace) -> str:
    with_, without = (next(r for r in runs if r.fallback is f) for f in (True, False))
    cadence = registry.tiers[Tier.CRITICAL].every_seconds
    stale_after = registry.stale_after(Tier.CRITICAL)
    ok = (
        with_.during.worst <= stale_after
        and with_.during.p95 <= cadence
        and without.during.worst >= cfg.outage_minutes * 60
    )
    on_fallback = longest_on_fallback(with_.sim)
    return (
        f"verdict: Polygon down {cfg.outage_minutes:g} min: with fallback the critical data age"
        f" stays at p95 {age_text(with_.during.p95)} <= the {age_text(int(cadence))} cadence, max"
        f" {age_text(with_.during.worst)} <= stale_after {age_text(int(stale_after))}; without,"
        f" max {age_text(without.during.worst)}: {'OK' if ok else 'FAIL'}; no provider over its"
        f" budget (check_budget); on a fallback up to {on_fallback / 60:.1f} min (the"
        f" primary_provider check fails after alert_after,"
        f" {age_text(int(registry.fallback.alert_after_seconds))})"
    )


def free_accounts_section(base: Registry, cfg: argparse.Namespace) -> None:
    """Section: free accounts on every provider against Polygon's free plan alone."""
    sec = argparse.Namespace(**vars(cfg))
    sec.span = cfg.warmup + cfg.days * DAY
    print()
    print("Free accounts on every provider against Polygon's free plan alone")
    print(
        f"measured {PLAN_START:%a %Y-%m-%d %H:%M} UTC for {cfg.days:g} day(s) after a"
        f" {cfg.warmup_minutes:g} min warm-up; forex and crypto trade all day then, so these"
        " ages in wall time are open-market time. Budgets: Polygon free"
        f" {cfg.calls}/{cfg.window:g} s (day bars, one grouped-daily call per market), Kraken"
        f" {DEFAULT_KRAKEN_BUDGET[0]}/{DEFAULT_KRAKEN_BUDGET[1]:g} s (2 calls per"
        f" {KrakenProvider.tickers_per_call} pairs), OANDA"
        f" {DEFAULT_OANDA_BUDGET[0]}/{DEFAULT_OANDA_BUDGET[1]:g} s (1 call per"
        f" {OandaProvider.tickers_per_call} instruments)"
    )
    for line in PROVIDER_ASSUMPTIONS:
        print(f"  {line}")
    print()
    rows: list[ProviderRow] = []
    for count in cfg.provider_symbols:
        rows += free_accounts(provider_symbol_set(base, count), sec)
    for text in render_providers(rows):
        print(text)
    print()
    print(free_accounts_verdict(rows, base))


def outage_section(base: Registry, cfg: argparse.Namespace) -> None:
    """Section: a paid Polygon first for the critical symbols, down for an hour."""
    sec = argparse.Namespace(**vars(cfg))
    sec.span = cfg.warmup + cfg.outage_hours * 3600
    sec.outage_start = cfg.warmup + cfg.outage_at_minutes * 60
    sec.outage_end = sec.outage_start + cfg.outage_minutes * 60
    fallback = base.fallback
    print()
    print(
        f"Polygon down for {cfg.outage_minutes:g} minutes: the critical symbols with and"
        " without fallback"
    )
    print(
        f"{base.source}; a paid Polygon (live, {cfg.paid_polygon_calls}/{cfg.window:g} s) first"
        " for the critical symbols: [polygon, oanda] for forex and metals, [polygon, kraken] for"
        " crypto (without fallback: [polygon]); the rest on the default chains. Polygon"
        f" unreachable from {cfg.outage_at_minutes:g} min into the measured"
        f" {cfg.outage_hours:g} h; each attempt then fails after"
        f" {cfg.outage_attempt_seconds:g} s and is retried twice (1 s, 2 s backoff), each attempt"
        f" paid; retry_after {fallback.retry_after_seconds:g} s, return_after"
        f" {fallback.return_after_seconds:g} s"
    )
    print()
    runs = [outage_run(base, f, sec) for f in (False, True)]
    for text in render_outage_summary(runs, sec):
        print(text)
    print()
    for text in render_outage_timeline(runs, sec):
        print(text)
    print()
    print(
        "crit age: the critical tier's data age over the measured span; during: from the"
        " outage's start to return_after past its end; calls: requests each provider was sent"
        " in the whole run, and its budget"
    )
    print(outage_verdict(runs, base, sec))


PROVIDER_ASSUMPTIONS = (
    "model: rules.fallback.order, Candidate and Circuit choose and skip providers per symbol;"
    " an end-of-day answer passes a symbol on while a live provider is left, and is kept if"
    " none does better; an outage (every symbol asked failed) opens the circuit for"
    " retry_after; a provider that failed a symbol is asked after the others for return_after;"
    " a quote no newer than the stored one is not written",
    "cadences, the queue and the due gates as the snapshot model (Registry.trading,"
    " Registry.due, plan_enqueue, next_batch); the drain is sized on Polygon's free slots as"
    " sensors.drain_tick is; Kraken's and OANDA's non-critical runs leave a critical refresh's"
    " calls (their resources' caller); a call takes --call-seconds; live data is as old as its"
    " call's completion; nothing answers stale data; the drain's top-up of stale symbols is not"
    " modelled",
    "synthetic symbols: the bench's larger sets, forex, named by three-letter codes (QAA, ...)"
    " so OANDA's instrument rule serves them",
)


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    """The two provider sections' options."""
    parser.add_argument(
        "--provider-symbols",
        type=int,
        nargs="*",
        default=None,
        help="free accounts section: symbol sets (default: as --plan-symbols; none: skip it)",
    )
    parser.add_argument(
        "--outage-minutes", type=float, default=60.0, help="Polygon down this long (0: skip)"
    )
    parser.add_argument(
        "--outage-at-minutes", type=float, default=60.0, help="into the measured span"
    )
    parser.add_argument("--outage-hours", type=float, default=3.0, help="outage: measured span")
    parser.add_argument(
        "--outage-attempt-seconds",
        type=float,
        default=5.0,
        help="how long a request to a provider that is down takes to fail (default 5)",
    )
    parser.add_argument(
        "--paid-polygon-calls",
        type=int,
        default=100,
        help="a paid Polygon's budget per --window (default 100)",
    )


def provider_sections(base: Registry, cfg: argparse.Namespace) -> None:
    """Free accounts on every provider, then an hour of Polygon's outage; each checks every
    provider's budget (`check_budget` raises `BudgetExceeded`)."""
    if cfg.provider_symbols is None:
        cfg.provider_symbols = cfg.plan_symbols or cfg.symbols
    if cfg.provider_symbols:
        free_accounts_section(base, cfg)
    if cfg.outage_minutes > 0:
        outage_section(base, cfg)
    if cfg.provider_symbols or cfg.outage_minutes > 0:
        print()
        print("budget check passed for each provider in the provider sections")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hours", type=float, default=6.0, help="simulated span (default 6)")
    parser.add_argument("--quick", action="store_true", help="simulate 1 hour instead")
    parser.add_argument("--symbols", type=int, nargs="+", default=[9, 100, 500])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--designs",
        nargs="+",
        choices=["ours", "reference", "ref-overlap"],
        default=["ours", "reference", "ref-overlap"],
    )
    parser.add_argument("--calls", type=int, default=5, help="budget: calls per window")
    parser.add_argument("--window", type=float, default=60.0, help="budget window in seconds")
    parser.add_argument("--warmup-minutes", type=float, default=30.0)
    parser.add_argument(
        "--run-start", type=float, default=5.0, help="seconds from launch to a run's first call"
    )
    parser.add_argument("--call-seconds", type=float, default=0.5, help="one HTTP call's latency")
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="probability that a call fails (0..1)"
    )
    parser.add_argument(
        "--reference-drain-symbols",
        type=int,
        default=REFERENCE_DRAIN_SYMBOLS,
        help="symbols the reference drain pops per tick (default 2)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--days", type=float, default=1.0, help="plan scenarios: measured days (default 1)"
    )
    parser.add_argument(
        "--plan-symbols",
        type=int,
        nargs="*",
        default=None,
        help="plan scenarios: symbol sets (default: as --symbols; none given: skip them)",
    )
    parser.add_argument("--plans", nargs="+", choices=PLANS, default=list(PLANS))
    parser.add_argument(
        "--max-bar-calls",
        type=float,
        default=2.0,
        help="free plan: most calls/day per tier and market (default 2)",
    )
    parser.add_argument(
        "--secondary-p95-limit",
        type=float,
        default=1800.0,
        help="paid plan: most p95 data age of a secondary tier, seconds (default 1800)",
    )
    add_provider_arguments(parser)
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.hours = 1.0
    cfg.span = cfg.hours * 3600.0
    cfg.warmup = cfg.warmup_minutes * 60.0
    if cfg.warmup >= cfg.span:
        parser.error("the warm-up must be shorter than the simulated span")
    if not 0.0 <= cfg.failure_rate < 1.0:
        parser.error("--failure-rate must be in [0, 1)")

    started = time.perf_counter()
    # Polygon alone unless a section says otherwise (the provider sections give their own)
    base = dataclasses.replace(load_registry(), live_providers=frozenset())
    cadence = ", ".join(
        f"{t.value} {p.refresh} every {format_duration(p.every_seconds)}"
        for t, p in base.tiers.items()
    )
    queue = base.queue
    print("Staleness under a shared budget: simulated clock, no sleeping, no HTTP, no database")
    print(
        f"budget {cfg.calls} calls / {cfg.window:g} s; span {cfg.hours:g} h, measured after a"
        f" {cfg.warmup_minutes:g} min warm-up; run start {cfg.run_start:g} s (ours only);"
        f" call {cfg.call_seconds:g} s; failure rate {cfg.failure_rate:g}"
    )
    print(
        f"cadences: {cadence}; drain every {format_duration(queue.drain_every_seconds)},"
        f" queue max {queue.max_size}, max retries {queue.max_retries}"
    )
    print(f"9 symbols = {base.source}; larger sets = its critical symbols + synthetic ones")
    if dict(base.tiers) != DEFAULT_TIERS or queue != QueuePolicy():
        print("note: the symbols file changes the default cadences; synthetic sets use defaults")
    lookahead = claim_size("per_ticker", 0, cfg.calls, cfg.window, MAX_BUDGET_WAIT_SECONDS)[0]
    for mode in cfg.modes:
        caller = base.secondary_caller(mode)
        claim = "1 call (up to 250 symbols)" if mode == "batch" else f"free + {lookahead} calls"
        print(
            f"  {mode}: critical refresh costs {refresh_cost(base.direct(), mode)}"
            f" call(s); ours: queue runs keep {caller.reserve} of {cfg.calls} free for the next"
            f" critical refresh, expected {caller.critical_gap:g} s after the last (critical_gap);"
            f" a drain claims {claim}"
        )
    print()

    rows: list[Row] = []
    for count in cfg.symbols:
        registry = symbol_set(base, count)
        for mode in cfg.modes:
            for design in cfg.designs:
                rows.append(simulate(registry, mode, design, cfg))
    for text in render(rows):
        print(text)
    extra = notes(rows)
    if extra:
        print()
        print("notes:")
        for text in extra:
            print(text)
    print()
    print(
        "worst/p95: staleness in seconds (and minutes), sampled every simulated second; never:"
        " symbols not updated once in the span; crit waits: critical refreshes that waited for a"
        " slot / all critical refreshes; calls/h: after the warm-up."
    )
    total_calls = sum(len(row.outcome.calls) for row in rows)
    ok = True
    if cfg.plan_symbols is None:
        cfg.plan_symbols = cfg.symbols
    if cfg.plan_symbols:
        plan_rows, ok = plan_section(base, cfg)
        total_calls += sum(len(row.outcome.calls) for row in plan_rows)
        rows_count = len(rows) + len(plan_rows)
    else:
        rows_count = len(rows)
    provider_sections(base, cfg)
    print()
    print(
        f"budget check passed: no simulated design made more than {cfg.calls} calls in any"
        f" {cfg.window:g} s ({total_calls} calls in {rows_count} simulations)"
    )
    print(f"simulated in {time.perf_counter() - started:.1f} s of wall time")
    del ok  # the verdicts are figures to read; only the budget check stops the bench
    return 0


def plan_section(base: Registry, cfg: argparse.Namespace) -> tuple[list[PlanRow], bool]:
    """The plan scenarios: ours and the seed's fixed cadences, on the free and the paid plan."""
    plan_cfg = argparse.Namespace(**vars(cfg))
    plan_cfg.span = cfg.warmup + cfg.days * DAY
    first = PLAN_START
    last = PLAN_START + dt.timedelta(days=cfg.days)
    print()
    print("Data age and calls per day on each plan, on the market's calendar")
    print(
        f"measured {first:%a %Y-%m-%d %H:%M} to {last:%a %Y-%m-%d %H:%M} UTC"
        f" ({cfg.days:g} day(s)) after a {cfg.warmup_minutes:g} min warm-up;"
        f" budget {cfg.calls} calls / {cfg.window:g} s; publication delay"
        f" {format_duration(base.publication_delay.total_seconds())}; markets from MarketHours()"
        f" (forex: {base.market_hours.forex.timezone} week, crypto: always)"
    )
    print(
        "  free: every market on day bars; a cadence spends a call only when Registry.due says a"
        " newer bar is published (ours), or on every tick (seed); a refresh costs one"
        " grouped-daily call per market, one per index ticker"
    )
    print(
        "  paid: snapshots, live: a quote's data time is its call's completion; ours gates on"
        " Registry.trading and Registry.due (always due on snapshots)"
    )
    for mode in cfg.modes:
        for plan in cfg.plans:
            bars = frozenset(AssetType) if plan == "free" else frozenset()
            caller = base.secondary_caller(mode, bars)
            print(
                f"  {plan}, {mode}: critical refresh costs {base.critical_reserve(mode, bars)}"
                f" call(s); queue runs keep {caller.reserve} free (critical_reserve)"
            )
    print()
    rows = []
    for count in cfg.plan_symbols:
        registry = symbol_set(base, count)
        for plan in cfg.plans:
            for mode in cfg.modes:
                for design in ("ours", "reference"):
                    rows.append(simulate_plan(registry, plan, mode, design, plan_cfg))
    for text in render_plans(rows):
        print(text)
    print()
    print(
        "age p50/p95: data age in seconds of wall time (not open-market time; forex and crypto"
        " trade all day on these days), sampled every simulated second; on the free plan the"
        " age of the session close, on the paid plan the time since the fetching call."
        " calls/day: calls that fetched the tier's symbols (a call serving two tiers or markets"
        " counts in each); per market/day: the same per market; unused/day: budget minus all calls."
        " Seed: the reference design's fixed cadences (serial drain)."
    )
    print()
    lines, passed, failed = verdicts(rows, cfg)
    for text in lines:
        print(text)
    print(f"verdicts: {passed} OK, {failed} FAIL")
    return rows, failed == 0


if __name__ == "__main__":
    raise SystemExit(main())
