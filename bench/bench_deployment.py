"""Benchmark: what the production deployment costs: loading the code location, and a refresh run on
Dagster's storage in PostgreSQL (dagster-postgres) beside the default SQLite storage.

    .venv/bin/python bench/bench_deployment.py [--runs 5] [--postgres-url URL]

Prints plain-text tables; asserts nothing. Everything runs on loopback: the project's Polygon
simulator in this process (a generous budget: no run waits), a trading database of its own in
PostgreSQL, and Dagster in subprocesses, as the README's "Three services" runs it. Every
temporary directory and database it makes is removed before it exits. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
import yaml

from assets_pipeline.config.registry import DEFAULT_SYMBOLS_FILE
from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.database import migrate_database
from assets_pipeline.simulator.server import PolygonSimulator

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
KEY = "bench-key"
JOB = "refresh_critical"


def cpu_of_children() -> float:
    """User + system seconds of every child process this one has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean_env(**settings: str) -> dict[str, str]:
    """This shell's environment without any of the package's or Dagster's variables, plus
    `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k[:7] != "DAGSTER"}
    return {**env, "DAGSTER_DISABLE_TELEMETRY": "yes", **settings}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def section(title: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}")


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(c).rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


# --- 1. the code location ----------------------------------------------------------------------


def load_code_server(env: dict[str, str]) -> tuple[float, float]:
    """Start `dagster api grpc` as the README does; (seconds until it lists its repositories,
    CPU seconds of the server, stopped right after)."""
    from dagster._grpc.client import DagsterGrpcClient

    port = free_port()
    command = [str(BIN / "dagster"), "api", "grpc", "-m", "assets_pipeline.definitions"]
    cpu, started = cpu_of_children(), time.perf_counter()
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    try:
        while True:
            with contextlib.suppress(Exception):
                client.list_repositories()
                break
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"the code server did not answer (exit {server.returncode})")
            time.sleep(0.05)
        loaded = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)
    return loaded, cpu_of_children() - cpu


def import_definitions(env: dict[str, str]) -> tuple[float, float]:
    """A bare interpreter importing the definitions: (wall seconds, CPU seconds)."""
    cpu, started = cpu_of_children(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import assets_pipeline.definitions"], env=env, cwd=ROOT, check=True
    )
    return time.perf_counter() - started, cpu_of_children() - cpu


def bench_load(env: dict[str, str], runs: int) -> None:
    section(f"1. Loading the code location (median of {runs}, after one untimed warm-up)")
    measures = {
        "dagster api grpc: start -> lists its repositories": load_code_server,
        "python -c 'import assets_pipeline.definitions'": import_definitions,
    }
    for measure in measures.values():
        measure(env)
    timed: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
    for _ in range(runs):  # interleaved, as in section 2
        for name, measure in measures.items():
            timed[name].append(measure(env))
    rows = []
    for name, results in timed.items():
        walls, cpus = [t[0] for t in results], [t[1] for t in results]
        rows.append(
            [
                name,
                f"{statistics.median(walls):.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{statistics.median(cpus):.2f}",
            ]
        )
    table(["WHAT", "WALL S", "RANGE", "CPU S (user+sys)"], rows)


# --- 2. a refresh run on each instance ---------------------------------------------------------


def execute_run(env: dict[str, str]) -> tuple[float, float]:
    """One refresh run in its own process (`dagster job execute`): (wall seconds, CPU seconds
    of the process and the step processes it started)."""
    command = [str(BIN / "dagster"), "job", "execute", "-m", "assets_pipeline.definitions"]
    cpu, started = cpu_of_children(), time.perf_counter()
    done = subprocess.run([*command, "-j", JOB], env=env, cwd=ROOT, capture_output=True, text=True)
    wall, used = time.perf_counter() - started, cpu_of_children() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"the run failed: {done.stderr[-2000:]}")
    return wall, used


def run_durations(home: str, env: dict[str, str]) -> list[float]:
    """Each run's own start-to-end time as Dagster recorded it (the process's start-up aside)."""
    import dagster as dg

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    try:
        with dg.DagsterInstance.from_config(home) as instance:
            records = instance.get_run_records()
            return [r.end_time - r.start_time for r in records if r.end_time and r.start_time]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_runs(instances: dict[str, dict[str, str]], runs: int) -> None:
    section(
        f"2. A refresh run ({JOB}: 3 symbols, 1 call) in its own process, per Dagster storage"
        f" (median of {runs}, interleaved, after one untimed warm-up run that creates the storage)"
    )
    for env in instances.values():
        execute_run(env)
    # interleaved, one run on each storage in turn, so a change in the machine's load while the
    # bench runs weighs on both alike
    timed: dict[str, list[tuple[float, float]]] = {name: [] for name in instances}
    for _ in range(runs):
        for name, env in instances.items():
            timed[name].append(execute_run(env))
    rows = []
    for name, env in instances.items():
        walls, cpus = [t[0] for t in timed[name]], [t[1] for t in timed[name]]
        durations = run_durations(env["DAGSTER_HOME"], env)[:runs]
        rows.append(
            [
                name,
                f"{statistics.median(walls):.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{statistics.median(cpus):.2f}",
                f"{statistics.median(durations):.2f}",
            ]
        )
    table(["DAGSTER STORAGE", "WALL S", "RANGE", "CPU S (user+sys)", "RUN S (Dagster)"], rows)
    print(
        "  WALL and CPU: the whole `dagster job execute` process (interpreter, Dagster, loading"
        " the definitions, the run and its one step in the same process, exit). RUN: the run's own"
        " start to end, as"
        " Dagster recorded it."
    )


# --- set-up ------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(admin_url: str, template: str = "") -> Iterator[str]:
    """A PostgreSQL database of the bench's own, dropped on exit: its name."""
    name = f"ap_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        print(f"removed database {name}")


