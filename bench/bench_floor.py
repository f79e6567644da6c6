"""Benchmark: this project beside Dagster's floor, in one run, as ratios (issue: "every refresh at
Dagster's floor, at 5,000 symbols too").

    .venv/bin/python bench/bench_floor.py [--runs 5] [--sizes 9,1000,5000] [--postgres-url URL]
        [--sections refresh,scale,events]

The floor is a one-asset Dagster project run the same way as the project, on the same machine in
the same minutes, so the ratios hold when the machine is busy (the absolute seconds do not).
Every command runs in its own process; wall time is the median of `--runs`, CPU is the child's
user + system time. Nothing is asserted. It prints:

1. a refresh beside the floor: through the CLI (`execute_in_process`) and as a Dagster run
   (`dagster asset materialize`, the project's critical group with its checks);
2. the curve over symbols files of 9, 1,000 and 5,000 symbols: loading the code location,
   `dagster asset list`, and a refresh of every symbol (its time in this project's own code,
   from a profile, beside its wall time and the Dagster events it stored), beside two
   Dagster-only floors of the same size: the project's shape (live quotes unpartitioned in
   multi-assets of 250 with three checks each, and history daily-partitioned in multi-assets
   of 250 without checks) and, for reference, the shape before history was its own family
   (daily-partitioned quotes in multi-assets of 250 with three checks each);
3. what one Dagster event costs on a SQLite and on a PostgreSQL instance.

The simulator runs in this process (its time is not the project's). Synthetic symbols reuse the
simulator's 96 tickers (the symbols differ, the tickers repeat): the calls stay few, the work per
symbol is what it is. Every temporary file, database and key it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.simulator.server import PolygonSimulator

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEY = "bench-floor-key"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "NZD", "XAU", "XAG")
CRYPTO = ("BTC", "ETH", "SOL", "LTC", "XRP", "DOGE")
OWN_CODE = f"{os.sep}assets_pipeline{os.sep}"
MATERIALIZE = [str(BIN / "dagster"), "asset", "materialize", "-m"]

FLOOR_LOCATION = """
import dagster as dg


@dg.asset
def trivial() -> int:
    return 1


defs = dg.Definitions(assets=[trivial])
"""

#: Dagster alone, in our assets' shape: `SHAPE` (`live+history` or `old`), `SYMBOLS` assets.
SHAPED_FLOOR = """
import os
import dagster as dg

N = int(os.environ["FLOOR_SYMBOLS"])
SHAPE = os.environ["FLOOR_SHAPE"]
DAILY = dg.DailyPartitionsDefinition(start_date="2024-12-01", end_offset=1 if SHAPE == "old" else 0)
CHECKS = ("quote_quality", "fresh", "quote_age")


def family(prefix, names, partitioned, checked):
    specs = [dg.AssetSpec([prefix, s], group_name=prefix) for s in names]
    checks = [dg.AssetCheckSpec(c, asset=[prefix, s]) for s in names for c in CHECKS]

    @dg.multi_asset(
        name=f"{prefix}_{names[0]}",
        specs=specs,
        can_subset=True,
        partitions_def=DAILY if partitioned else None,
        check_specs=checks if checked else None,
    )
    def step(context):
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key)

    return step


symbols = [f"B{i:05d}" for i in range(N)]
steps = [symbols[i : i + 250] for i in range(0, N, 250)]
if SHAPE == "old":
    assets = [family("quotes", s, True, True) for s in steps]
else:
    assets = [family("quotes", s, False, True) for s in steps]
    assets += [family("history", s, True, False) for s in steps]
defs = dg.Definitions(assets=assets)
"""

#: The shaped floors, labelled: the project's shape now, and the one before (for reference).
FLOOR_SHAPES = {
    "live+history": "floor, our shape: live (unpartitioned, 3 checks) + history (daily, no checks)",
    "old": "floor, former shape (reference): daily-partitioned quotes, 3 checks",
}

FLOOR_IN_PROCESS = "import dagster as dg, floor_location as f; dg.materialize([f.trivial])"

EVENTS_PROBE = """
import sys, time
import dagster as dg

