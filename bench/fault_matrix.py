"""The fault matrix: each fault and hostile input tried against the package, and what it did.

    .venv/bin/python bench/fault_matrix.py [--only NAME] [--postgres-url URL] [--redis-url URL]

Prints a Markdown table, one row per fault: fault | what happened | figures. Every row is
measured on this run, against this project's code, the project's Polygon simulator (or a hostile
HTTP server of our own) on loopback, and this machine's PostgreSQL and Redis. Each scenario that
needs them gets its own temporary database (created from the admin URL, dropped after) and its
own Redis key namespace (`faults:<hex>:`, deleted after); nothing else is touched.

Exits 1 if any scenario breaks an invariant (an escape from the parser, a 429, a duplicate or
lost event, a half-written row, ...) or fails to run; the broken invariant is named in its row.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import json
import logging
import math
import multiprocessing as mp
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import sqlalchemy as sa
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import (
    AssetType,
    Registry,
    RegistryError,
    load_registry,
    parse_registry,
)
from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.http.errors import PermanentError, PolygonError, RetryableError
from assets_pipeline.http.transport import AnswerTooLarge, AnswerTooSlow
from assets_pipeline.persistence import redis_client as redis_clients
from assets_pipeline.persistence.database import Engines, migrate_database
from assets_pipeline.persistence.outbox import pending_count, publishing_paused, relay_pending
from assets_pipeline.persistence.provider_state import provider_syncs, recently_failed
from assets_pipeline.persistence.quote_store import QuoteStore, as_utc
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.persistence.schema import event_outbox, quote_history, symbols
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.polygon.parsing import (
    error_from_response,
    load_json,
    parse_v2_single,
    parse_v3_snapshot,
)
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.providers.oanda import OandaProvider
from assets_pipeline.refresh import Refresh, plan_refresh
from assets_pipeline.rules import clock
from assets_pipeline.rules.quality import assess_quality
from assets_pipeline.rules.quotes import (
    MAX_PLAUSIBLE_PRICE,
    Quote,
    QuoteRejected,
    iso_utc,
    validate_quote,
)
from assets_pipeline.rules.run_kinds import CRITICAL as CRITICAL_RUN
from assets_pipeline.simulator import Fault, PolygonSimulator
from assets_pipeline.simulator.kraken import KrakenFault, KrakenSimulator
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT as OANDA_ACCOUNT
from assets_pipeline.simulator.oanda import DEFAULT_TOKEN as OANDA_TOKEN
from assets_pipeline.simulator.oanda import OandaSimulator
from assets_pipeline.sourcing import Source, Sourcing, polygon_live

ROOT = Path(__file__).resolve().parents[1]
RESPONSES = ROOT / "assets_pipeline_tests" / "data" / "polygon" / "responses"
CLI = Path(sys.executable).parent / "assets-pipeline"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: This benchmark's engines, one per database URL, each disposed of when it is done with it.
ENGINES = Engines()
get_engine = ENGINES.get
dispose_engine = ENGINES.dispose
KEY = "sk-fault-matrix-0123456789"
CRITICAL = ("XAUUSD", "EURUSD", "BTCUSD")
#: What the package's own code raises for a bad answer: anything else is an escape.
OURS = (PolygonError, QuoteRejected)
#: Variables the package reads; none may leak in from the caller's shell.
ENV_NAMES = VARIABLES
#: Dagster runs in this process log nothing below CRITICAL: the table is the output.
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
QUIET = logging.getLogger("fault_matrix.client")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

#: The budget scenario: processes, calls each, and the limit (the simulator enforces the same).
PROCESSES, CALLS_EACH, LIMIT, WINDOW = 4, 8, 5, 2.0
FUZZ_CASES, FUZZ_SEED = 5000, 1


# --- rows and services -----------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    happened: str
    figures: str
    broken: list[str] = field(default_factory=list)


def row(fault, happened, figures, **invariants):
    """A table row; each keyword is an invariant that must be True (its name, if not, is
    reported as broken)."""
    broken = [name.replace("_", " ") for name, held in invariants.items() if not held]
    return Row(fault, happened, figures, broken)


@dataclass(frozen=True)
class Services:
    postgres_admin_url: str
    redis_url: str

    def admin(self):
        return sa.create_engine(
            self.postgres_admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
        )

    def redis(self):
        return redis.Redis.from_url(self.redis_url)

    @contextlib.contextmanager
    def database(self):
        """A fresh database of the scenario's own (migrated), dropped after."""
        name = f"ap_faults_{uuid.uuid4().hex[:12]}"
        admin = self.admin()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(self.postgres_admin_url).set(database=name)
        url = url.render_as_string(hide_password=False)
        try:
            migrate_database(url)
            yield url
        finally:
            dispose_engine(url)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

    @contextlib.contextmanager
    def namespace(self):
        """A Redis key and channel prefix of the scenario's own, its keys deleted after."""
        namespace = f"faults:{uuid.uuid4().hex[:10]}:"
        try:
            yield namespace
        finally:
            client = self.redis()
            keys = list(client.scan_iter(match=f"{namespace}*"))
            if keys:
                client.delete(*keys)
            client.close()

    def budget(self, namespace, limit=1000, window=60.0):
        store = RedisBudgetStore(self.redis(), "polygon", namespace)
        return PolygonBudget(store, limit, window)


@contextlib.contextmanager
def environment(values):
    """The package's variables set to `values` (and no others) for the block."""
    saved = {name: os.environ.get(name) for name in (*ENV_NAMES, *values)}
    for name in ENV_NAMES:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def deployment(sim, database_url, namespace, redis_url, **extra):
    """The code location as production builds it from its environment; yields `run(job)`,
    which materializes the live quotes in this process, on an ephemeral Dagster instance."""
    import dagster as dg

    from assets_pipeline.location import build_definitions

    values = {
        "POLYGON_API_KEY": KEY,
        "POLYGON_BASE_URL": sim.url,
        "POLYGON_RATE_LIMIT_CALLS": "100",
        "TRADING_DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        **extra,
    }
    with environment(values), dg.DagsterInstance.ephemeral() as instance:

        def run(job="refresh_critical", tags=None):
            return (
                build_definitions()
                .resolve_job_def(job)
                .execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    run_config=QUIET_RUN,
                    tags=tags,
                )
            )

        yield run


def api_requests(sim):
    return [r for r in sim.requests if not r.path.startswith("/_sim")]


def recorded(name):
    return json.loads((RESPONSES / name).read_text())


