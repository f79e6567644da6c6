"""Benchmark: what a quote refresh costs in Polygon calls and time, and what a budget slot costs.

    .venv/bin/python bench/bench_refresh.py [--redis-url URL] [--postgres-url URL] [--quick]

Prints plain-text tables; asserts nothing. Everything runs on loopback: the project's Polygon
simulator in this process, the CLI in a subprocess, and the budget stores given by the URLs
(skipped when unreachable; pass an empty string to skip on purpose). Every temporary file,
database and Redis key it makes is removed before it exits. See bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import logging
import math
import multiprocessing as mp
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from assets_pipeline.budget.fairness import decide, free_slots
from assets_pipeline.budget.interface import Refusal
from assets_pipeline.budget.limiter import WINDOW_MARGIN_SECONDS, BudgetStats, PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import (
    DEFAULT_SYMBOLS_FILE,
    AssetType,
    SymbolSpec,
    Tier,
    load_registry,
)
from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.database import Engines, migrate_database, normalize_url
from assets_pipeline.polygon.client import V3_MAX_TICKERS, FetchResult, PolygonClient
from assets_pipeline.simulator import server as simulator_server
from assets_pipeline.simulator.server import PolygonSimulator

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "assets-pipeline"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_KEY = "bench-key"
#: This benchmark's engines, one per database URL, each disposed of when it is done with it.
ENGINES = Engines()
get_engine = ENGINES.get
dispose_engine = ENGINES.dispose

#: The generous budget of section 1a: wide enough that no refresh ever waits.
GENEROUS_CALLS, GENEROUS_WINDOW = 1000, 60.0
#: The free plan, and the compressed window section 1b runs it in (2 s instead of 60 s).
FREE_CALLS, FREE_WINDOW, COMPRESSED_WINDOW = 5, 60.0, 2.0
SCALE = FREE_WINDOW / COMPRESSED_WINDOW

#: Section 3: a limit no run reaches, so acquire() never waits and only the store is timed.
STORE_LIMIT, STORE_WINDOW = 100_000, 60.0
STORE_WARMUP = 5
PROCESSES = 4

#: The simulator's catalogue: every ordered pair of these codes is a forex ticker, plus crypto.
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "NZD", "XAU", "XAG")
CRYPTO = ("X:BTCUSD", "X:ETHUSD", "X:SOLUSD", "X:LTCUSD", "X:XRPUSD", "X:DOGEUSD")

#: Environment variables the CLI reads that must not leak in from the caller's shell.
CLI_ENV_DROP = tuple(v for v in VARIABLES if v != "ASSETS_PIPELINE_HOME")


#: The client logs a plan's 403 fallback (batch refused) as a warning; keep it out of the tables.
QUIET = logging.getLogger("bench_refresh.client")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

#: The simulator's request handler and its shipped TCP_NODELAY setting (see simulator_nodelay).
_HANDLER = getattr(simulator_server, "_Handler", None)
SHIPPED_NODELAY = getattr(_HANDLER, "disable_nagle_algorithm", None)


# --- helpers ---------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with its password hidden, safe to print."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL must still not leak
        return "<unparseable database URL>"


def pct(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def table(headers, rows, note=None):
    """Print `rows` under `headers` ('A|B|C'), the first column left-aligned, then the notes."""
    cells = [headers.split("|")] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row):
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    if note:
        for text in note if isinstance(note, list) else [note]:
            print(f"  {text}")
    print()


def section(title):
    print(title)
    print("=" * len(title))


class MemoryBudgetStore:
    """The BudgetStore protocol in process memory: the same sliding window (and margin) and the
    same fairness rule (`fairness.decide`, `fairness.free_slots`) as the real stores, without their
    I/O, so section 1 times the client, HTTP and parsing only."""

    backend = "memory"

    def __init__(self):
        self._calls = []  # call times in the window, sorted (monotonic clock, appended in order)
        self._last_critical_at = 0.0
        self._paused_until = 0.0
        self._total_calls = 0
        self._total_waits = 0
        self._refusals = {}

    def refuse(self, feature, message):
        self._refusals[feature] = (time.time(), message)

    def refusal(self, feature, max_age):
        found = self._refusals.get(feature)
        if found is None or time.time() - found[0] > max_age:
            return None
        return Refusal(feature, dt.datetime.fromtimestamp(found[0], dt.UTC), found[1])

    def _window(self, now, window):
        """Drop the calls that left the window; return the rest (sorted)."""
        self._calls = self._calls[bisect.bisect_right(self._calls, now - window) :]
        return self._calls

    def try_acquire(self, limit, window, caller):
        now = time.monotonic()
        window += WINDOW_MARGIN_SECONDS
        if self._paused_until > now:
            return self._paused_until - now
        times = self._window(now, window)
        wait = decide(now, times, limit, window, caller, self._last_critical_at)
        if wait > 0:
            return wait
        bisect.insort(self._calls, now)
        self._total_calls += 1
        if caller.critical:
            self._last_critical_at = now
        return 0.0

    def free_slots(self, limit, window, caller):
        now = time.monotonic()
        window += WINDOW_MARGIN_SECONDS
        if self._paused_until > now:
            return 0
        times = self._window(now, window)
        return free_slots(now, times, limit, window, caller, self._last_critical_at)

    def pause(self, seconds):
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def record_wait(self):
        self._total_waits += 1

    def stats(self, limit, window):
        used = len(self._window(time.monotonic(), window + WINDOW_MARGIN_SECONDS))
        return BudgetStats(
            limit=limit,
            window_seconds=window,
            remaining=max(limit - used, 0),
            reset_at=None,
            paused_until=None,
            total_calls=self._total_calls,
            total_waits=self._total_waits,
            backend=self.backend,
        )


# --- 1. refresh cost -------------------------------------------------------------------------


@contextlib.contextmanager
def simulator_nodelay(enabled):
    """Set TCP_NODELAY on the in-process simulator's sockets, in this process only (no file is
    changed). As shipped, http.server writes a reply's headers and body in two sends; with
    Nagle's algorithm on, the second waits for the client's delayed ACK (about 40 ms on Linux
    loopback), which would swamp the cost of the client itself."""
    if _HANDLER is None or SHIPPED_NODELAY is None:
        yield
        return
    _HANDLER.disable_nagle_algorithm = enabled
    try:
        yield
    finally:
        _HANDLER.disable_nagle_algorithm = SHIPPED_NODELAY


def spec(symbol, ticker):
    asset_type = AssetType.CRYPTO if ticker.startswith("X:") else AssetType.FOREX
    body = ticker[2:]
    return SymbolSpec(
        symbol=symbol,
        polygon_ticker=ticker,
        asset_type=asset_type,
        tier=Tier.LOW,
        name=ticker,
        base_asset=body[:-3],
        quote_asset=body[-3:],
        price_precision=5,
    )


def known_tickers():
    forex = [f"C:{b}{q}" for b in CURRENCIES for q in CURRENCIES if b != q]
    return forex + list(CRYPTO)


def synthetic(n):
    """n symbols over the simulator's 96 known tickers, each ticker once before any repeats."""
    universe = known_tickers()
    return [spec(f"BENCH{i:04d}", universe[i % len(universe)]) for i in range(n)]