def dagster_home(root: Path, name: str, config: Path) -> str:
    home = root / name
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return str(home)


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}, {os.cpu_count()} cores, load average (1/5/15 min) {load}"


def project_settings(root: Path, sim_url: str, trading_url: str) -> dict[str, str]:
    document = yaml.safe_load(DEFAULT_SYMBOLS_FILE.read_text())
    document["market_hours"] = {"forex": "always", "index": "always"}  # any day, the same work
    symbols = root / "symbols.yaml"
    symbols.write_text(yaml.safe_dump(document))
    return {
        "ASSETS_CONFIG": str(symbols),
        "POLYGON_API_KEY": KEY,
        "POLYGON_BASE_URL": sim_url,
        "POLYGON_RATE_LIMIT_CALLS": "1000",
        "TRADING_DATABASE_URL": trading_url,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions of each (5)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)
    url = sa.engine.make_url(args.postgres_url)
    print(f"bench_deployment.py: {machine()}")
    with (
        tempfile.TemporaryDirectory(prefix="ap_bench_deploy_") as tmp,
        PolygonSimulator(host="127.0.0.1", port=0, api_keys={KEY}) as sim,
        database(args.postgres_url) as trading,
        database(args.postgres_url) as dagster_db,
    ):
        root = Path(tmp)
        trading_url = url.set(database=trading).render_as_string(hide_password=False)
        migrate_database(trading_url)  # as a deployment does before its services start
        env = clean_env(**project_settings(root, sim.url, trading_url))
        bench_load(env, args.runs)
        pg = {
            "DAGSTER_PG_USERNAME": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_DB": dagster_db,
        }
        instances = {
            "SQLite (dagster.yaml)": {
                **env,
                "DAGSTER_HOME": dagster_home(root, "sqlite", ROOT / "dagster.yaml"),
            },
            "PostgreSQL (deploy/dagster.yaml)": {
                **env,
                **pg,
                "DAGSTER_HOME": dagster_home(root, "postgres", ROOT / "deploy" / "dagster.yaml"),
            },
        }
        bench_runs(instances, args.runs)
    print(f"done: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