COUNT = int(sys.argv[1])


@dg.op
def chatty(context):
    for i in range(COUNT):
        context.log.info(f"event {i}")


@dg.job
def events():
    chatty()


instance = dg.DagsterInstance.get()
events.execute_in_process(instance=instance)  # warm: storage created, tables there
start = time.perf_counter()
result = events.execute_in_process(instance=instance)
print(time.perf_counter() - start, len(instance.all_logs(result.run_id)))
"""


# --- measuring a command ------------------------------------------------------------------------


def timed(cmd, env, cwd=None):
    """(wall seconds, child CPU seconds) of one command; fails loudly if the command does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_of(runs, cmd, env, cwd=None):
    samples = [timed(cmd, env, cwd) for _ in range(runs)]
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def table(headers, rows):
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print()


# --- the environment ----------------------------------------------------------------------------


def base_env(work, sim_url):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != "DAGSTER_HOME"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]),  # this checkout, not an install
        ASSETS_PIPELINE_HOME=str(work / "home"),
        POLYGON_API_KEY=KEY,
        POLYGON_BASE_URL=sim_url,
        POLYGON_PLAN="paid",
        POLYGON_SNAPSHOT_MODE="batch",
        POLYGON_RATE_LIMIT_CALLS="6000",
        POLYGON_RATE_LIMIT_WINDOW_SECONDS="60",
        POLYGON_BUDGET_CHECK="warn",
    )
    return env


def dagster_home(work, name):
    home = work / name
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def symbols_file(work, n):
    """n symbols: 3 critical, a tenth high, then medium and low; tickers from the catalogue."""
    tickers = [f"C:{b}{q}" for b in CURRENCIES for q in CURRENCIES if b != q]
    tickers += [f"X:{c}USD" for c in CRYPTO]
    lines = ['owners: ["team:data-engineering"]', "symbols:"]
    for i in range(n):
        tier = "critical" if i < 3 else "high" if i < n // 10 else "medium" if i < n // 3 else "low"
        ticker = tickers[i % len(tickers)]
        kind = "crypto" if ticker.startswith("X:") else "forex"
        base, quote = ticker[2:-3], ticker[-3:]
        lines.append(
            f'  - {{symbol: B{i:05d}, polygon_ticker: "{ticker}", asset_type: {kind},'
            f" tier: {tier}, name: Bench {i}, base_asset: {base}, quote_asset: {quote},"
            " price_precision: 5}"
        )
    lines.append(f"queue: {{drain_every: 15s, max_size: {max(n, 1000)}, max_retries: 3}}")
    path = work / f"symbols_{n}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- 1. a refresh beside the floor --------------------------------------------------------------


def section_refresh(runs, work, env):
    py, cli = str(BIN / "python"), str(BIN / "assets-pipeline")
    floor_env = {**env, "DAGSTER_HOME": str(dagster_home(work, "floor_home"))}
    project_env = {**env, "DAGSTER_HOME": str(dagster_home(work, "project_home"))}
    rows = []
    measured = {
        "import dagster": median_of(runs, [py, "-c", "import dagster"], env),
        "floor: trivial asset, execute_in_process": median_of(
            runs, [py, "-c", FLOOR_IN_PROCESS], env
        ),
        "project: assets-pipeline refresh (9 symbols)": median_of(runs, [cli, "refresh"], env),
        "floor: trivial asset, dagster asset materialize": median_of(
            runs,
            [*MATERIALIZE, "floor_location", "--select", "trivial"],
            floor_env,
        ),
        "project: dagster asset materialize --select group:critical": median_of(
            runs,
            [
                *MATERIALIZE,
                "assets_pipeline.definitions",
                "--select",
                "group:critical",
            ],
            project_env,
        ),
    }
    floors = {
        "project: assets-pipeline refresh (9 symbols)": "floor: trivial asset, execute_in_process",
        "project: dagster asset materialize --select group:critical": (
            "floor: trivial asset, dagster asset materialize"
        ),
    }
    for name, (wall, cpu) in measured.items():
        floor = measured.get(floors.get(name, ""))
        ratio = f"{wall / floor[0]:.2f}x wall, {cpu / floor[1]:.2f}x CPU" if floor else ""
        rows.append([name, f"{wall:.2f}", f"{cpu:.2f}", ratio])
    print("1. A refresh beside Dagster's floor (median of", runs, "runs)\n")
    table(["command", "wall s", "CPU s", "vs its floor"], rows)