def synthetic_unknown(n):
    """n symbols, n distinct tickers: the 96 known ones, then tickers the simulator does not
    know (answered NOT_FOUND / 404), the only way past 96 distinct with this catalogue."""
    universe = known_tickers()
    extra = [f"C:ZZ{i:04d}" for i in range(n - len(universe))]
    return [spec(f"BENCH{i:04d}", t) for i, t in enumerate((universe + extra)[:n])]


def distinct(specs):
    return len({s.polygon_ticker for s in specs})


def expected_calls(n_distinct, mode, plan):
    if mode == "per_ticker":
        return n_distinct
    if plan == "starter_no_multi":  # the batch call is refused with 403, then one per ticker
        return 1 + n_distinct
    return math.ceil(n_distinct / V3_MAX_TICKERS)


def mode_label(mode, plan):
    return mode if plan == "full" else f"{mode}, plan without multi-ticker (403)"


def run_refreshes(specs, mode, plan, reps, calls, window, full_warmup=True):
    """Warm up (with all the specs, or one to open the connection), then `reps` timed fetches,
    each from an empty budget and an empty simulator window."""
    out = []
    with PolygonSimulator(
        host="127.0.0.1", port=0, rate_limit_calls=calls, rate_limit_window=window, plan=plan
    ) as sim:
        budget = PolygonBudget(MemoryBudgetStore(), calls, window)
        client = PolygonClient(sim.url, BENCH_KEY, budget, logger=QUIET)
        try:
            for rep in range(reps + 1):
                sim.reset()
                client.budget = PolygonBudget(MemoryBudgetStore(), calls, window)
                started = time.perf_counter()
                result = FetchResult(mode=mode)
                for _ in client.iter_fetch(
                    specs if rep or full_warmup else specs[:1], mode, result
                ):
                    pass
                elapsed = time.perf_counter() - started
                if rep == 0:
                    continue  # the warm-up: connection, first use of every code path
                served = sim.requests
                out.append(
                    {
                        "seconds": elapsed,
                        "calls": result.api_calls,
                        "served": len(served),
                        "rejected_429": sum(r.status == 429 for r in served),
                        "quotes": len(result.quotes),
                        "errors": len(result.errors),
                        "waits": result.budget_waits,
                    }
                )
        finally:
            client.close()
    return out


