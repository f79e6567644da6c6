"""Benchmark: what a history backfill costs in Polygon calls and time, and a live refresh per plan.

    .venv/bin/python bench/bench_backfill.py [--quick] [--all]

Prints two plain-text tables; 9 symbols x 730 days only with --all (over 3 minutes). Checks
one thing: a year of one symbol's 5-minute bars takes at most 3 calls (prints OK or FAILED;
exits 1 on failure, or if any backfill or refresh errs).
Everything runs on loopback against the project's Polygon simulator in this process, with the
budget in memory; nothing is written anywhere. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import time

from bench_refresh import MemoryBudgetStore, fmt_duration, section, table

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.config.registry import DEFAULT_SYMBOLS_FILE, load_registry
from assets_pipeline.history.fetch import fetch_history
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.rules import clock
from assets_pipeline.simulator.server import PolygonSimulator

BENCH_KEY = "bench-key"
#: A budget no run comes near, so only the cost is measured (no run ever waits for a slot).
GENEROUS_CALLS, GENEROUS_WINDOW = 1000, 60.0
#: The pinned "now" of the simulator and of the package's clock: every run sees the same bars.
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
#: Backfills end the day before yesterday (UTC), the newest day a backfill would ask for.
LAST_DAY = NOW.date() - dt.timedelta(days=2)
BAR_SECONDS = 300
DAYS_FULL, DAYS_QUICK = (1, 30, 365, 730), (1, 30)
#: Cases above this many symbol-days are skipped unless --all: 9 symbols x 730 days took 194 s
#: on a 2-core machine (2026-11-26), more than the rest of the run together.
MAX_SYMBOL_DAYS = 9 * 365
#: The check: a year of one symbol's 5-minute bars in at most this many calls.
YEAR_MAX_CALLS = 3
#: Repetitions (the median is shown) by the case's size in symbol-days: (at most, reps); one above.
REPS_BY_SIZE = ((30, 5), (270, 3))

#: The client logs a plan's 403 fallback as a warning; keep it out of the tables.
QUIET = logging.getLogger("bench_backfill.client")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def new_client(sim, store=None, plan="auto"):
    budget = PolygonBudget(store or MemoryBudgetStore(), GENEROUS_CALLS, GENEROUS_WINDOW)
    return PolygonClient(sim.url, BENCH_KEY, budget, plan=plan, logger=QUIET)


# --- 1. backfill -----------------------------------------------------------------------------


def repetitions(symbol_days):
    return next((reps for most, reps in REPS_BY_SIZE if symbol_days <= most), 1)


def backfill_once(sim, specs, days):
    """One backfill of `specs` over `days`: (seconds, calls served, non-200s, bars, errors)."""
    sim.reset()
    client = new_client(sim)  # fetch_history closes it
    started = time.perf_counter()
    bars, errors = 0, []
    for spec, answer in fetch_history(client, specs, days, BAR_SECONDS):
        if isinstance(answer, Exception):
            errors.append(f"{spec.symbol}: {answer.__class__.__name__}: {answer}")
        else:
            bars += len(answer)
    elapsed = time.perf_counter() - started
    served = sim.requests
    return elapsed, len(served), sum(r.status != 200 for r in served), bars, errors


def bench_backfill(sets, day_counts, max_symbol_days=None):
    section(
        f"1. Backfill: fetch_history() of 5-minute bars ending {LAST_DAY} (UTC), generous budget"
        f" ({GENEROUS_CALLS} calls / {GENEROUS_WINDOW:g} s, in memory)"
    )
    rows, failures, checks, skipped = [], [], [], []
    with PolygonSimulator(host="127.0.0.1", port=0, clock=NOW.timestamp, market_hours=True) as sim:
        backfill_once(sim, sets[0][1], [LAST_DAY])  # warm-up: connection, first use of each path
        for label, specs in sets:
            for n_days in day_counts:
                if max_symbol_days is not None and n_days * len(specs) > max_symbol_days:
                    skipped.append(f"{label} x {n_days} days")
                    continue
                days = [LAST_DAY - dt.timedelta(days=i) for i in range(n_days)][::-1]
                reps = repetitions(n_days * len(specs))
                runs = [backfill_once(sim, specs, days) for _ in range(reps)]
                seconds = statistics.median(r[0] for r in runs)
                calls = {r[1] for r in runs}
                bars = {r[3] for r in runs}
                non_200 = sum(r[2] for r in runs)
                for run in runs:
                    failures += run[4]
                if non_200:
                    failures.append(f"{label}, {n_days} days: {non_200} non-200 answers")
                naive = n_days * len(specs)
                top = max(calls)
                rows.append(
                    (
                        label,
                        len(specs),
                        n_days,
                        "/".join(map(str, sorted(calls))),
                        naive,
                        f"{naive / top:.0f}x" if top else "-",
                        "/".join(map(str, sorted(bars))),
                        reps,
                        fmt_duration(seconds),
                    )
                )
                if len(specs) == 1 and n_days == 365:
                    ok = top <= YEAR_MAX_CALLS
                    checks.append(ok)
                    print(
                        f"check: a year of {specs[0].symbol}'s 5-minute bars in {top} calls"
                        f" (at most {YEAR_MAX_CALLS}): {'OK' if ok else 'FAILED'}",
                        flush=True,
                    )
    table(
        "SYMBOLS|N|DAYS|CALLS|NAIVE|SAVED|BARS|RUNS|WALL (MEDIAN)",
        rows,
        note=[
            "CALLS = requests the simulator logged (one range request per ticker, limit=50000,"
            " plus one per next_url page); NAIVE = one run and one call per daily partition per"
            " symbol (days x symbols); SAVED = NAIVE / CALLS.",
            "BARS = rows of the DataFrames fetch_history() yielded. The simulator models market"
            " hours: forex is closed from Friday 17:00 to Sunday 17:00 New York time (no bars),"
            " crypto trades every 5 minutes of every day (BTCUSD, ETHUSDT).",
            "WALL = fetch_history() alone, HTTP and parsing included, the simulator building the"
            " bars in threads of this same process; the median of RUNS runs (5 up to 30"
            " symbol-days, 3 up to 270, 1 above), after one untimed warm-up backfill."
            f" Simulator and package clock pinned at {NOW:%Y-%m-%d %H:%M} UTC.",
            *(
                f"Skipped (over {max_symbol_days} symbol-days; --all runs it): {case}."
                for case in skipped
            ),
        ],
    )
    return failures, all(checks) if checks else None


# --- 2. live refresh per plan ----------------------------------------------------------------


def refresh_once(sim, client, specs):
    sim.reset_log()
    result = FetchResult(mode="batch")
    for _ in client.iter_fetch(specs, "batch", result):
        pass
    served = sim.requests
    return result, served


def bench_plans(specs):
    section(
        f"2. Live refresh calls per plan: the {len(specs)} default symbols, iter_fetch(batch)"
        " once, generous budget"
    )
    cases = [
        ("full", "auto", 1, "1 call (multi-ticker snapshot)"),
        ("starter_no_multi", "auto", 1, "multi 403, then 1 per ticker"),
        ("free", "free", 1, "grouped daily, 1 per market"),
        ("free", "auto", 2, "1st learns from 403s, 2nd grouped only"),
    ]
    rows, failures = [], []
    for sim_plan, client_plan, times, expect in cases:
        with PolygonSimulator(host="127.0.0.1", port=0, plan=sim_plan, clock=NOW.timestamp) as sim:
            store = MemoryBudgetStore()  # one store: refusals are remembered across refreshes
            client = new_client(sim, store, client_plan)
            try:
                for n in range(1, times + 1):
                    result, served = refresh_once(sim, client, specs)
                    sources = sorted({q.source for q in result.quotes.values()})
                    rows.append(
                        (
                            sim_plan,
                            client_plan,
                            n,
                            len(served),
                            result.api_calls,
                            sum(r.status == 403 for r in served),
                            f"{len(result.quotes)}/{len(result.errors)}",
                            ", ".join(sources),
                            expect if n == 1 else "",
                        )
                    )
                    failures += [
                        f"{sim_plan}/{client_plan}: {s}: {e}" for s, e in result.errors.items()
                    ]
            finally:
                client.close()
    table(
        "SIM PLAN|CLIENT PLAN|REFRESH|CALLS|API_CALLS|403S|QUOTES/ERRORS|SOURCE|EXPECTED",
        rows,
        note=[
            "CALLS = requests the simulator logged, API_CALLS = FetchResult.api_calls; 403S ="
            " answers the plan refused. One budget store per plan, shared by both auto refreshes:"
            " refusals learnt the first time are remembered the second.",
            f"9 symbols, 9 distinct tickers (7 forex, 2 crypto). Clocks pinned at"
            f" {NOW:%Y-%m-%d %H:%M} UTC: the free plan's grouped daily asks for yesterday.",
        ],
    )
    return failures


# --- main ------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 30 days only (about 35 s)")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"also the cases over {MAX_SYMBOL_DAYS} symbol-days (9 symbols x 730 days: 3+ min)",
    )
    args = parser.parse_args(argv)

    began = time.perf_counter()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"bench_backfill  {now}  cpus={os.cpu_count()}  python={platform.python_version()}"
        f"  {platform.system()} {platform.release()} {platform.machine()}"
        f"{'  (--quick)' if args.quick else ''}"
    )
    print()
    registry = list(load_registry(DEFAULT_SYMBOLS_FILE))
    one = [s for s in registry if s.symbol == "EURUSD"]
    sets = [("EURUSD", one), ("default 9", registry)]
    with clock.frozen_at(NOW):
        failures, year_ok = bench_backfill(
            sets,
            DAYS_QUICK if args.quick else DAYS_FULL,
            None if args.all else MAX_SYMBOL_DAYS,
        )
        failures += bench_plans(registry)
    for failure in failures:
        print(f"error: {failure}")
    print(f"total {time.perf_counter() - began:.1f} s")
    return 1 if failures or year_ok is False else 0


if __name__ == "__main__":
    sys.exit(main())