def ms(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def clip(text, limit=90):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- answers that never end or never stop growing --------------------------------------------


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up on a hostile answer is the point, not an error


class HostileServer:
    """A local HTTP server answering every GET with `respond(handler)`; counts bytes sent."""

    def __init__(self, respond, port=0):
        outer = self
        self.sent = 0
        #: Every request received: (path, headers).
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append((self.path, dict(self.headers)))
                try:
                    respond(self, outer)
                except OSError:
                    pass  # the client hung up: what a bounded client does

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def write(self, handler, data):
        handler.wfile.write(data)
        self.sent += len(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def headers(handler, length, gzip=False):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if gzip:
        handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(length))
    handler.end_headers()


def trickle(handler, server):
    """Headers at once, then a byte every 0.2 s for 10 s: each wait is short, the answer long."""
    headers(handler, 1_000_000)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        server.write(handler, b" ")
        handler.wfile.flush()
        time.sleep(0.2)


def endless(handler, server):
    """50 MB of a JSON document that never closes, as fast as the client reads."""
    headers(handler, 50_000_000)
    server.write(handler, b'{"status": "OK", "results": [')
    for _ in range(50_000):
        server.write(handler, b"1," * 500)


GZIP_BOMB = None


def gzip_bomb(handler, server):
    """About 100 KB on the wire that expands to 100 MB."""
    global GZIP_BOMB
    if GZIP_BOMB is None:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
        chunks = [packer.compress(b" " * 1_000_000) for _ in range(100)]
        GZIP_BOMB = b"".join(chunks) + packer.flush()
    if handler is None:
        return
    headers(handler, len(GZIP_BOMB), gzip=True)
    server.write(handler, GZIP_BOMB)


def hostile_call(svc, respond):
    """(the error, seconds, bytes the server got out, calls made) of one bounded request."""
    server = HostileServer(respond)
    try:
        with svc.namespace() as namespace:
            client = PolygonClient(
                server.url,
                KEY,
                svc.budget(namespace),
                read_timeout=5,
                total_timeout=1.0,
                max_body_bytes=1_000_000,
                max_retries=0,
                logger=QUIET,
            )
            started = time.perf_counter()
            try:
                client.snapshot("C:EURUSD", AssetType.FOREX)
                error = None
            except Exception as exc:  # noqa: BLE001 - reported in the row, whatever it is
                error = exc
            took = time.perf_counter() - started
            client.close()
    finally:
        server.close()
    return error, took, server.sent, client.calls


def bounded(fault, error, expected, took, figures):
    said = str(error).rsplit(": ", 1)[-1]
    what = f"{type(error).__name__}: {said}" if error else "no error: answer accepted"
    return row(
        fault,
        f"the request failed, retryable, with {what}",
        figures,
        failed_with_the_expected_error=isinstance(error, expected),
        retryable=getattr(error, "retryable", False),
        under_two_seconds=took < 2,
    )


def slow_answer(svc):
    error, took, sent, calls = hostile_call(svc, trickle)
    return bounded(
        "An answer trickling one byte every 0.2 s (headers at once, 10 s in all)",
        error,
        AnswerTooSlow,
        took,
        f"deadline 1 s (`total_timeout`); gave up after {ms(took)}, {sent} bytes read; "
        f"{calls} call",
    )


def endless_answer(svc):
    error, took, sent, calls = hostile_call(svc, endless)
    return bounded(
        "A 50 MB answer that never closes its JSON",
        error,
        AnswerTooLarge,
        took,
        f"cap 1,000,000 bytes (`max_body_bytes`); stopped after {ms(took)}, "
        f"{sent / 1e6:.1f} MB of 50 sent before the hang-up; {calls} call",
    )


def gzip_answer(svc):
    gzip_bomb(None, None)  # made before the client's clock starts: it takes seconds under load
    error, took, sent, calls = hostile_call(svc, gzip_bomb)
    return bounded(
        "A gzip bomb: 100 MB of JSON compressed to about 100 KB",
        error,
        AnswerTooLarge,
        took,
        f"{sent / 1e3:.0f} KB on the wire; counted decoded against the 1,000,000-byte cap; "
        f"stopped after {ms(took)}; {calls} call",
    )


# --- hostile bodies --------------------------------------------------------------------------


def parse_text(text, parser=parse_v2_single):
    """What a body ends as: ('ok', result) or (error class name, the error)."""
    try:
        return "ok", parser(load_json(text))
    except Exception as exc:  # noqa: BLE001 - the row says what it was
        return type(exc).__name__, exc


def deep_nesting(svc):
    depth = 100_000
    started = time.perf_counter()
    kinds = [
        parse_text("[" * depth + "]" * depth)[0],
        parse_text('{"a":' * depth + "1" + "}" * depth)[0],
    ]
    took = time.perf_counter() - started
    return row(
        "JSON nested 100,000 deep (lists, and objects)",
        f"refused as {' and '.join(sorted(set(kinds)))} before parsing (deeper than any"
        " Polygon answer; retryable), so the parser never reaches Python's recursion limit",
        f"2 of 2 refused in {ms(took)}; no RecursionError escaped",
        both_malformed=kinds == ["MalformedResponse"] * 2,
    )


def huge_numbers(svc):
    body = recorded("v2_forex_ticker_C_EURUSD.json")
    body["ticker"]["lastQuote"]["b"] = "__BID__"
    as_bid = json.dumps(body).replace('"__BID__"', "1" + "0" * 400)
    cases = {
        "a 400-digit number as the ticker": '{"status": "OK", "ticker": ' + "9" * 400 + "}",
        "a 5,000-digit number": '{"status": "OK", "ticker": ' + "9" * 5000 + "}",
        "a 400-digit bid": as_bid,
    }
    outcomes = {name: parse_text(text) for name, text in cases.items()}
    kinds = {name: kind for name, (kind, _) in outcomes.items()}
    return row(
        "Numbers of 400 and 5,000 digits",
        f"the ticker and the 5,000 digits: {kinds['a 400-digit number as the ticker']}, "
        f"{kinds['a 5,000-digit number']}; the bid: {kinds['a 400-digit bid']} "
        f'("{outcomes["a 400-digit bid"][1].reason}")',
        f"{sum(k != 'ok' for k in kinds.values())} of {len(cases)} refused; no OverflowError "
        "or ValueError escaped",
        all_ours=all(isinstance(error, OURS) for _, error in outcomes.values()),
        first_two_malformed=list(kinds.values())[:2] == ["MalformedResponse"] * 2,
    )


def hard_rule_cases():
    """({name: body or quote} breaking each hard rule once, {name: quote} just inside the
    bounds, the time to judge them at)."""
    forex, crypto = (
        recorded("v2_forex_ticker_C_EURUSD.json"),
        recorded("v2_crypto_ticker_X_BTCUSD.json"),
    )
    base = parse_v2_single(forex)
    now = base.data_time
    replace = dataclasses.replace
    bodies = {
        "forex without its ask": (forex, lambda b: b["ticker"]["lastQuote"].update(a=None)),
        "crypto without its trade price": (
            crypto,
            lambda b: b["ticker"]["lastTrade"].update(p=None),
        ),
        "a price without its own time": (forex, lambda b: b["ticker"]["lastQuote"].pop("t")),
    }
    broken = {name: mutated(body, change) for name, (body, change) in bodies.items()}
    broken |= {
        "a NaN bid": replace(base, bid=math.nan),
        "an infinite ask": replace(base, ask=math.inf),
        "a last price of 0": replace(base, last_price=0.0),
        "a negative bid": replace(base, bid=-1.0),
        "a crossed quote": replace(base, bid=base.ask + 0.001),
        "a price above 1e9": replace(base, bid=2e9, ask=2e9 + 1, last_price=2e9),
        "61 s in the future": replace(base, data_time=now + dt.timedelta(seconds=61)),
        "31 days old": replace(base, data_time=now - dt.timedelta(days=31)),
    }
    inside = {
        "59 s ahead": replace(base, data_time=now + dt.timedelta(seconds=59)),
        "29 days old": replace(base, data_time=now - dt.timedelta(days=29)),
        "a price of exactly 1e9": replace(base, bid=1e9, ask=1e9, last_price=1e9),
    }
    return broken, inside, now


def mutated(body, change):
    body = copy.deepcopy(body)
    change(body)
    return body


def judged(case, now):
    """The reason a case is rejected, or None if it is accepted."""
    try:
        quote = case if isinstance(case, Quote) else parse_v2_single(case)
        validate_quote(quote, now=now)
    except QuoteRejected as exc:
        return exc.reason
    return None


def hard_rules(svc):
    broken, inside, now = hard_rule_cases()
    reasons = {name: judged(case, now) for name, case in broken.items()}
    accepted = [name for name, case in inside.items() if judged(case, now) is None]
    rejected = [name for name, reason in reasons.items() if reason]
    return row(
        "Each hard rule broken once: forex without its bid or ask, crypto without its trade "
        "price, no time of its own, NaN, infinity, 0, negative, crossed, above 1e9, 61 s ahead, "
        "31 days old",
        f"each refused as `QuoteRejected` with its reason before any write, e.g. "
        f'"{reasons["forex without its ask"]}"',
        f"{len(rejected)} of {len(broken)} rejected; {len(accepted)} of {len(inside)} just "
        f"inside the bounds accepted ({', '.join(inside)})",
        every_broken_rule_rejected=len(rejected) == len(broken),
        bounds_accepted=len(accepted) == len(inside),
    )


# --- the fuzz --------------------------------------------------------------------------------

SNAPSHOTS = {
    "v2_forex_ticker_C_EURUSD.json": parse_v2_single,
    "v2_crypto_ticker_X_BTCUSD.json": parse_v2_single,
    "v3_snapshot_mixed.json": lambda body: parse_v3_snapshot(body)[0],
}
HOSTILE_VALUES = (
    None, "", "1.08", "NaN", "<html>", "1e999", "0x10", "9" * 60, "\u0000", "\U0001f600",
    math.nan, math.inf, -math.inf, 0, -1, 0.0, 1e-320, 9e18, True, False,
    10**400, -(10**30), 2**63, 253402300800000, 99999999999999999999,
    [], {}, [[[[1]]]], {"a": {"b": None}},
)  # fmt: skip
TIMESTAMP = r"\d{4}-\d\d-\d\dT[\d:.]+Z"
HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += paths(child, (*prefix, index))
    return out


def change_fields(rng, body, others):
    """One to three values replaced by a hostile one, or removed."""
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        candidates = paths(body)[1:]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(HOSTILE_VALUES)
    return json.dumps(body)


def many_digits(rng, body, others):
    body = copy.deepcopy(body)
    path = rng.choice(paths(body)[1:])
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = "__DIGITS__"
    digits = rng.choice(["9" * 400, "1" + "0" * 5000, "-" + "7" * 400, "0." + "1" * 5000])
    return json.dumps(body).replace('"__DIGITS__"', digits)


def truncated(rng, body, others):
    text = json.dumps(body)
    return text[: rng.randrange(len(text))]


def deep(rng, body, others):
    depth = rng.randrange(1000, 200_001)
    return "[" * depth + "]" * depth


def random_bytes(rng, body, others):
    return rng.randbytes(rng.randrange(65)).decode("latin-1")


def html_page(rng, body, others):
    return HTML_PAGE


def other_endpoint(rng, body, others):
    return rng.choice(others)


def not_an_object(rng, body, others):
    return json.dumps(rng.choice([[], "OK", 1, None, [body]]))


#: Each mutation and its weight.
MUTATIONS = {
    change_fields: 60,
    truncated: 8,
    deep: 5,
    many_digits: 6,
    random_bytes: 5,
    html_page: 3,
    other_endpoint: 8,
    not_an_object: 5,
}


def sound(quote):
    """What an accepted quote must be, checked apart from `validate_quote`."""
    return (
        math.isfinite(quote.last_price or math.nan)
        and 0 < quote.last_price <= MAX_PLAUSIBLE_PRICE
        and (quote.bid is None) == (quote.ask is None)
        and (quote.bid is None or 0 < quote.bid <= quote.ask)
        and quote.data_time.tzinfo is not None
    )


def outcomes(parser, text, now):
    """One label per answer in the body: accepted, the error class, or ESCAPE:<class>."""
    try:
        parsed = parser(load_json(text))
        answers = parsed.values() if isinstance(parsed, dict) else [parsed]
        labels = []
        for answer in answers:
            if isinstance(answer, Quote):
                try:
                    validate_quote(answer, now=now)
                    labels.append("accepted" if sound(answer) else "UNSOUND")
                except QuoteRejected:
                    labels.append("QuoteRejected")
            else:
                ours = isinstance(answer, OURS)
                labels.append(type(answer).__name__ if ours else f"ESCAPE:{type(answer).__name__}")
        return labels
    except OURS as exc:
        return [type(exc).__name__]
    except Exception as exc:  # noqa: BLE001 - an escape: counted, and the invariant fails
        return [f"ESCAPE:{type(exc).__name__}"]


def fuzz_now(name, parser):
    """A minute after the recorded body's newest quote: the unmutated body is accepted."""
    parsed = parser(recorded(name))
    answers = parsed.values() if isinstance(parsed, dict) else [parsed]
    return max(a.data_time for a in answers if isinstance(a, Quote)) + dt.timedelta(minutes=1)


def fuzz(svc):
    rng = random.Random(FUZZ_SEED)
    bodies = {name: recorded(name) for name in SNAPSHOTS}
    nows = {name: fuzz_now(name, parser) for name, parser in SNAPSHOTS.items()}
    others = [p.read_text() for p in sorted(RESPONSES.glob("*.json"))]
    kinds, weights = list(MUTATIONS), list(MUTATIONS.values())
    labels, empty = Counter(), 0
    started = time.perf_counter()
    for _ in range(FUZZ_CASES):
        name = rng.choice(sorted(SNAPSHOTS))
        kind = rng.choices(kinds, weights)[0]
        text = kind(rng, bodies[name], others)
        found = outcomes(SNAPSHOTS[name], text, nows[name])
        empty += not found
        labels.update(found)
    took = time.perf_counter() - started
    return fuzz_row(labels, empty, took)


def fuzz_row(labels, empty, took):
    escapes = {k: n for k, n in labels.items() if k.startswith("ESCAPE")}
    accepted, unsound = labels["accepted"], labels["UNSOUND"]
    rejected = {k: n for k, n in labels.items() if k not in ("accepted", "UNSOUND", *escapes)}
    by_class = ", ".join(f"{k} {n:,}" for k, n in sorted(rejected.items(), key=lambda kv: -kv[1]))
    happened = (
        "every body ended in a quote that passes the hard rules or in one of the package's "
        "errors with its reason"
        if not escapes
        else f"escapes: {escapes}"
    )
    return row(
        f"Fuzz: {FUZZ_CASES:,} mutated recorded snapshot bodies (random.Random({FUZZ_SEED})): "
        "fields replaced or removed, truncated, deep nesting, huge numbers, random bytes, HTML, "
        "another endpoint's body, not an object",
        happened,
        f"{FUZZ_CASES:,} cases, {sum(labels.values()):,} answers ({empty} empty pages): "
        f"{accepted:,} accepted; {sum(rejected.values()):,} rejected ({by_class}); "
        f"**{sum(escapes.values())} escapes**; {unsound} accepted quotes breaking a rule; "
        f"{took:.1f} s",
        zero_escapes=not escapes,
        no_unsound_accepts=unsound == 0,
    )


# --- the simulator's faults ------------------------------------------------------------------


def simulated_client(svc, namespace, sim, **options):
    options = {"backoff_seconds": 0.01, "read_timeout": 0.5, "max_retries": 2, **options}
    return PolygonClient(sim.url, KEY, svc.budget(namespace), logger=QUIET, **options)


def server_errors(svc):
    with svc.namespace() as namespace, PolygonSimulator(host="127.0.0.1", port=0) as sim:
        client = simulated_client(svc, namespace, sim)
        quotes = []
        for kind in ("http_503", "malformed"):
            sim.add_fault(Fault(kind, ticker="C:EURUSD", count=1))
            quotes.append(client.snapshot("C:EURUSD", AssetType.FOREX))
        statuses = [r.status for r in api_requests(sim)]
        sim.add_fault(Fault("timeout", ticker="C:GBPUSD", delay=1.5))
        try:
            client.snapshot("C:GBPUSD", AssetType.FOREX)
            hung = None
        except RetryableError as exc:
            hung = exc
        paid = client.budget.stats().total_calls
        client.close()
    said = re.sub(r" /v\d/\S+", "", str(hung))
    return row(
        "A 503 page; a truncated 200 body; a server that does not answer",
        f"the first two retried and answered; the silent one gave up after its 2 retries as "
        f"{type(hung).__name__} ({said}), retryable",
        f"statuses {statuses} (each fault, then its retry); 3 attempts at the silent server "
        f"(read timeout 0.5 s); every attempt paid from the budget: {paid} slots for "
        f"{client.calls} requests",
        retried_to_a_quote=len(quotes) == 2 and statuses == [503, 200, 200, 200],
        hang_retryable=hung is not None,
        every_attempt_paid=paid == client.calls == 7,
    )


def rate_limited(svc):
    with svc.namespace() as namespace, PolygonSimulator(host="127.0.0.1", port=0) as sim:
        client = simulated_client(svc, namespace, sim)
        client.budget = svc.budget(namespace, limit=1000, window=0.5)
        sim.add_fault(Fault("rate_limited", count=1))
        client.snapshot("C:EURUSD", AssetType.FOREX)
        first, retried = api_requests(sim)
        stats = client.budget.stats()
        client.close()
    gap = retried.at - first.at
    return row(
        "A 429 from Polygon",
        "the shared budget paused every caller for a whole window (Polygon sends no "
        "Retry-After); then the request was retried and answered",
        f"statuses {first.status}, {retried.status}; the retry went {ms(gap)} after the 429 "
        f"(window 0.5 s + 0.5 s margin); budget waits {stats.total_waits}",
        retried_after_the_window=gap >= 0.5 and retried.status == 200,
    )


def permanent_errors(svc):
    with svc.namespace() as namespace, PolygonSimulator(host="127.0.0.1", port=0) as sim:
        client = simulated_client(svc, namespace, sim)
        sim.add_fault(Fault("forbidden", ticker="C:EURUSD"))
        errors = []
        for ticker in ("C:EURUSD", "C:ZZZUSD"):
            try:
                client.snapshot(ticker, AssetType.FOREX)
            except PermanentError as exc:
                errors.append(exc)
        statuses = [r.status for r in api_requests(sim)]
        client.close()
    names = ", ".join(type(e).__name__ for e in errors)
    return row(
        "A 403 (plan not entitled) and a 404 (unknown ticker)",
        f"each failed at once as {names}, not retryable",
        f"statuses {statuses}: 1 request each, no retry spent from the budget",
        permanent=len(errors) == 2 and not any(e.retryable for e in errors),
        never_retried=statuses == [403, 404],
    )


def bad_items(svc):
    registry = load_registry()
    specs = [registry.get(s) for s in ("EURUSD", "GBPUSD", "BTCUSD", "USDJPY")]
    results = {}
    with svc.namespace() as namespace, PolygonSimulator(host="127.0.0.1", port=0) as sim:
        client = simulated_client(svc, namespace, sim)
        sim.add_fault(Fault("crossed", ticker="C:EURUSD"))
        sim.add_fault(Fault("future", ticker="C:GBPUSD"))
        sim.add_fault(Fault("negative_price", ticker="X:BTCUSD"))
        for mode in ("batch", "per_ticker"):
            result = FetchResult(mode=mode)
            for _ in client.iter_fetch(specs, mode, result):
                pass
            results[mode] = result
        client.close()
    batch = results["batch"]
    reasons = "; ".join(f"{s}: {rejection_reason(e)}" for s, e in batch.errors.items())
    return row(
        "A crossed, a future and a negative quote in one answer, beside a good one",
        f"each bad symbol failed alone with its reason ({reasons}); the good one was kept",
        f"batch: {batch.api_calls} call, {len(batch.quotes)} of 4 kept; per_ticker: "
        f"{results['per_ticker'].api_calls} calls, {len(results['per_ticker'].quotes)} of 4 kept",
        only_the_good_kept=all(sorted(r.quotes) == ["USDJPY"] for r in results.values()),
    )


def rejection_reason(error):
    """The reason alone, without the ticker and the clock's details."""
    return str(error).split("rejected: ", 1)[-1].split(" (", 1)[0]


# --- quality warnings (written) --------------------------------------------------------------


def quality_warnings(svc):
    registry = load_registry()
    spec = registry.get("EURUSD")
    now = clock.utcnow()

    def quote(seconds_ago, bid, ask):
        at = now - dt.timedelta(seconds=seconds_ago)
        return Quote("C:EURUSD", at, "fault-matrix", bid, ask, (bid + ask) / 2, symbol="EURUSD")

    # (quote, passes the check, written), in order, each judged against the one stored before
    cases = [
        (quote(60, 1.1000, 1.1001), True, True),
        (quote(50, 1.1000, 1.1070), False, True),  # a wide spread
        (quote(40, 1.1660, 1.1661), False, True),  # a jump
        (quote(45, 1.1661, 1.1662), False, False),  # older than the stored one
        (quote(30, 1.1661, 1.1662), True, True),
    ]
    seen = []
    with svc.database() as url:
        store = QuoteStore(get_engine(url))
        for new, passes, written in cases:
            verdict = assess_quality(new, store.latest_quote("EURUSD"), registry.quality)
            outcome = store.write_quote(spec, new)
            seen.append((verdict, outcome, passes, written))
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(quote_history)).scalar()
    warned = "; ".join(
        f'"{re.sub(TIMESTAMP, "…", v.problems[0]).split(": not stored")[0]}": '
        f"{'written' if o.written else 'not written'}"
        for v, o, _, _ in seen
        if v.problems
    )
    return row(
        "Quality warnings: a spread over 50 bp, a jump over 5 %, a quote not newer than the "
        "stored one",
        "the `quote_quality` check warned with the numbers; the wide and the jumping quotes "
        "were written, the older one was not (the stored quote is newer)",
        f"{warned}; {sum(v.passed for v, *_ in seen)} quotes within the limits passed; "
        f"{rows} history rows for {len(cases)} quotes",
        verdicts_as_expected=all(v.passed == p and o.written == w for v, o, p, w in seen),
    )