# --- 2. the curve over symbols ------------------------------------------------------------------


def own_code_seconds(profile_path):
    """Seconds spent in this project's own functions (not what they call), from a profile."""
    stats = pstats.Stats(str(profile_path))
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        if OWN_CODE in filename and f"{os.sep}simulator{os.sep}" not in filename:
            total += tottime
    return total


def profiled_refresh(work, env, n):
    """A refresh of all n symbols through the CLI (Dagster's in-memory instance, so storage
    costs nothing here; section 3 prices each event), after one that registers them:
    (wall, own-code seconds under the profiler, the same scaled by how much the profiler slowed
    the whole run, Dagster events)."""
    home = work / f"scale_home_{n}"
    run_env = {**env, "ASSETS_PIPELINE_HOME": str(home)}
    cli = str(BIN / "assets-pipeline")
    timed([cli, "refresh"], run_env)  # the first run registers the symbols
    wall, _ = timed([cli, "refresh"], run_env)
    profile = work / f"refresh_{n}.prof"
    cmd = [str(BIN / "python"), "-m", "cProfile", "-o", str(profile), "-m", "assets_pipeline.cli"]
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, "refresh", "-v"], env=run_env, capture_output=True, text=True, check=True
    )
    profiled_wall = time.perf_counter() - start
    events = sum(1 for line in done.stderr.splitlines() if " - dagster - " in line)
    own = own_code_seconds(profile)
    return wall, own, own * wall / profiled_wall, events


def shaped_floor_rows(runs, env, n, load, floor_load, floor_list):
    """Loading and listing a Dagster-only project of n symbols in each shape of `FLOOR_SHAPES`:
    the rows, and the (load, list) medians of the first shape, the project's own."""
    py, dagster = str(BIN / "python"), str(BIN / "dagster")
    rows, same_shape = [], None
    for shape, label in FLOOR_SHAPES.items():
        shaped = {**env, "FLOOR_SYMBOLS": str(n), "FLOOR_SHAPE": shape}
        loaded = median_of(runs, [py, "-c", load.format(m="shaped_floor")], shaped)
        listed = median_of(runs, [dagster, "asset", "list", "-m", "shaped_floor"], shaped)
        same_shape = same_shape or (loaded, listed)
        rows.append(
            [
                f"{label}, {n:,}",
                f"{loaded[0]:.2f} ({loaded[0] / floor_load[0]:.2f}x)",
                f"{listed[0]:.2f} ({listed[0] / floor_list[0]:.2f}x)",
                "",
                "",
                "",
            ]
        )
    return rows, same_shape