def one_value(runs, key):
    """The value every run agreed on, or all of them joined by '/'."""
    return "/".join(map(str, sorted({r[key] for r in runs})))


def fmt_duration(seconds):
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{seconds:.1f} s ({int(minutes)}m{rest:04.1f}s)"


def symbol_sets(quick):
    """(label, specs, [(mode, plan), ...]) for every set section 1 measures."""
    both = [("batch", "full"), ("per_ticker", "full")]
    no_multi = ("batch", "starter_no_multi")
    # A plan without multi-ticker snapshots (the simulator's "starter_no_multi") refuses
    # /v3/snapshot with 403: batch mode then falls back to one call per ticker.
    sets = [
        ("registry", list(load_registry(DEFAULT_SYMBOLS_FILE)), [*both, no_multi]),
        ("synthetic 100", synthetic(100), both),
        ("synthetic 500", synthetic(500), both),
    ]
    if not quick:
        sets.append(("synthetic 500*", synthetic_unknown(500), both))
    return sets


def bench_refresh_cost(quick):
    reps = 5 if quick else 20
    sets = symbol_sets(quick)
    section(
        f"1a. Refresh cost, generous budget ({GENEROUS_CALLS} calls / {GENEROUS_WINDOW:g} s):"
        f" PolygonClient.iter_fetch() against the in-process simulator, N={reps}"
    )
    rows, medians = [], {}
    with simulator_nodelay(True):
        for label, specs, modes in sets:
            n_distinct = distinct(specs)
            n = max(reps // 4, 3) if label.endswith("*") else reps
            for mode, plan in modes:
                runs = run_refreshes(specs, mode, plan, n, GENEROUS_CALLS, GENEROUS_WINDOW)
                ms = [r["seconds"] * 1000 for r in runs]
                calls = runs[0]["calls"]
                medians[(label, mode, plan)] = (statistics.median(ms), calls)
                rows.append(
                    (
                        label,
                        len(specs),
                        n_distinct,
                        mode_label(mode, plan),
                        one_value(runs, "calls"),
                        expected_calls(n_distinct, mode, plan),
                        one_value(runs, "served"),
                        f"{one_value(runs, 'quotes')}/{one_value(runs, 'errors')}",
                        len(runs),
                        f"{statistics.median(ms):.1f}",
                        f"{pct(ms, 95):.1f}",
                        f"{statistics.median(ms) / max(calls, 1):.2f}",
                    )
                )
    notes = [
        "CALLS = FetchResult.api_calls per refresh, SERVED = requests the simulator logged;"
        " EXPECTED: batch ceil(distinct/250), per_ticker distinct, no-multi batch 1 + distinct.",
        "Each distinct ticker is asked once; symbols sharing a ticker share its quote.",
        "Synthetic: the simulator's 96 known tickers (the 90 ordered pairs of USD EUR GBP JPY AUD"
        " CAD CHF NZD XAU XAG, 6 crypto), repeated under new symbol names past 96.",
    ]
    if not quick:
        notes.append(
            "* 500 distinct: the 96 known + 404 the simulator does not know (C:ZZnnnn, answered"
            " NOT_FOUND: the errors), so batch needs 2 pages; N=5."
        )
    notes += [
        "Timed: fetch() alone (HTTP, parsing, validation) after one untimed warm-up fetch; the"
        " budget is in memory (store latency: section 3); every repetition starts from empty"
        " windows. P95 is nearest-rank. The simulator runs in threads of this same process, so"
        " its time to build each answer is included (and shares the GIL and the CPUs).",
        "The simulator's sockets get TCP_NODELAY for 1a and 1b (in this process only), whatever"
        " the shipped handler says; 1c compares with the handler as shipped.",
    ]
    table(
        "SET|SYMBOLS|DISTINCT|MODE|CALLS|EXPECTED|SERVED|QUOTES/ERR|N|MEDIAN MS|P95 MS|MS/CALL",
        rows,
        notes,
    )

    # 1b: the free plan's 5 calls per 60 s, from an empty window: computed, and measured where
    # a compressed window keeps it short.
    measured = {}
    with simulator_nodelay(True):
        for label, specs, modes in sets:
            for mode, plan in modes:
                windows = math.ceil(medians[(label, mode, plan)][1] / FREE_CALLS) - 1
                if windows <= 1:
                    runs = run_refreshes(
                        specs, mode, plan, 1, FREE_CALLS, COMPRESSED_WINDOW, full_warmup=False
                    )
                    measured[(label, mode, plan)] = runs[0]
    rows = []
    for label, _specs, modes in sets:
        for mode, plan in modes:
            median_ms, calls = medians[(label, mode, plan)]
            windows = math.ceil(calls / FREE_CALLS) - 1
            computed = windows * (FREE_WINDOW + WINDOW_MARGIN_SECONDS) + median_ms / 1000
            run = measured.get((label, mode, plan))
            rows.append(
                (
                    label,
                    mode_label(mode, plan),
                    calls,
                    windows,
                    fmt_duration(computed),
                    f"{run['seconds']:.2f}" if run else "-",
                    fmt_duration(run["seconds"] * SCALE) if run else "-",
                    f"{run['waits']}/{run['rejected_429']}" if run else "-",
                )
            )
    section(
        f"1b. Refresh wall time under the free-plan budget ({FREE_CALLS} calls /"
        f" {FREE_WINDOW:g} s), starting from an empty window"
    )
    table(
        f"SET|MODE|CALLS|FULL WINDOWS|COMPUTED|COMPRESSED S|x{SCALE:g}|WAITS/429",
        rows,
        [
            f"COMPUTED (no sleeping) = (ceil(calls/{FREE_CALLS}) - 1) full windows of"
            f" {FREE_WINDOW:g} s (+{WINDOW_MARGIN_SECONDS} s budget margin each) + the 1a median.",
            f"COMPRESSED = one real fetch with the window compressed to {FREE_CALLS} calls per"
            f" {COMPRESSED_WINDOW:g} s (budget and simulator alike), then scaled by {SCALE:g}"
            " (which scales the HTTP time too, so it reads a little high). WAITS = budget waits"
            " (one per call that waited), 429 = simulator rejections.",
            "Run compressed only where it needs at most one full window; per_ticker on the"
            " synthetic sets would take 19+ windows, about 40 s even compressed.",
        ],
    )

    # 1c: the same 9 symbols with the simulator as shipped.
    reps_shipped = 3 if quick else 5
    rows = []
    label, specs, _modes = sets[0]
    for mode in ("batch", "per_ticker"):
        runs = run_refreshes(specs, mode, "full", reps_shipped, GENEROUS_CALLS, GENEROUS_WINDOW)
        ms = [r["seconds"] * 1000 for r in runs]
        calls = runs[0]["calls"]
        nodelay_ms = medians[(label, mode, "full")][0]
        rows.append(
            (
                label,
                mode,
                calls,
                len(runs),
                f"{statistics.median(ms):.1f}",
                f"{statistics.median(ms) / calls:.2f}",
                f"{nodelay_ms:.1f}",
                f"{nodelay_ms / calls:.2f}",
            )
        )
    section(
        "1c. The same fetch against the simulator as shipped"
        f" (its handler's disable_nagle_algorithm = {SHIPPED_NODELAY})"
    )
    table(
        "SET|MODE|CALLS|N|AS SHIPPED MS|MS/CALL|NODELAY MS|MS/CALL",
        rows,
        [
            "AS SHIPPED: the simulator's handler as it is in the code; NODELAY: the 1a medians.",
            "The shipped handler already sets TCP_NODELAY, so both columns measure the same"
            " thing and any difference is noise (a check that the setting is still there)."
            if SHIPPED_NODELAY
            else "The difference per call is the loopback delayed-ACK stall (Nagle's algorithm),"
            " not client work; the embedded simulator that `assets-pipeline refresh` starts"
            " (section 2) pays it too.",
        ],
    )


# --- 2. the CLI, end to end ------------------------------------------------------------------

REFRESHED = re.compile(r"(\d+) of (\d+) symbol\(s\) refreshed, (\d+) API call")


def bench_cli(runs):
    section(
        f"2. End to end: `assets-pipeline refresh` in a subprocess ({runs} runs per mode,"
        " embedded SQLite + in-process simulator, POLYGON_RATE_LIMIT_CALLS=1000)"
    )
    if not CLI.exists():
        print(f"skipped: {CLI} not found\n")
        return
    rows = []
    for mode in ("batch", "per_ticker"):
        seconds, results = [], []
        for _ in range(runs):
            home = tempfile.mkdtemp(prefix="ap_bench_home_")
            try:
                env = {k: v for k, v in os.environ.items() if k not in CLI_ENV_DROP}
                env.update(
                    ASSETS_PIPELINE_HOME=home,
                    POLYGON_RATE_LIMIT_CALLS="1000",
                    POLYGON_SNAPSHOT_MODE=mode,
                    DAGSTER_DISABLE_TELEMETRY="1",
                )
                started = time.perf_counter()
                proc = subprocess.run(
                    [str(CLI), "refresh"],
                    env=env,
                    cwd=home,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                seconds.append(time.perf_counter() - started)
            finally:
                shutil.rmtree(home, ignore_errors=True)
            match = REFRESHED.search(proc.stdout)
            if proc.returncode != 0 or not match:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                print(f"  {mode}: exit {proc.returncode}: " + " | ".join(tail))
            results.append(
                f"{match[1]}/{match[2]} in {match[3]} calls" if match else f"exit {proc.returncode}"
            )
        rows.append(
            (
                mode,
                "; ".join(sorted(set(results))),
                f"{statistics.median(seconds):.2f}",
                f"{min(seconds):.2f}",
                f"{max(seconds):.2f}",
                " ".join(f"{s:.2f}" for s in seconds),
            )
        )
    table(
        "MODE|REFRESHED|MEDIAN S|MIN S|MAX S|RUNS S",
        rows,
        note=[
            "Wall time of the whole process: interpreter and Dagster start, loading definitions,"
            " a fresh ASSETS_PIPELINE_HOME per run (so creating the SQLite schema), the run, exit.",
            "REFRESHED and calls are parsed from the command's own summary line.",
        ],
    )


# --- 3. budget acquire latency ---------------------------------------------------------------


def open_store(kind, target, name, check_schema=True):
    """A budget store of `kind` on `target` (Redis: (url, namespace); SQL: a database URL).

    The workers pass check_schema=False: the parent has migrated the database (and checked it)."""
    if kind == "redis":
        import redis

        url, namespace = target
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        return RedisBudgetStore(client, name, namespace), client.close
    engine = get_engine(target, check_schema=check_schema)
    return SqlBudgetStore(engine, name), lambda: dispose_engine(target)


def describe(exc):
    """One line for an exception and its causes (the root cause says what really failed)."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        parts.append(f"{exc.__class__.__name__}: {text}")
        exc = exc.__cause__
    return " <- ".join(parts)


def time_acquires(budget, count):
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        budget.acquire(5.0)
        latencies.append(time.perf_counter() - started)
    return latencies


def acquire_worker(kind, target, name, count, barrier, queue):
    """One of the concurrent processes: warm up, wait for the others, time `count` acquires."""
    try:
        store, close = open_store(kind, target, name, check_schema=False)
        try:
            budget = PolygonBudget(store, STORE_LIMIT, STORE_WINDOW)
            time_acquires(budget, STORE_WARMUP)
            barrier.wait(60)
            started = time.time()
            latencies = time_acquires(budget, count)
            queue.put(("ok", latencies, started, time.time()))
        finally:
            close()
    except Exception as exc:  # noqa: BLE001 - report it to the parent instead of hanging it
        barrier.abort()
        queue.put(("error", describe(exc), 0, 0))


def measure_store(kind, target, count):
    """(single-process latencies, each concurrent process's latencies, concurrent wall s)."""
    store, close = open_store(kind, target, "bench_single")
    try:
        budget = PolygonBudget(store, STORE_LIMIT, STORE_WINDOW)
        time_acquires(budget, STORE_WARMUP)
        single = time_acquires(budget, count)
    finally:
        close()

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(
            target=acquire_worker, args=(kind, target, "bench_concurrent", count, barrier, queue)
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        answers = [queue.get(timeout=300) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    errors = [a[1] for a in answers if a[0] != "ok"]
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]}")
    concurrent = [a[1] for a in answers]
    wall = max(a[3] for a in answers) - min(a[2] for a in answers)
    return single, concurrent, wall


def add_rows(rows, label, single, concurrent, wall):
    """One row for the single process, one for all the concurrent ones."""
    for phase, per_process, seconds in (
        ("1 process", [single], sum(single)),
        (f"{PROCESSES} processes", concurrent, wall),
    ):
        ms = [x * 1000 for lat in per_process for x in lat]
        tenth = max(len(per_process[0]) // 10, 1)
        first = [x * 1000 for lat in per_process for x in lat[:tenth]]
        last = [x * 1000 for lat in per_process for x in lat[-tenth:]]
        rows.append(
            (
                label,
                phase,
                len(ms),
                f"{statistics.median(ms):.3f}",
                f"{pct(ms, 99):.3f}",
                f"{max(ms):.3f}",
                sum(x > 100 for x in ms),
                f"{statistics.median(first):.2f} / {statistics.median(last):.2f}",
                f"{len(ms) / seconds:.0f}",
            )
        )


def bench_redis(url, count, rows, notes):
    if not url:
        notes.append("redis: skipped (no --redis-url)")
        return
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable means skipped, not failed
        notes.append(f"redis: skipped, {redact_url(url)} unreachable ({exc.__class__.__name__})")
        client.close()
        return
    namespace = f"bench:{uuid.uuid4().hex}:"
    try:
        add_rows(rows, "redis", *measure_store("redis", (url, namespace), count))
    finally:
        keys = list(client.scan_iter(match=f"{namespace}*"))
        if keys:
            client.delete(*keys)
        left = sum(1 for _ in client.scan_iter(match=f"{namespace}*"))
        notes.append(f"redis: namespace {namespace} ({len(keys)} keys deleted, {left} left)")
        client.close()


def bench_sqlite(count, rows, notes):
    tmp = tempfile.mkdtemp(prefix="ap_bench_")
    url = f"sqlite:///{tmp}/b.sqlite"
    try:
        get_engine(url)  # the embedded file is migrated on first use, before the workers start
        add_rows(rows, "sqlite", *measure_store("sql", url, count))
    finally:
        dispose_engine(url)
        shutil.rmtree(tmp, ignore_errors=True)
        notes.append(f"sqlite: {url} (WAL mode; directory removed: {not Path(tmp).exists()})")


def bench_postgres(admin_url, count, rows, notes):
    if not admin_url:
        notes.append("postgresql: skipped (no --postgres-url)")
        return
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(
        normalize_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - unreachable means skipped, not failed
        notes.append(
            f"postgresql: skipped, {redact_url(admin_url)} unreachable ({exc.__class__.__name__})"
        )
        admin.dispose()
        return
    name = f"ap_bench_{uuid.uuid4().hex[:12]}"
    url = make_url(normalize_url(admin_url)).set(database=name)
    url_text = url.render_as_string(hide_password=False)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        migrate_database(url_text)  # as `assets-pipeline migrate` does
        add_rows(rows, "postgresql", *measure_store("sql", url_text, count))
    finally:
        dispose_engine(url_text)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            left = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_database WHERE datname = %(n)s", {"n": name}
            ).scalar_one()
        admin.dispose()
        notes.append(f"postgresql: temporary database {name} (dropped: {left == 0})")


def bench_budget_stores(args, count):
    section(
        f"3. Budget acquire() latency: PolygonBudget(store, limit={STORE_LIMIT},"
        f" window_seconds={STORE_WINDOW:g}), {count} calls per process"
    )
    rows, notes = [], []
    for run in (
        lambda: bench_redis(args.redis_url, count, rows, notes),
        lambda: bench_sqlite(count, rows, notes),
        lambda: bench_postgres(args.postgres_url, count, rows, notes),
    ):
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - one store failing must not hide the others
            notes.append(f"error: {exc.__class__.__name__}: {exc}")
    table(
        "STORE|PHASE|CALLS|MEDIAN MS|P99 MS|MAX MS|>100 MS|FIRST/LAST 10% MEDIAN|CALLS/S",
        rows,
        note=[
            f"Each call takes a slot (never waits: the limit is far above {PROCESSES * count}"
            f" calls); {STORE_WARMUP} warm-up calls per process (connect, first statements)"
            " are not counted.",
            f"{PROCESSES} processes: multiprocessing spawn, each with its own connection, started"
            " together at a barrier; percentiles over all their calls; CALLS/S is the combined"
            " rate over the phase's wall time (1 process: over the sum of its latencies).",
            "Each phase uses its own budget name, so each starts with an empty window log; the"
            " log grows by one entry per call (nothing expires within 60 s), and FIRST/LAST 10%"
            " compares the median of each process's first and last tenth of calls as it grows.",
            ">100 MS counts calls slower than 100 ms.",
            *notes,
        ],
    )


# --- main ------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="'' to skip (default: %(default)s)"
    )
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="'' to skip (default: %(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions, no CLI section (about 20 s)"
    )
    args = parser.parse_args(argv)

    began = time.perf_counter()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"bench_refresh  {now}  cpus={os.cpu_count()}  python={platform.python_version()}"
        f"  {platform.system()} {platform.release()} {platform.machine()}"
        f"{'  (--quick)' if args.quick else ''}"
    )
    print()
    bench_refresh_cost(args.quick)
    if args.quick:
        section("2. End to end: `assets-pipeline refresh`")
        print("skipped (--quick)\n")
    else:
        bench_cli(3)
    bench_budget_stores(args, 200 if args.quick else 1000)
    print(f"total {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