# --- Redis down: events ----------------------------------------------------------------------


@contextlib.contextmanager
def hung_redis():
    """A Redis address that accepts connections and never answers, and a client with 0.2 s
    timeouts and no retries, with its publishing breaker (as the Redis resource's client)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    client = redis_clients.Client(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        client.close()
        listener.close()


def synthetic_quote(spec, at, n):
    if spec.asset_type == AssetType.CRYPTO:
        return Quote(
            spec.polygon_ticker, at, "fault-matrix", last_price=90000.0 + n, symbol=spec.symbol
        )
    mid = {"XAUUSD": 2650.0, "EURUSD": 1.05}[spec.symbol] * (1 + n / 10_000)
    return Quote(
        spec.polygon_ticker, at, "fault-matrix", mid * 0.9999, mid * 1.0001, mid, symbol=spec.symbol
    )


def write_during_outage(store, down, rounds):
    """The IO manager's steps for each quote: write it, then publish unless the breaker is
    open. Returns (seconds, whether it tried Redis) per write."""
    registry = load_registry()
    start = clock.utcnow() - dt.timedelta(minutes=5)
    writes = []
    for n in range(rounds):
        for symbol in CRITICAL:
            spec = registry.get(symbol)
            at = start + dt.timedelta(seconds=n)
            began = time.perf_counter()
            store.write_quote(spec, synthetic_quote(spec, at, n))
            tried = not publishing_paused(down)
            if tried:
                relay_pending(store.engine, down)
            writes.append((time.perf_counter() - began, tried))
    return writes


def delivered(listener, quiet=0.5):
    out = []
    while (message := listener.get_message(timeout=quiet)) is not None:
        if message["type"] == "pmessage":
            out.append(json.loads(message["data"]))
    return out


def sequences_without_gaps(entries):
    by_symbol = {}
    for _, fields in entries:
        by_symbol.setdefault(fields[b"symbol"], []).append(int(fields[b"sequence"]))
    return all(seq == list(range(1, len(seq) + 1)) for seq in by_symbol.values()), by_symbol


def redis_outage_events(svc):
    rounds = 5
    with svc.database() as url, svc.namespace() as namespace:
        store = QuoteStore(get_engine(url), namespace)
        with hung_redis() as down:
            writes = write_during_outage(store, down, rounds)
        committed = pending_count(store.engine)
        live = svc.redis()
        listener = live.pubsub()
        listener.psubscribe(f"{namespace}asset:update:*")
        listener.get_message(timeout=2)  # the subscription's confirmation
        first, again = relay_pending(store.engine, live), relay_pending(store.engine, live)
        messages = delivered(listener)
        listener.close()
        entries = live.xrange(f"{namespace}asset:{{updates}}")
        with store.engine.connect() as conn:
            order = conn.execute(sa.select(event_outbox.c.event_id).order_by(event_outbox.c.id))
            order = order.scalars().all()
        live.close()
    return redis_outage_row(writes, committed, first, again, messages, entries, order)


def redis_outage_row(writes, committed, first, again, messages, entries, order):
    ids = [m["event_id"] for m in messages]
    duplicates = len(ids) - len(set(ids))
    gapless, by_symbol = sequences_without_gaps(entries)
    rounds = max((len(s) for s in by_symbol.values()), default=0)
    waits = [seconds for seconds, _ in writes]
    tried = sum(t for _, t in writes)
    return row(
        "Redis hung (accepts connections, never answers) while quotes are written; then back",
        "every write committed, its event kept in the outbox; the first write paid one Redis "
        "timeout, then the publishing breaker left the rest to the relay, which delivered the "
        "backlog oldest first, once",
        f"{len(waits)} writes, {tried} of them tried Redis: the first took {ms(waits[0])} "
        f"(0.2 s timeout), the other {len(waits) - 1} a median {ms(statistics.median(waits[1:]))}"
        f", at most {ms(max(waits[1:]))}; committed {committed}, delivered "
        f"{len(ids)} (Pub/Sub) and {len(entries)} (stream), lost {committed - len(set(ids))}, "
        f"duplicates {duplicates}; sequences 1..{rounds} per symbol without gaps: {gapless}; "
        f"a second relay sent {again.sent}",
        one_write_waited=tried == 1,
        nothing_lost=len(set(ids)) == committed == len(waits),
        no_duplicates=duplicates == 0 and again.sent == 0,
        oldest_first=ids == list(order),
        stream_complete=len(entries) == committed and gapless and first.error is None,
    )


# --- Redis down: the budget ------------------------------------------------------------------


def redis_outage_budget(svc):
    closed = "redis://127.0.0.1:1/0"
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        deployment(sim, url, namespace, closed, POLYGON_BUDGET_STORE="auto") as run,
    ):
        result = run()
        calls = len(api_requests(sim))
        store = QuoteStore(get_engine(url), namespace)
        statuses = {s: store.sync_status(s) for s in CRITICAL}
    said = statuses["EURUSD"]["error_message"] or ""
    return row(
        "Redis down with the budget in Redis (`POLYGON_BUDGET_STORE=auto`, `REDIS_URL` on a "
        "closed port), a critical refresh run",
        f"no call made (failing closed); the run failed and each symbol's sync status says: "
        f'"{said.split(": ConnectionError", 1)[0]}"',
        f"{calls} requests at the simulator; "
        f"{sum(s['sync_status'] == 'failed' for s in statuses.values())} of 3 symbols `failed`",
        no_call=calls == 0 and not result.success,
        status_says_so=all(
            "budget store (redis) is unreachable" in (s["error_message"] or "")
            for s in statuses.values()
        ),
    )


# --- PostgreSQL restarts mid-run -------------------------------------------------------------


def consistency(engine):
    """(history rows, events, symbols whose last_update is not their latest history row,
    history rows without their event)."""
    with engine.connect() as conn:
        metas = conn.execute(sa.select(symbols.c.symbol, symbols.c.meta)).all()
        history = conn.execute(
            sa.select(
                quote_history.c.symbol, quote_history.c.quote_time, quote_history.c.last_price
            )
        ).all()
        events = conn.execute(sa.select(event_outbox.c.symbol, event_outbox.c.payload)).all()
    latest = {}
    for h in history:
        if h.symbol not in latest or h.quote_time > latest[h.symbol].quote_time:
            latest[h.symbol] = h
    half = []
    for symbol, meta in metas:
        meta = json.loads(meta) if isinstance(meta, str) else meta
        last, newest = meta.get("last_update"), latest.get(symbol)
        if last is None and newest is None:
            continue
        if (
            last is None
            or newest is None
            or last["timestamp"] != iso_utc(as_utc(newest.quote_time))
            or last["last_price"] != newest.last_price
        ):
            half.append(symbol)
    announced = {(e.symbol, json.loads(e.payload)["data"]["timestamp"]) for e in events}
    orphans = [h for h in history if (h.symbol, iso_utc(as_utc(h.quote_time))) not in announced]
    return len(history), len(events), half, orphans


def cut_connections(svc, database, store, earlier):
    """Once XAUUSD is stored, refuse new connections to `database` and end the open ones."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if store.sync_status("XAUUSD")["last_sync_timestamp"] != earlier["XAUUSD"]:
            break
        time.sleep(0.05)
    admin = svc.admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
    admin.dispose()