def section_scale(runs, work, env, sizes):
    py, dagster = str(BIN / "python"), str(BIN / "dagster")
    load = "import {m} as d; d.defs.resolve_asset_graph()"
    floor_load = median_of(runs, [py, "-c", load.format(m="floor_location")], env)
    floor_list = median_of(runs, [dagster, "asset", "list", "-m", "floor_location"], env)
    rows = [["floor (1 asset)", f"{floor_load[0]:.2f}", f"{floor_list[0]:.2f}", "", "", ""]]
    for n in sizes:
        sized = {**env, "ASSETS_CONFIG": str(symbols_file(work, n))} if n != 9 else env
        loaded = median_of(runs, [py, "-c", load.format(m="assets_pipeline.definitions")], sized)
        listed = median_of(
            runs, [dagster, "asset", "list", "-m", "assets_pipeline.definitions"], sized
        )
        shaped_rows, (shaped_load, shaped_list) = shaped_floor_rows(
            runs, env, n, load, floor_load, floor_list
        )
        rows += shaped_rows
        wall, own, unprofiled, events = profiled_refresh(work, sized, n)
        rows.append(
            [
                f"{n:,} symbols",
                f"{loaded[0]:.2f} ({loaded[0] / shaped_load[0]:.2f}x same shape,"
                f" CPU {loaded[1] / shaped_load[1]:.2f}x)",
                f"{listed[0]:.2f} ({listed[0] / shaped_list[0]:.2f}x same shape,"
                f" CPU {listed[1] / shaped_list[1]:.2f}x)",
                f"{wall:.2f}",
                f"{own:.2f} (~{unprofiled:.2f})",
                f"{events:,}",
            ]
        )
    print("2. Over the size of the symbols file (wall s; load and list: median of", runs, "runs)\n")
    table(
        [
            "symbols",
            "load location s",
            "dagster asset list s",
            "refresh all s",
            "own code s profiled (~unprofiled)",
            "Dagster events",
        ],
        rows,
    )
    print(
        "   refresh all: `assets-pipeline refresh` of every symbol (they are registered by a run\n"
        "   before it), on the embedded database, with Dagster's in-memory instance.\n"
        "   own code: time inside this project's functions during that refresh, excluding what\n"
        "   they call (Dagster, SQLAlchemy, HTTP) and the simulator; measured under cProfile,\n"
        "   which itself slows Python code, so it is an upper bound; in brackets, scaled by how\n"
        "   much the profiler slowed the whole refresh (an estimate of the unprofiled time).\n"
        "   Dagster events: what the run logged; on a stored instance multiply by section 3.\n"
    )


# --- 3. what an event costs ---------------------------------------------------------------------


def event_cost(work, env, name, storage_yaml, count=400):
    home = work / f"events_{name}"
    home.mkdir()
    (home / "dagster.yaml").write_text(storage_yaml)
    probe = work / "events_probe.py"
    probe.write_text(EVENTS_PROBE)
    py = str(BIN / "python")
    out = {}
    for k in (0, count):
        done = subprocess.run(
            [py, str(probe), str(k)],
            env={**env, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, events = done.stdout.split()[-2:]
        out[k] = (float(seconds), int(events))
    (t0, e0), (t1, e1) = out[0], out[count]
    return (t1 - t0) / max(e1 - e0, 1) * 1000


def section_events(work, env, postgres_url):
    rows = [["SQLite (dagster dev's default)", f"{event_cost(work, env, 'sqlite', ''):.2f}"]]
    if postgres_url:
        name = f"bench_events_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(postgres_url)
        storage = (
            "storage:\n  postgres:\n    postgres_db:\n      scheme: postgresql+psycopg2\n"
            f"      username: {url.username}\n      hostname: {url.host}\n"
            f"      port: {url.port or 5432}\n      db_name: {name}\n"
        )
        try:
            rows.append(
                ["PostgreSQL (dagster-postgres)", f"{event_cost(work, env, 'pg', storage):.2f}"]
            )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    print("3. What one stored Dagster event costs (a run logging 400 events, minus an empty run)\n")
    table(["instance", "ms per event"], rows)


# --- main ---------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="9,1000,5000")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--sections", default="refresh,scale,events", help="which of the three to run, by name"
    )
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()},")
    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    work = Path(tempfile.mkdtemp(prefix="bench_floor_"))
    try:
        (work / "floor_location.py").write_text(FLOOR_LOCATION)
        (work / "shaped_floor.py").write_text(SHAPED_FLOOR)
        with PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim:
            env = base_env(work, sim.url)
            if "refresh" in sections:
                section_refresh(args.runs, work, env)
            if "scale" in sections:
                section_scale(args.runs, work, env, sizes)
        if "events" in sections:
            section_events(work, env, args.postgres_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