def allow_connections(svc, database):
    admin = svc.admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    admin.dispose()


def postgres_restart(svc):
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        deployment(sim, url, namespace, svc.redis_url, POLYGON_SNAPSHOT_MODE="per_ticker") as run,
    ):
        store = QuoteStore(get_engine(url), namespace)
        earlier_ok = run().success
        earlier = {s: store.sync_status(s)["last_sync_timestamp"] for s in CRITICAL}
        sim.add_fault(Fault("timeout", ticker="C:EURUSD", delay=3.0, count=1))  # slow, not too slow
        database = sa.engine.make_url(url).database
        outage = threading.Thread(target=cut_connections, args=(svc, database, store, earlier))
        outage.start()
        try:
            during = run()
        finally:
            outage.join()
            allow_connections(svc, database)
        statuses = {s: store.sync_status(s) for s in CRITICAL}
        after = consistency(store.engine)
        recovered = run()
        healed = consistency(store.engine)
        final = {s: store.sync_status(s)["sync_status"] for s in CRITICAL}
    return postgres_row(earlier_ok, during, statuses, earlier, after, recovered, healed, final)


def postgres_row(earlier_ok, during, statuses, earlier, after, recovered, healed, final):
    history, events, half, orphans = after
    unreached = [s for s in CRITICAL if s != "XAUUSD"]
    kept_time = all(statuses[s]["last_sync_timestamp"] == earlier[s] for s in unreached)
    listed = ", ".join(f"{s} {statuses[s]['sync_status']}" for s in CRITICAL)
    return row(
        "PostgreSQL restarts mid-run (the scenario's database refuses connections and its "
        "sessions are terminated once XAUUSD is stored, while EURUSD's answer is on its way)",
        "the run failed; the symbol it stored says `success`, the ones it did not reach say "
        "`in_progress` (not the earlier run's `success`); nothing half written; the next run "
        "stored all three",
        f"after the outage: {listed}; {history} history rows, {events} events: "
        f"{len(half)} symbols rows disagreeing with their latest history row, {len(orphans)} "
        f"history rows without their event; next run: {sum(v == 'success' for v in final.values())}"
        f" of 3 `success`, {healed[0]} history rows, {len(healed[2]) + len(healed[3])} "
        "inconsistencies",
        first_run_stored=earlier_ok,
        outage_run_failed=not during.success,
        statuses_tell=statuses["XAUUSD"]["sync_status"] == "success"
        and all(statuses[s]["sync_status"] == "in_progress" for s in unreached)
        and kept_time,
        no_half_written_rows=not half and not orphans and history == events,
        recovered=recovered.success and set(final.values()) == {"success"},
        consistent_after_recovery=not healed[2] and not healed[3] and healed[0] == healed[1],
    )


# --- many processes, one budget --------------------------------------------------------------


def budget_store(kind, target, redis_url):
    if kind == "redis":
        return RedisBudgetStore(redis.Redis.from_url(redis_url), "polygon", target)
    return SqlBudgetStore(get_engine(target), "polygon")


def hammer(kind, target, redis_url, base_url, calls, barrier):
    """One process: `calls` snapshots through its own client, within the shared budget."""
    budget = PolygonBudget(budget_store(kind, target, redis_url), LIMIT, WINDOW)
    client = PolygonClient(base_url, KEY, budget, max_retries=0, logger=QUIET)
    barrier.wait(timeout=60)
    for _ in range(calls):
        client.snapshot("C:EURUSD", AssetType.FOREX)


def max_in_any_window(times, window):
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times)),
        default=0,
    )


def run_processes(kind, target, redis_url):
    with PolygonSimulator(
        host="127.0.0.1", port=0, rate_limit_calls=LIMIT, rate_limit_window=WINDOW
    ) as sim:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(PROCESSES)
        args = (kind, target, redis_url, sim.url, CALLS_EACH, barrier)
        workers = [ctx.Process(target=hammer, args=args) for _ in range(PROCESSES)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            if worker.is_alive():  # stuck: ours to stop; its exit code says so
                worker.terminate()
                worker.join()
        log = [r for r in api_requests(sim) if r.path.startswith("/v2/")]
    return [w.exitcode for w in workers], log


def budget_row(label, codes, log):
    times = [r.at for r in log]
    rejected = sum(r.status == 429 for r in log)
    busiest = max_in_any_window(times, WINDOW)
    span = max(times) - min(times) if times else 0.0
    return row(
        f"{PROCESSES} processes at once on one budget in {label} ({LIMIT} calls per "
        f"{WINDOW:g} s, {CALLS_EACH} calls each)",
        "each call waited for a slot in the shared window; Polygon (the simulator, enforcing the "
        "same limit) never refused one",
        f"{PROCESSES} processes, {len(log)} calls in {span:.1f} s, **429s: {rejected}**, at most "
        f"{busiest} in any {WINDOW:g} s (limit {LIMIT}); exit codes {codes}",
        every_process_done=codes == [0] * PROCESSES and len(log) == PROCESSES * CALLS_EACH,
        zero_429=rejected == 0,
        within_the_limit=busiest <= LIMIT,
    )


def budget_redis(svc):
    with svc.namespace() as namespace:
        codes, log = run_processes("redis", namespace, svc.redis_url)
    return budget_row("Redis", codes, log)


def budget_postgres(svc):
    with svc.database() as url:
        dispose_engine(url)  # the schema is there; the processes open their own
        codes, log = run_processes("sql", url, svc.redis_url)
    return budget_row("PostgreSQL", codes, log)


# --- hostile symbols files -------------------------------------------------------------------


def symbol_entry(**changes):
    return {
        "symbol": "EURUSD",
        "polygon_ticker": "C:EURUSD",
        "asset_type": "forex",
        "tier": "critical",
        "name": "Euro / US Dollar",
        "base_asset": "EUR",
        "quote_asset": "USD",
        "price_precision": 5,
        **changes,
    }


def load_refused(text):
    """(the RegistryError or None, its message after the file's name, seconds) of loading
    `text` as a symbols file."""
    with tempfile.TemporaryDirectory(prefix="fault_matrix_") as folder:
        path = Path(folder) / "symbols.yaml"
        path.write_text(text)
        started = time.perf_counter()
        try:
            load_registry(path)
            error = None
        except RegistryError as exc:
            error = exc
        took = time.perf_counter() - started
    return error, str(error).removeprefix(f"{path}: "), took


def alias_bomb(svc):
    levels = 9
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    body = yaml.safe_dump({"symbols": [symbol_entry()]})
    text = "\n".join(lines) + "\n" + body.replace("name: Euro / US Dollar", f"name: *a{levels}")
    error, message, took = load_refused(text)
    return row(
        "A YAML alias bomb in the symbols file (9 levels of 9: 387,420,489 strings if expanded)",
        f'refused before anything expands, naming the file: "{message}"',
        f"refused in {ms(took)}; the message is {len(str(error))} characters",
        refused=error is not None and "an alias" in str(error),
        quickly=took < 1,
    )


def huge_value(svc):
    entry = symbol_entry(symbol="X" * 100_000)
    error, message, took = load_refused(yaml.safe_dump({"symbols": [entry]}))
    return row(
        "A 100,000-character value in the symbols file",
        f'refused, naming the file, the entry and the field, quoting an excerpt: "{message}"',
        f"refused in {ms(took)}; the message is {len(str(error))} characters, not 100,000",
        refused=error is not None and "field 'symbol'" in str(error),
        short=error is not None and len(str(error)) < 400,
    )


# --- the CLI with real URLs ------------------------------------------------------------------


def cli_status(svc):
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        tempfile.TemporaryDirectory(prefix="fault_matrix_home_") as home,
    ):
        env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        env |= {
            "TRADING_DATABASE_URL": url,
            "REDIS_URL": svc.redis_url,
            "REDIS_NAMESPACE": namespace,
            "POLYGON_BASE_URL": sim.url,
            "POLYGON_API_KEY": KEY,
            "ASSETS_PIPELINE_HOME": home,
        }
        started = time.perf_counter()
        done = subprocess.run(
            [str(CLI), "status", "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        took = time.perf_counter() - started
    try:
        budget = json.loads(done.stdout)["budget"]
    except (ValueError, KeyError):
        budget = {}
    return row(
        "`assets-pipeline status --json` with real URLs (`TRADING_DATABASE_URL`, `REDIS_URL`, "
        "`REDIS_NAMESPACE`, `POLYGON_BASE_URL`, `POLYGON_API_KEY`)",
        f"exit code {done.returncode}; the settings' values reached the clients: budget in "
        f"{budget.get('backend')}, {budget.get('remaining')} of {budget.get('limit')} calls left",
        f"{took:.1f} s for the whole process; stderr {len(done.stderr)} characters",
        exit_code_0=done.returncode == 0,
        budget_in_redis=budget.get("backend") == "redis",
    )


# --- the hardened transport: one origin, no redirects, bounded pages, one deadline -----------


def send_json(handler, server, status, payload, extra=()):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for name, value in extra:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    server.write(handler, data)


def v3_fx_item(ticker, mid=1.1):
    """A v3 snapshot item with a quote of now."""
    return {
        "ticker": ticker,
        "type": "fx",
        "last_quote": {"last_updated": time.time_ns(), "bid": mid - 1e-4, "ask": mid + 1e-4},
    }


def test_client(server, namespace, svc, **options):
    options = {"max_retries": 0, "total_timeout": 2.0, "read_timeout": 2.0, **options}
    return PolygonClient(server.url, KEY, svc.budget(namespace), logger=QUIET, **options)


def port_pair():
    """Two servers on ports P and P*10+5: a naive client appending `5/v3/...` to the base URL
    `http://127.0.0.1:P` would ask the second."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(2000, 6553)
        try:
            first = HostileServer(origin_page, port)
        except OSError:
            continue
        try:
            return first, HostileServer(count_only, port * 10 + 5)
        except OSError:
            first.close()
    raise RuntimeError("no free pair of ports P and P*10+5")


def origin_page(handler, server):
    """Page 1 answers EURUSD with `server.next_url`; a `cursor` page answers GBPUSD."""
    if "cursor" in handler.path:
        send_json(handler, server, 200, {"status": "OK", "results": [v3_fx_item("C:GBPUSD")]})
    else:
        page = {"status": "OK", "results": [v3_fx_item("C:EURUSD")], "next_url": server.next_url}
        send_json(handler, server, 200, page)


def count_only(handler, server):
    send_json(handler, server, 200, {"status": "OK", "results": []})


def next_url_elsewhere(svc):
    origin, other = port_pair()
    port2 = other.server.server_port
    cases = {
        "`5/v3/snapshot?cursor=2` (port P → P5)": "5/v3/snapshot?cursor=2",
        "`.attacker.example/v3/snapshot`": ".attacker.example/v3/snapshot?cursor=2",
        "`@127.0.0.1:P5/x`": f"@127.0.0.1:{port2}/x",
        "`http://127.0.0.1:P5/v3/snapshot?cursor=2`": f"http://127.0.0.1:{port2}/v3/snapshot?cursor=2",
    }
    outcomes = []
    try:
        with svc.namespace() as namespace:
            for label, next_url in cases.items():
                origin.next_url, before = next_url, len(origin.requests)
                try:
                    answers = test_client(origin, namespace, svc).snapshots(
                        ["C:EURUSD", "C:GBPUSD"]
                    )
                    said = f"{sum(isinstance(a, Quote) for a in answers.values())} of 2 quotes"
                except PolygonError as exc:
                    said = type(exc).__name__
                outcomes.append((label, said, len(origin.requests) - before))
    finally:
        origin.close()
        other.close()
    return next_url_row(outcomes, origin.requests, other.requests)


def next_url_row(outcomes, at_origin, at_other):
    keyed = [h.get("Authorization") == f"Bearer {KEY}" for _, h in at_origin]
    listed = "; ".join(f"{label}: {said}, {n} request(s)" for label, said, n in outcomes)
    return row(
        "A `next_url` that leaves the origin: a relative `5/v3/snapshot?cursor=2` (base port P, "
        "a second server on P5), `.attacker.example/...`, `@127.0.0.1:P5/x`, an absolute URL to "
        "the second server",
        "the first three refused: nothing asked for them, page 1's quote kept and the ticker of "
        "the page not read failed; the absolute one lost its scheme and host: its path and query "
        "were asked of the configured origin",
        f"{listed}; second server: **{len(at_other)} requests**; the key (Authorization) sent "
        f"{sum(keyed)} times, all to the origin ({len(at_origin)} requests)",
        second_server_never_asked=not at_other,
        key_only_at_the_origin=all(keyed) and not at_other,
        leaving_urls_refused=[o[1:] for o in outcomes[:3]] == [("1 of 2 quotes", 1)] * 3,
    )


def redirecting(handler, server):
    if server.mode == "loop":
        location = handler.path
    else:
        location = f"{server.elsewhere}/v2/snapshot/locale/global/markets/forex/tickers/C:EURUSD"
    handler.send_response(301 if server.mode == "301" else 302)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def redirects(svc):
    origin, other = HostileServer(redirecting), HostileServer(count_only)
    origin.elsewhere = other.url
    seen = []
    try:
        with svc.namespace() as namespace:
            for mode in ("301", "302", "loop"):
                origin.mode, before = mode, len(origin.requests)
                try:
                    test_client(origin, namespace, svc).snapshot("C:EURUSD", AssetType.FOREX)
                    error = None
                except PolygonError as exc:
                    error = exc
                seen.append((mode, error, len(origin.requests) - before))
        origin.mode = "302"
        stored = redirected_run(svc, origin)
    finally:
        origin.close()
        other.close()
    return redirects_row(seen, stored, len(other.requests), other.server.server_port)


def redirected_run(svc, origin):
    """A per_ticker refresh against a server answering every request with a 302 elsewhere:
    (requests, history rows, statuses)."""
    before = len(origin.requests)
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        deployment(
            origin, url, namespace, svc.redis_url, POLYGON_SNAPSHOT_MODE="per_ticker"
        ) as run,
    ):
        run()
        store = QuoteStore(get_engine(url), namespace)
        statuses = {s: (store.sync_status(s) or {}).get("sync_status") for s in CRITICAL}
        with store.engine.connect() as conn:
            history = conn.execute(sa.select(sa.func.count()).select_from(quote_history)).scalar()
    return len(origin.requests) - before, history, statuses


def redirects_row(seen, stored, at_other, other_port):
    calls, history, statuses = stored
    said = "; ".join(f"{mode}: {type(e).__name__} after {n} request" for mode, e, n in seen)
    example = clip(str(seen[0][1]).replace(str(other_port), "P2"), 120) if seen[0][1] else "none"
    return row(
        "A 301 and a 302 to another host, and a redirect loop (302 to the same path)",
        f'each refused at once, not followed, not retried: "{example}"; a refresh run on such '
        "a server stored nothing",
        f"{said}; the other host: {at_other} requests; the refresh (per_ticker, 3 symbols): "
        f"{calls} requests, {history} history rows, statuses "
        f"{', '.join(f'{s} {v}' for s, v in statuses.items())}",
        none_followed=at_other == 0,
        one_request_each=[n for _, _, n in seen] == [1, 1, 1],
        refused=all(getattr(e, "status", None) in (301, 302) for _, e, _ in seen),
        nothing_stored=history == 0 and calls == 3,
        every_symbol_failed=set(statuses.values()) == {"failed"},
    )


def self_pointing(handler, server):
    """Page 1 answers EURUSD; page `cursor=1` answers GBPUSD and points at itself."""
    item = v3_fx_item("C:GBPUSD" if "cursor" in handler.path else "C:EURUSD")
    page = {"status": "OK", "results": [item], "next_url": f"{server.url}/v3/snapshot?cursor=1"}
    send_json(handler, server, 200, page)


def next_url_loop(svc):
    server = HostileServer(self_pointing)
    tickers = ["C:EURUSD", "C:GBPUSD", "C:USDJPY"]
    try:
        with svc.namespace() as namespace:
            client = test_client(server, namespace, svc)
            answers = client.snapshots(tickers)
            paid = client.budget.stats().total_calls
    finally:
        server.close()
    quotes = [t for t, a in answers.items() if isinstance(a, Quote)]
    error = answers.get("C:USDJPY")
    return row(
        "A `next_url` pointing back at itself (page 2 names page 2 as its next)",
        f"the walk ended with an error for the tickers not answered yet (USDJPY: "
        f"{type(error).__name__}: {clip(error, 100)}); the two answered kept their quotes",
        f"{len(server.requests)} requests, {client.calls} paid from the budget ({paid} slots); "
        f"{len(quotes)} of 3 quotes",
        two_requests=len(server.requests) == 2 == client.calls,
        every_request_paid=paid == client.calls,
        loop_is_an_error=isinstance(error, PolygonError) and "already read" in str(error),
        answered_kept=sorted(quotes) == ["C:EURUSD", "C:GBPUSD"],
    )


def drip(handler, server, data, seconds=0.2, limit=10):
    """`data` a byte at a time, one every `seconds`, for at most `limit` seconds."""
    deadline = time.monotonic() + limit
    for byte in data:
        if time.monotonic() > deadline:
            return
        server.write(handler, bytes([byte]))
        handler.wfile.flush()
        time.sleep(seconds)


def close_delimited(handler, server):
    server.write(handler, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
    drip(handler, server, b'{"status": "OK", "ticker": ' + b" " * 100)


def slow_status_line(handler, server):
    drip(handler, server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


def slow_headers(handler, server):
    server.write(handler, b"HTTP/1.1 200 OK\r\n")
    drip(handler, server, b"Content-Type: application/json\r\nX-Pad: " + b"a" * 60 + b"\r\n\r\n")


DEADLINE_MARGIN = 0.25


def one_deadline(svc):
    cases = {
        "close-delimited body (HTTP/1.0, no Content-Length) trickled": close_delimited,
        "status line trickled": slow_status_line,
        "headers trickled": slow_headers,
    }
    seen = {label: hostile_call(svc, respond) for label, respond in cases.items()}
    said = "; ".join(
        f"{label}: {type(e).__name__} after {ms(took)}, {sent} bytes sent"
        for label, (e, took, sent, _) in seen.items()
    )
    return row(
        "One deadline over the whole exchange: a close-delimited body (HTTP/1.0, no "
        "Content-Length) trickled, a slow status line, slow headers (a byte every 0.2 s, read "
        "timeout 5 s)",
        "each request ended at the 1 s deadline (`total_timeout`) as AnswerTooSlow, retryable, "
        "whatever part of the answer it was reading",
        f"{said}; bound 1 s + {DEADLINE_MARGIN:g} s",
        all_too_slow=all(isinstance(e, AnswerTooSlow) for e, *_ in seen.values()),
        within_the_deadline=all(t < 1 + DEADLINE_MARGIN for _, t, *_ in seen.values()),
        one_call_each=all(c == 1 for *_, c in seen.values()),
    )


# --- bodies that cost time and memory --------------------------------------------------------


def _escaped_quotes():
    return 200, b'{"status": "OK", "ticker": "' + b'\\"' * 32768


def _titles():
    return 502, b"<title>" * 32768


def _tiny_values():
    return 200, b"[" + b"0," * 9_000_000 + b"0]"


def _huge_error():
    return 500, b'{"status": "ERROR", "error": "' + b"x" * 15_000_000 + b'"}'


def _huge_item_message():
    item = b'{"ticker": "C:EURUSD", "error": "NOT_FOUND", "message": "' + b"y" * 15_000_000
    return 200, b'{"status": "OK", "results": [' + item + b'"}]}'


HEAVY_BODIES = {
    "64 KB of escaped quotes in an unterminated string (200)": _escaped_quotes,
    "224 KB of `<title>` in an error body (502)": _titles,
    "18 MB of tiny JSON values (200)": _tiny_values,
    "a 15 MB `error` string (500)": _huge_error,
    "a 15 MB `message` on one v3 item (200)": _huge_item_message,
}


def vm_kb(name):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def parse_child(label):
    """Run in a subprocess: parse one heavy body as the client does, print what it cost."""
    status, body = HEAVY_BODIES[label]()
    with contextlib.suppress(OSError):  # reset VmHWM: the peak is the parsing's, not the build's
        Path("/proc/self/clear_refs").write_text("5")
    before = vm_kb("VmRSS")
    started = time.perf_counter()
    try:
        if status == 200:
            parse_v3_snapshot(load_json(body))
            error = None
        else:
            error = error_from_response(status, body)
    except Exception as exc:  # noqa: BLE001 - the parent judges it
        error = exc
    took = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bytes": len(body),
                "took": took,
                "before_kb": before,
                "peak_kb": vm_kb("VmHWM"),
                "error": type(error).__name__,
                "ours": isinstance(error, PolygonError),
                "length": len(str(error)) if error else 0,
            }
        )
    )


def heavy_bodies(svc):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fault_matrix as f; "
        "f.parse_child(sys.argv[2])"
    )
    seen = {}
    for label in HEAVY_BODIES:
        done = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent), label],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return heavy_row(seen)


def heavy_row(seen):
    def grown(s):
        return max(s["peak_kb"] - s["before_kb"], 0) / 1024

    said = "; ".join(
        f"{label}: {s['error']} in {ms(s['took'])}, peak RSS {s['peak_kb'] / 1024:.0f} MB "
        f"(+{grown(s):.0f} MB while parsing), {s['length']} characters kept"
        for label, s in seen.items()
    )
    return row(
        "Bodies that cost time or memory to parse: 64 KB of escaped quotes in an unterminated "
        "string, 224 KB of `<title>`, 18 MB of tiny JSON values, a 15 MB `error` in a 500, a "
        "15 MB `message` on one v3 item (each in a subprocess of its own)",
        "each ended in one of the package's errors with a short text, in linear time, without "
        "building the body's values",
        f"{said} (the child's RSS before parsing includes the body itself)",
        every_body_ours=all(s["ours"] for s in seen.values()),
        each_within_a_second=all(s["took"] < 1 for s in seen.values()),
        under_100_MB_while_parsing=all(grown(s) < 100 for s in seen.values()),
        short_error_texts=all(s["length"] < 1000 for s in seen.values()),
    )


# --- bodies that crashed runs before, through a real refresh ---------------------------------


CRASHERS = {
    "C:XAUUSD": (
        400,
        b'{"status": "ERROR", "error": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "a 400 nested 100,000 deep",
    ),
    "C:EURUSD": (400, rb'{"status": "ERROR", "error": "bad\u0000request"}', "a NUL in `error`"),
    "X:BTCUSD": (
        404,
        rb'{"status": "NOT_FOUND", "message": "lone \ud800 surrogate"}',
        "a lone surrogate in `message`",
    ),
}


def crashing(handler, server):
    ticker = handler.path.split("?")[0].rsplit("/", 1)[-1]
    status, body, _ = CRASHERS.get(ticker, (404, b'{"status": "NOT_FOUND"}', ""))
    send_json(handler, server, status, body)


def crashing_bodies(svc):
    server = HostileServer(crashing)
    try:
        with (
            svc.database() as url,
            svc.namespace() as namespace,
            deployment(
                server, url, namespace, svc.redis_url, POLYGON_SNAPSHOT_MODE="per_ticker"
            ) as run,
        ):
            result = run()
            store = QuoteStore(get_engine(url), namespace)
            statuses = {s: store.sync_status(s) or {} for s in CRITICAL}
    finally:
        server.close()
    texts = {s: v.get("error_message") or "" for s, v in statuses.items()}
    said = "; ".join(
        f'{what}: {statuses[s].get("sync_status")}, "{clip(texts[s], 110)}"'
        for s, (_, _, what) in zip(CRITICAL, CRASHERS.values(), strict=True)
    )
    return row(
        "Bodies that crashed runs before, in a refresh run against PostgreSQL (per_ticker): "
        "XAUUSD's answer a 400 nested 100,000 deep, EURUSD's a NUL in its error, BTCUSD's a "
        "lone surrogate",
        f"the run ended ({'succeeded' if result.success else 'failed'}); every symbol "
        f"`failed` with its reason, none left `in_progress`: {said}",
        f"{len(server.requests)} requests; texts stored {[len(t) for t in texts.values()]} "
        f"characters, NULs in them: {sum(t.count(chr(0)) for t in texts.values())}",
        every_symbol_failed=all(v.get("sync_status") == "failed" for v in statuses.values()),
        every_reason_stored=all(texts.values()),
        no_nul_stored=not any("\x00" in t for t in texts.values()),
    )


# --- a day bar from the future ---------------------------------------------------------------


STATUS = "sync_status"


def day_ms(day):
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


def future_bars(handler, server):
    """Grouped daily: XAUUSD's and BTCUSD's bars for tomorrow, EURUSD's for 2027-06-01; `prev`:
    a bar of today."""
    today = clock.utcnow().date()
    tomorrow, later = today + dt.timedelta(days=1), dt.date(2027, 6, 1)

    def bar(ticker, day):
        return {"T": ticker, "t": day_ms(day), "o": 1.1, "h": 1.2, "l": 1.0, "c": 1.15, "v": 10}

    path = handler.path.split("?")[0]
    if "/grouped/" in path:
        days = {"C:XAUUSD": tomorrow, "C:EURUSD": later, "X:BTCUSD": tomorrow}
        results = [bar(t, d) for t, d in days.items()]
    elif path.endswith("/prev"):
        results = [bar(path.split("/")[-2], today)]
    else:
        results = []
    send_json(handler, server, 200, {"status": "OK", "results": results, "resultsCount": 3})


def future_day_bar(svc):
    server = HostileServer(future_bars)
    try:
        with (
            svc.database() as url,
            svc.namespace() as namespace,
            deployment(server, url, namespace, svc.redis_url, POLYGON_PLAN="free") as run,
        ):
            run()
            store = QuoteStore(get_engine(url), namespace)
            statuses = {s: store.sync_status(s) or {} for s in CRITICAL}
            with store.engine.connect() as conn:
                history = conn.execute(
                    sa.select(sa.func.count()).select_from(quote_history)
                ).scalar()
    finally:
        server.close()
    paths = [p.split("?")[0] for p, _ in server.requests]
    grouped = sum("/grouped/" in p for p in paths)
    prev = sum(p.endswith("/prev") for p in paths)
    reason = statuses["EURUSD"].get("error_message") or ""
    return row(
        "A future-dated day bar on the free plan: grouped daily answers bars for tomorrow (and "
        "2027-06-01), then each ticker's `prev` answers a bar of today (its session not closed)",
        f'refused, nothing stored; every symbol `failed`, e.g. EURUSD: "{clip(reason, 160)}"',
        f"{grouped} grouped and {prev} `prev` requests; {history} history rows; statuses "
        f"{', '.join(f'{s} {v.get(STATUS)}' for s, v in statuses.items())}",
        nothing_stored=history == 0,
        every_symbol_failed=all(v.get("sync_status") == "failed" for v in statuses.values()),
        bars_asked=grouped >= 1 and prev == 3,
    )


# --- one ticker's 403 is its own -------------------------------------------------------------


def single_403(svc):
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        deployment(sim, url, namespace, svc.redis_url, POLYGON_SNAPSHOT_MODE="per_ticker") as run,
    ):
        sim.add_fault(Fault("forbidden", ticker="C:EURUSD"))
        first = run()
        after_first = len(api_requests(sim))
        refused = [k.decode() for k in svc.redis().scan_iter(match=f"{namespace}*refused*")]
        second = run()
        log = api_requests(sim)
        store = QuoteStore(get_engine(url), namespace)
        xau = store.latest_quote("XAUUSD")
        statuses = {s: (store.sync_status(s) or {}).get("sync_status") for s in CRITICAL}
    return single_403_row(first, second, log, after_first, refused, xau, statuses)


def single_403_row(first, second, log, after_first, refused, xau, statuses):
    paths = [r.path.split("?")[0] for r in log]
    asked = [p.rsplit("/", 1)[-1] for p in paths]
    bars = sum("/aggs/" in p for p in paths)
    return row(
        "One ticker's 403: C:EURUSD's own snapshot refused, after C:XAUUSD's answered first "
        "(per_ticker, `auto` plan), then a second refresh",
        "the 403 was EURUSD's own error; the forex market was not learnt as refused; on the "
        "next refresh XAUUSD was asked for its snapshot again and kept it",
        f"first refresh: {asked[:after_first]} ({[r.status for r in log[:after_first]]}); "
        f"refusals remembered: {len(refused)}; second: {asked[after_first:]}; day-bar requests: "
        f"{bars}; XAUUSD's stored source `{xau.source if xau else None}`; statuses "
        f"{', '.join(f'{s} {v}' for s, v in statuses.items())}",
        market_not_learnt=not refused,
        xauusd_kept_its_snapshot=xau is not None and xau.source.endswith("snapshot") and bars == 0,
        eurusd_alone_failed=statuses
        == {"XAUUSD": "success", "EURUSD": "failed", "BTCUSD": "success"},
    )


def critical_pair_403(svc):
    """The second attack: the batch endpoint and XAUUSD's and EURUSD's own snapshots refused,
    the forex market's endpoint serving."""
    own = "/v2/snapshot/locale/global/markets/forex/tickers/"
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        deployment(sim, url, namespace, svc.redis_url) as run,
    ):
        sim.add_fault(Fault("forbidden", path_prefix="/v3/snapshot"))
        for ticker in ("C:XAUUSD", "C:EURUSD"):
            sim.add_fault(Fault("forbidden", ticker=ticker, path_prefix=own + ticker))
        run()
        refused = [k.decode() for k in svc.redis().scan_iter(match=f"{namespace}*refused*")]
        store = QuoteStore(get_engine(url), namespace)
        eur = store.latest_quote("EURUSD")
        statuses = {s: (store.sync_status(s) or {}).get("sync_status") for s in CRITICAL}
        asked = [f"{r.path.rsplit('/', 1)[-1]} {r.status}" for r in api_requests(sim)]
    learnt = [k.rsplit(":", 1)[-1] for k in refused]
    return row(
        "Two critical tickers refused one by one: the batch endpoint, C:XAUUSD's and C:EURUSD's "
        "own snapshots answer 403, the forex market's endpoint serves",
        "each 403 was put to the market's endpoint, which answered: forex stayed live, EURUSD "
        "took its quote from that answer, only XAUUSD failed",
        f"requests: {', '.join(asked)}; learnt refused: {learnt}; EURUSD's source "
        f"`{eur.source if eur else None}`; statuses "
        f"{', '.join(f'{s} {v}' for s, v in statuses.items())}",
        forex_not_learnt=not any(k.endswith("forex") for k in refused),
        eurusd_live=eur is not None and eur.source.endswith("snapshot"),
        xauusd_alone_failed=statuses
        == {"XAUUSD": "failed", "EURUSD": "success", "BTCUSD": "success"},
    )


# --- a refresh outliving its deadline ---------------------------------------------------------


def refresh_deadline(svc):
    """The attack: a server slower than every timeout, one call per ticker; a run whose
    maximum runtime is 5 s (the refresh asks for 4 s)."""
    with (
        svc.database() as url,
        svc.namespace() as namespace,
        PolygonSimulator(host="127.0.0.1", port=0) as sim,
        deployment(sim, url, namespace, svc.redis_url, POLYGON_SNAPSHOT_MODE="per_ticker") as run,
    ):
        sim.add_fault(Fault("timeout", delay=60.0))
        started = time.perf_counter()
        run(tags={"assets_pipeline/kind": "critical", "dagster/max_runtime": "5"})
        took = time.perf_counter() - started
        store = QuoteStore(get_engine(url), namespace)
        statuses = {s: (store.sync_status(s) or {}).get("sync_status") for s in CRITICAL}
        asked = len(api_requests(sim))
    return row(
        "A refresh that would outlive its run: every answer slower than every timeout, "
        "per_ticker, `dagster/max_runtime` 5 s",
        "the refresh stopped asking at its deadline (80% of the runtime), cut the request in "
        "flight, and settled every status as failed, none `in_progress`",
        f"{took:.1f} s for the run (deadline 4 s, plus start-up and settling); requests {asked}; "
        f"statuses {', '.join(f'{s} {v}' for s, v in statuses.items())}",
        ended_near_the_deadline=took < 4 + 15,
        every_status_settled=set(statuses.values()) == {"failed"},
        later_tickers_not_asked=asked <= 1,
    )


# --- a database that never answers -----------------------------------------------------------


#: The connect timeout plus slack, on top of the CLI's own start-up measured on this machine now
#: (`budget` against Redis): a loaded machine starts Python and Dagster slower, not the database.
STATUS_BOUND = 2 + 3


def cli_seconds(args, env):
    """How long the CLI takes for `args`: its start-up on this machine, as loaded as it is."""
    started = time.perf_counter()
    subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - started


def silent_database(svc):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    password = "pw-" + uuid.uuid4().hex[:12]
    try:
        with (
            svc.namespace() as namespace,
            tempfile.TemporaryDirectory(prefix="fault_matrix_home_") as home,
        ):
            env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
            env |= {
                "TRADING_DATABASE_URL": f"postgresql://trader:{password}@127.0.0.1:{port}/trading",
                "TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
                "REDIS_URL": svc.redis_url,
                "REDIS_NAMESPACE": namespace,
                "ASSETS_PIPELINE_HOME": home,
            }
            startup = cli_seconds(["budget"], {**env, "TRADING_DATABASE_URL": ""})
            started = time.perf_counter()
            done = subprocess.run(
                [str(CLI), "status"], env=env, capture_output=True, text=True, timeout=120
            )
            took = time.perf_counter() - started
    finally:
        listener.close()
    output = done.stdout + done.stderr
    said = next((ln for ln in output.splitlines() if f":{port}" in ln), output[-200:])
    said = said.replace(str(port), "PORT")
    return row(
        "A trading database that accepts connections and never answers (`TRADING_DATABASE_URL` "
        "on a silent socket, `TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS=2`): `assets-pipeline "
        "status`",
        f'exit code {done.returncode}; it said: "{clip(said, 220)}"',
        f"{took:.1f} s for the whole process (bound {startup + STATUS_BOUND:.1f} s: 2 s + the "
        f"CLI's start-up here, {startup:.1f} s, + 3 s); "
        f"host:port named: {f'127.0.0.1:{port}' in output}; the password in the output: "
        f"{password in output}",
        exit_non_zero=done.returncode != 0,
        within_the_bound=took < startup + STATUS_BOUND,
        names_host_and_port=f"127.0.0.1:{port}" in output,
        no_password=password not in output,
    )


# --- providers beside Polygon: an outage, stale data, a trickle --------------------------------


ALL_MARKETS = frozenset(AssetType)
PROVIDER_SYMBOLS = ["XAUUSD", "EURUSD", "BTCUSD", "ETHUSDT", "GBPUSD"]


def provider_registry() -> Registry:
    """The packaged symbols with markets that never close: the matrix runs on any weekday."""
    document = yaml.safe_load((ROOT / "assets_pipeline" / "config" / "symbols.yaml").read_text())
    document["market_hours"] = {"forex": "always", "index": "always"}
    return parse_registry(document, source="fault-matrix-providers.yaml")


@dataclass
class ProviderWorld:
    """Polygon, Kraken and OANDA (their simulators, or a hostile server) behind one `Sourcing`,
    as test_fallback.py builds it: each budget in the scenario's PostgreSQL database (its window
    an hour, so `total_calls` counts every slot taken), no retries."""

    database_url: str
    registry: Registry
    polygon_url: str
    kraken_url: str
    oanda_url: str
    polygon_free: bool
    oanda_options: dict = field(default_factory=dict)

    def budget(self, name: str) -> PolygonBudget:
        return PolygonBudget(SqlBudgetStore(get_engine(self.database_url), name), 1000, 3600)

    def slots(self, name: str) -> int:
        return self.budget(name).stats().total_calls

    def sourcing(self, deadline: float | None) -> Sourcing:
        plan = "free" if self.polygon_free else "paid"
        client = PolygonClient(
            self.polygon_url, KEY, self.budget("polygon"), max_retries=0, plan=plan, logger=QUIET
        )
        kraken = KrakenProvider(self.budget("kraken"), self.kraken_url, max_retries=0, logger=QUIET)
        oanda = OandaProvider(
            self.oanda_url,
            OANDA_ACCOUNT,
            OANDA_TOKEN,
            self.budget("oanda"),
            **{"max_retries": 0, "logger": QUIET, **self.oanda_options},
        )
        if deadline is not None:  # the run's one deadline, as defs/assets.py sets it
            for asked in (client, kraken, oanda):
                asked.stop_by(deadline)
        others = [Source("kraken", kraken.budget, ALL_MARKETS, kraken)]
        others.append(Source("oanda", oanda.budget, ALL_MARKETS, oanda))
        live = polygon_live(self.polygon_free, frozenset())
        since = clock.utcnow() - dt.timedelta(seconds=self.registry.fallback.return_after_seconds)
        syncs = provider_syncs(get_engine(self.database_url), [s.symbol for s in self.registry])
        polygon = Source("polygon", client.budget, live)
        return Sourcing(
            client, others, polygon, self.registry, recently_failed(syncs, since), QUIET
        )

    def refresh(self, symbols: list[str], deadline: float | None = None):
        """One critical refresh as a step runs it: (its batch, its sourcing, each answer)."""
        engine = get_engine(self.database_url)
        plan = plan_refresh(self.registry, symbols, CRITICAL_RUN, f"b-{uuid.uuid4()}")
        sourcing = self.sourcing(deadline)
        refresh = Refresh(
            plan,
            sourcing,
            QuoteStore(engine),
            RefreshQueue(engine, self.registry.queue),
            "batch",
            QUIET,
        )
        answered = {}
        for spec, quote, _ in refresh.quotes():
            refresh.store(spec, quote)
            answered[spec.symbol] = quote
        batch = refresh.settle()
        sourcing.close()
        return batch, sourcing, answered

    def syncs(self, symbols: list[str]) -> dict:
        return provider_syncs(get_engine(self.database_url), symbols)

    def stored(self, symbol: str) -> Quote | None:
        return QuoteStore(get_engine(self.database_url)).latest_quote(symbol)

    def in_progress(self, symbols: list[str]) -> list[str]:
        """Symbols whose sync status, or any provider's, is still `in_progress`."""
        store = QuoteStore(get_engine(self.database_url))
        rows = self.syncs(symbols)
        return [
            s
            for s in symbols
            if (store.sync_status(s) or {}).get(STATUS) == "in_progress"
            or any(r.status == "in_progress" for r in rows.get(s, {}).values())
        ]


@contextlib.contextmanager
def provider_world(svc, polygon_plan: str = "free", oanda_url: str = "", **oanda_options):
    """A database of the scenario's own and the three vendors' simulators (OANDA's replaced by
    `oanda_url` when given); yields (world, polygon, kraken, oanda simulators)."""
    with (
        svc.database() as url,
        PolygonSimulator(host="127.0.0.1", port=0, plan=polygon_plan) as polygon,
        KrakenSimulator(host="127.0.0.1", port=0) as kraken,
        OandaSimulator(host="127.0.0.1", port=0, market_hours=False) as oanda,
    ):
        world = ProviderWorld(
            url,
            provider_registry(),
            polygon.url,
            kraken.url,
            oanda_url or oanda.url,
            polygon_plan == "free",
            oanda_options,
        )
        yield world, polygon, kraken, oanda


def budgets_kept(world: ProviderWorld, sims: dict) -> tuple[bool, str]:
    """Slots taken from each budget against the requests its simulator received."""
    pairs = {name: (world.slots(name), len(api_requests(sim))) for name, sim in sims.items()}
    said = ", ".join(f"{n} {slots} slots / {asked} requests" for n, (slots, asked) in pairs.items())
    return all(slots == asked for slots, asked in pairs.values()), said


def provider_outage(svc) -> Row:
    """Kraken answering 502 to every request during a refresh of crypto and forex symbols."""
    symbols = PROVIDER_SYMBOLS
    with provider_world(svc) as (world, polygon, kraken, oanda):
        kraken.add_fault(KrakenFault("http_502"))
        batch, _, answered = world.refresh(symbols)
        asked_first = len(api_requests(kraken))
        circuit = Source("kraken", world.budget("kraken"), ALL_MARKETS).circuit()
        retry = world.registry.fallback.retry_after_seconds
        is_open = circuit.is_open(clock.utcnow(), retry)
        again, _, answered_again = world.refresh(symbols)
        asked_again = len(api_requests(kraken)) - asked_first
        kept, said = budgets_kept(world, {"polygon": polygon, "kraken": kraken, "oanda": oanda})
        stuck = world.in_progress(symbols)
        kraken_rows = {s: world.syncs([s])[s].get("kraken") for s in ("BTCUSD", "ETHUSDT")}
    served = {s: f"{q.provider} {q.timeframe.value}" for s, q in answered.items()}
    crypto_moved = all(answered[s].provider == "polygon" for s in ("BTCUSD", "ETHUSDT"))
    return row(
        "A provider's outage: Kraken answers 502 to every request during a critical refresh of"
        " BTCUSD, ETHUSDT and three forex symbols (a real `Sourcing` over HTTP, the free plan's"
        " Polygon after Kraken, budgets in PostgreSQL), then a second refresh",
        f"every symbol stored in the same refresh, the crypto pairs by the next provider; Kraken's"
        f" circuit open ({circuit.why}); its sync rows `failed`"
        f" ({', '.join(f'{s} {r.status if r else None}' for s, r in kraken_rows.items())});"
        f" the second refresh asked Kraken nothing",
        f"first refresh: {len(batch.updated)} of {len(symbols)} stored ({served}), failed"
        f" {len(batch.failed)}; Kraken requests {asked_first}; second refresh:"
        f" {len(again.updated)} stored, Kraken requests {asked_again}; {said}; in_progress:"
        f" {stuck or 'none'}",
        nothing_lost=not batch.failed and sorted(batch.updated) == sorted(symbols),
        crypto_served_by_the_next_provider=crypto_moved,
        kraken_circuit_open=is_open,
        second_refresh_sent_kraken_nothing=asked_again == 0 and not again.failed,
        no_budget_exceeded=kept,
        nothing_in_progress=not stuck,
        second_refresh_served=sorted(answered_again) == sorted(symbols),
    )


def stale_case(svc, polygon_plan: str) -> dict:
    """EURUSD refreshed with OANDA healthy, then EURUSD and XAUUSD with OANDA's clock 30 minutes
    behind: who served, what is stored, OANDA's sync rows."""
    with provider_world(svc, polygon_plan) as (world, polygon, kraken, oanda):
        world.refresh(["EURUSD"])
        before = world.stored("EURUSD")
        oanda.clock = lambda: time.time() - 1800
        batch, sourcing, answered = world.refresh(["EURUSD", "XAUUSD"])
        rows = world.syncs(["EURUSD", "XAUUSD"])
        kept, said = budgets_kept(world, {"polygon": polygon, "kraken": kraken, "oanda": oanda})
        return {
            "plan": polygon_plan,
            "before": before,
            "after": {s: world.stored(s) for s in ("EURUSD", "XAUUSD")},
            "answered": {s: q.provider for s, q in answered.items()},
            "oanda": {s: rows[s].get("oanda") for s in ("EURUSD", "XAUUSD")},
            "failed": batch.failed,
            "budgets": (kept, said),
            "stuck": world.in_progress(["EURUSD", "XAUUSD"]),
            "passed": [n for n, _ in sourcing.fell_back("XAUUSD")],
        }


def stale_provider(svc) -> Row:
    full, free = stale_case(svc, "full"), stale_case(svc, "free")

    def said(case: dict) -> str:
        after = case["after"]
        now = clock.utcnow()
        ages = {
            s: f"{q.provider} {(now - q.data_time).total_seconds() / 60:.0f} min old"
            for s, q in after.items()
            if q
        }
        oanda_rows = {
            s: f"{r.status} ({clip(r.error or '', 40)})" for s, r in case["oanda"].items() if r
        }
        return f"{case['plan']}: stored {ages}; OANDA rows {oanda_rows}; {case['budgets'][1]}"

    full_ok = all(q and q.provider == "polygon" for q in full["after"].values()) and all(
        r and r.status == "failed" and (r.error or "").startswith("stale data")
        for r in full["oanda"].values()
    )
    xau = free["after"]["XAUUSD"]
    free_kept = (
        xau is not None and xau.provider == "oanda" and free["answered"]["XAUUSD"] == "oanda"
    )
    never_older = all(
        case["after"]["EURUSD"] is not None
        and case["before"] is not None
        and case["after"]["EURUSD"].data_time >= case["before"].data_time
        for case in (full, free)
    )
    return row(
        "A provider answering stale data: OANDA's clock 30 minutes behind (EURUSD stored fresh"
        " from OANDA first, then EURUSD and XAUUSD refreshed), with a live Polygon (plan"
        " `full`) after OANDA, and with Polygon's free plan",
        "live Polygon: both stored from Polygon, OANDA's rows `failed` saying stale data; free"
        " plan: OANDA's 30-minute-old price kept for XAUUSD (newer than a day-old close), and"
        " not written over EURUSD's fresher stored quote",
        f"{said(full)}; {said(free)}",
        live_polygon_served=full_ok,
        oanda_kept_on_the_free_plan=free_kept,
        no_stale_quote_over_a_newer_one=never_older,
        nothing_lost=all(c["after"]["XAUUSD"] is not None for c in (full, free)),
        no_budget_exceeded=full["budgets"][0] and free["budgets"][0],
        nothing_in_progress=not full["stuck"] and not free["stuck"],
    )


def trickle_slowly(handler, server):
    """Headers at once, then one byte a second for 30 s: no read ever times out."""
    headers(handler, 1_000_000)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        server.write(handler, b" ")
        handler.wfile.flush()
        time.sleep(1.0)


def trickle_case(svc, deadline: float, oanda_total: float | None) -> dict:
    """EURUSD and XAUUSD refreshed with OANDA trickling, a live Polygon after it."""
    server = HostileServer(trickle_slowly)
    options = {} if oanda_total is None else {"total_timeout": oanda_total}
    try:
        with provider_world(svc, "full", server.url, **options) as (world, polygon, _, _):
            started = time.perf_counter()
            batch, _, answered = world.refresh(["EURUSD", "XAUUSD"], deadline)
            took = time.perf_counter() - started
            rows = world.syncs(["EURUSD"])["EURUSD"]
            return {
                "took": took,
                "deadline": deadline,
                "answered": {s: getattr(a, "provider", None) for s, a in answered.items()},
                "failed": {s: clip(e, 70) for s, e in batch.failed.items()},
                "oanda": clip(rows["oanda"].error if rows.get("oanda") else "", 70),
                "polygon_asked": len(api_requests(polygon)),
                "oanda_asked": len(server.requests),
                "stuck": world.in_progress(["EURUSD", "XAUUSD"]),
            }
    finally:
        server.close()


def trickling_provider(svc) -> Row:
    own = trickle_case(svc, 10.0, 2.0)
    cut = trickle_case(svc, 3.0, None)
    fell = own["answered"] == {"EURUSD": "polygon", "XAUUSD": "polygon"} and not own["failed"]
    return row(
        "A provider that trickles: OANDA's answer dribbled one byte a second (headers at once,"
        " 30 s in all), a live Polygon after it: (a) OANDA's own bound 2 s (`total_timeout`)"
        " inside a 10 s run deadline (`stop_by`), (b) its default 30 s bound, a 3 s deadline",
        "(a) OANDA cut at its 2 s bound and both symbols served by Polygon in the same refresh;"
        " (b) the deadline cut OANDA off and, with no time left, Polygon was not asked: both"
        " symbols `failed` (retryable), none `in_progress`",
        f"(a) {own['took']:.1f} s, OANDA requests {own['oanda_asked']}, Polygon"
        f" {own['polygon_asked']}, served {own['answered']}, OANDA's row: {own['oanda']}; (b)"
        f" {cut['took']:.1f} s, OANDA requests {cut['oanda_asked']}, Polygon"
        f" {cut['polygon_asked']}, failed {cut['failed']}",
        fell_to_the_next_provider=fell,
        bounded_by_its_own_timeout=own["took"] < own["deadline"],
        bounded_by_the_deadline=cut["took"] < cut["deadline"] + 2,
        nothing_in_progress=not own["stuck"] and not cut["stuck"],
    )


# --- the matrix ------------------------------------------------------------------------------

SCENARIOS = {
    "slow-answer": slow_answer,
    "endless-answer": endless_answer,
    "gzip-bomb": gzip_answer,
    "deep-nesting": deep_nesting,
    "huge-numbers": huge_numbers,
    "hard-rules": hard_rules,
    "fuzz": fuzz,
    "server-errors": server_errors,
    "rate-limited": rate_limited,
    "permanent-errors": permanent_errors,
    "bad-items": bad_items,
    "quality-warnings": quality_warnings,
    "redis-outage-events": redis_outage_events,
    "redis-outage-budget": redis_outage_budget,
    "postgres-restart": postgres_restart,
    "budget-redis": budget_redis,
    "budget-postgres": budget_postgres,
    "alias-bomb": alias_bomb,
    "huge-config-value": huge_value,
    "cli-status": cli_status,
    "next-url-elsewhere": next_url_elsewhere,
    "redirects": redirects,
    "next-url-loop": next_url_loop,
    "one-deadline": one_deadline,
    "heavy-bodies": heavy_bodies,
    "crashing-bodies": crashing_bodies,
    "future-day-bar": future_day_bar,
    "single-403": single_403,
    "critical-pair-403": critical_pair_403,
    "refresh-deadline": refresh_deadline,
    "silent-database": silent_database,
    "provider-outage": provider_outage,
    "provider-stale-data": stale_provider,
    "provider-trickle": trickling_provider,
}


def run_scenario(name, svc):
    started = time.perf_counter()
    print(f"running {name} ...", file=sys.stderr, flush=True)
    try:
        result = SCENARIOS[name](svc)
    except Exception as exc:  # noqa: BLE001 - a scenario that cannot run is a failed row
        result = Row(name, f"failed to run: {type(exc).__name__}: {clip(exc, 200)}", "", ["it ran"])
    took = time.perf_counter() - started
    status = f" BROKEN: {', '.join(result.broken)}" if result.broken else ""
    print(f"  {name}: {took:.1f} s{status}", file=sys.stderr)
    return result


def cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(rows):
    lines = ["| fault | what happened | figures |", "| --- | --- | --- |"]
    for r in rows:
        figures = r.figures
        if r.broken:
            figures += f" — **INVARIANT BROKEN: {', '.join(r.broken)}**"
        lines.append(f"| {cell(r.fault)} | {cell(r.happened)} | {cell(figures)} |")
    return "\n".join(lines)


def reachable(svc):
    problems = []
    try:
        svc.redis().ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {svc.redis_url}: {exc}")
    try:
        with svc.admin().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        problems.append(f"PostgreSQL: {clip(exc, 200)}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), help="run this scenario alone")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="an admin URL")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    svc = Services(args.postgres_url, args.redis_url)
    problems = reachable(svc)
    if problems:
        print("cannot run: " + "; ".join(problems), file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows = [run_scenario(name, svc) for name in ([args.only] if args.only else SCENARIOS)]
    took = time.perf_counter() - started
    print(markdown(rows))
    broken = [f"{r.fault[:60]}: {', '.join(r.broken)}" for r in rows if r.broken]
    print(
        f"\n{len(rows)} scenarios in {took:.0f} s on {os.cpu_count()} cores, "
        f"{dt.date.today().isoformat()}; invariants broken: {len(broken)}"
    )
    for line in broken:
        print(f"  BROKEN {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
