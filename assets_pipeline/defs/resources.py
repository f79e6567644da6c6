"""Dagster resources: the trading database, Redis, the shared Polygon budget and the client.

Each is a typed `ConfigurableResource` whose secrets come through `dg.EnvVar` (see
`definitions.py`), so the UI shows the variable's name, never its value. State that must outlive a
run (the budget) lives in Redis or the database, never in resource memory: every run is its own
process.

A field left empty (or 0) means "as the environment says" (`Settings.from_env()`), read when
the run uses it: Dagster resets a resource's other fields to their defaults when run config (the
launchpad) overrides one of them, and this keeps the endpoint, key, database and budget the
deployment's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

import dagster as dg
import redis
import sqlalchemy as sa
from pydantic import Field

from assets_pipeline.budget.fairness import CRITICAL_CALLER, Caller
from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import AssetType, Registry
from assets_pipeline.config.settings import BUDGET_STORES, PLANS, SNAPSHOT_MODES, Settings
from assets_pipeline.persistence import redis_client
from assets_pipeline.persistence.database import get_engine
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.polygon.client import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RECHECK_SECONDS,
    DEFAULT_TOTAL_TIMEOUT_SECONDS,
    MULTI_TICKER_SNAPSHOT,
    PolygonClient,
    snapshot_feature,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.end_of_day import DEFAULT_PUBLICATION_DELAY
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.plans import LearntPlan, configured_bars

#: The key the embedded simulator accepts when no POLYGON_API_KEY is set.
SIMULATOR_KEY = "simulator-key"

_redis_clients: dict[str, redis.Redis] = {}
_simulator: Any = None
_simulator_lock = threading.Lock()


class TradingDatabase(dg.ConfigurableResource):
    """The platform's PostgreSQL (`TRADING_DATABASE_URL`), or an embedded SQLite file."""

    url: str = Field(default="", description="SQLAlchemy URL; empty = embedded SQLite file.")

    def resolved_url(self) -> str:
        """The configured URL, else `TRADING_DATABASE_URL`, else the embedded file."""
        return self.url or Settings.from_env().database_url

    def is_embedded(self) -> bool:
        return not (self.url or Settings.from_env().trading_database_url)

    def engine(self) -> sa.Engine:
        return get_engine(self.resolved_url())

    def quote_store(self, namespace: str = "") -> QuoteStore:
        """The writer; `namespace` prefixes the Redis channels its events go to."""
        return QuoteStore(self.engine(), namespace)


class RedisResource(dg.ConfigurableResource):
    """Where updates are announced and the budget is kept; unset means no Redis."""

    url: str = Field(default="", description="redis:// URL; empty = no Redis.")
    namespace: str = Field(
        default="", description="Prefix for keys and channels (empty in production)."
    )

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().redis_url

    def key_prefix(self) -> str:
        return self.namespace or Settings.from_env().redis_namespace

    def client(self) -> redis.Redis | None:
        url = self.resolved_url()
        if not url:
            return None
        client = _redis_clients.get(url)
        if client is None:
            client = redis_client.connect(url)  # every wait bounded
            _redis_clients[url] = client
        return client


class PolygonBudgetResource(dg.ConfigurableResource):
    """The one budget every process shares: at most `calls` requests per `window_seconds`."""

    calls: int = Field(default=0, ge=0, description="0 = POLYGON_RATE_LIMIT_CALLS (default 5).")
    window_seconds: float = Field(
        default=0.0, ge=0, description="0 = POLYGON_RATE_LIMIT_WINDOW_SECONDS (default 60)."
    )
    name: str = "polygon"
    store: str = Field(
        default="",
        description="'auto': Redis when REDIS_URL is set, else the trading database;"
        " 'redis' or 'database' to choose. Empty = POLYGON_BUDGET_STORE, else 'auto'.",
    )
    redis: RedisResource
    database: TradingDatabase

    def limit(self) -> tuple[int, float]:
        """(calls, window in seconds): the configured ones, else the environment's."""
        settings = Settings.from_env()
        calls = self.calls or settings.rate_limit_calls
        return calls, self.window_seconds or settings.rate_limit_window_seconds

    def budget(self, caller: Caller = CRITICAL_CALLER) -> PolygonBudget:
        """The shared budget, as `caller` sees it (non-critical callers keep a reserve)."""
        kind = self.store or Settings.from_env().budget_store
        if kind not in BUDGET_STORES:
            raise dg.Failure(f"budget store must be auto, redis or database, got {kind!r}")
        client = self.redis.client()
        if kind == "redis" and client is None:
            raise dg.Failure("the Polygon budget store is 'redis' but REDIS_URL is not set")
        if client is not None and kind != "database":
            store: Any = RedisBudgetStore(client, self.name, self.redis.key_prefix())
        else:
            store = SqlBudgetStore(self.database.engine(), self.name)
        calls, window = self.limit()
        return PolygonBudget(store, calls, window, caller=caller)


class PolygonResource(dg.ConfigurableResource):
    """Polygon's REST API (or the project's simulator when no base URL is set)."""

    api_key: str = Field(default="", description="From POLYGON_API_KEY; never logged.")
    base_url: str = Field(
        default="", description="e.g. https://api.polygon.io; empty = embedded simulator."
    )
    snapshot_mode: str = Field(
        default="",
        description="'batch': one /v3/snapshot call per 250 tickers (falls back to per_ticker"
        " on a 403); 'per_ticker': one call per symbol, the free-plan way. Empty ="
        " POLYGON_SNAPSHOT_MODE, else 'batch'.",
    )
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = Field(default=15.0, description="Longest wait for any byte.")
    total_timeout_seconds: float = Field(
        default=DEFAULT_TOTAL_TIMEOUT_SECONDS,
        gt=0,
        description="Longest time for a whole answer; past it the request fails (retryable).",
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description="Largest answer, decoded (gzip counts expanded); past it the request fails.",
    )
    max_retries: int = Field(default=2, ge=0)
    backoff_seconds: float = 1.0
    max_budget_wait_seconds: float = Field(
        default=180.0, description="How long a call may wait for a budget slot before failing."
    )
    plan: str = Field(
        default="",
        description="'auto': learn what the key may call from its 403s; 'free': no snapshots,"
        " the newest day bars; 'paid': snapshots. Empty = POLYGON_PLAN, else 'auto'.",
    )
    entitlement_recheck_seconds: float = Field(
        default=DEFAULT_RECHECK_SECONDS,
        gt=0,
        description="How long a plan's refusal of batch snapshots (a 403) is remembered before"
        " a refresh asks again.",
    )
    budget: PolygonBudgetResource

    def mode(self) -> str:
        mode = self.snapshot_mode or Settings.from_env().snapshot_mode
        if mode not in SNAPSHOT_MODES:
            raise dg.Failure(f"snapshot_mode must be 'batch' or 'per_ticker', got {mode!r}")
        return mode

    def resolved_plan(self) -> str:
        plan = self.plan or Settings.from_env().polygon_plan
        if plan not in PLANS:
            raise dg.Failure(f"plan must be one of {', '.join(PLANS)}, got {plan!r}")
        return plan

    def effective_mode(self) -> str:
        """The snapshot mode refreshes will really use: `per_ticker` in `batch` mode while the
        plan's refusal of multi-ticker snapshots is remembered."""
        return self.learnt().mode

    def learnt(self) -> LearntPlan:
        """What the key is served, market by market: day bars for every market on `free`, for
        none on `paid`, and on `auto` for those whose snapshots the plan refused (remembered
        for every process). The critical reserve is sized from it."""
        plan, mode = self.resolved_plan(), self.mode()
        if plan != "auto":
            return LearntPlan(plan, mode, configured_bars(plan))
        try:
            budget = self.budget.budget()
            recheck = self.entitlement_recheck_seconds
            bars = frozenset(
                k for k in AssetType if budget.refusal(snapshot_feature(k), recheck) is not None
            )
            if mode == "batch" and budget.refusal(MULTI_TICKER_SNAPSHOT, recheck) is not None:
                mode = "per_ticker"
        except BudgetError:
            return LearntPlan(plan, mode)  # the store is down: no call is made (failing closed)
        return LearntPlan(plan, mode, bars)

    def secondary_caller(
        self, registry: Registry, database: TradingDatabase, learnt: LearntPlan | None = None
    ) -> Caller:
        """How a non-critical run asks the budget: it keeps a reserve the size of the next
        critical refresh on the plan as learnt (day bars: one call per market), less the
        critical symbols on day bars that will spend no call within the budget's window. Pass
        `learnt` when it was just read, not to read the budget store twice."""
        learnt = learnt or self.learnt()
        idle: set[str] = set()
        if learnt.bars:
            stored = database.quote_store().latest_quotes(s.symbol for s in registry.direct())
            window = dt.timedelta(seconds=self.budget.limit()[1])
            idle = registry.idle_direct(learnt.bars, stored, clock.utcnow(), window)
        return registry.secondary_caller(learnt.mode, learnt.bars, idle)

    def client(
        self,
        logger: logging.Logger | Any | None = None,
        *,
        caller: Caller = CRITICAL_CALLER,
        max_retries: int | None = None,
        hours: MarketHours | None = None,
        publication_delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY,
    ) -> PolygonClient:
        """A client within the shared budget. Non-critical callers pass their `Caller` (it keeps
        the critical reserve); queue runs pass `max_retries=0`: the queue itself retries."""
        self.mode()
        base_url, key = self.endpoint()
        return PolygonClient(
            base_url,
            key,
            self.budget.budget(caller),
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            max_retries=self.max_retries if max_retries is None else max_retries,
            backoff_seconds=self.backoff_seconds,
            max_budget_wait_seconds=self.max_budget_wait_seconds,
            recheck_seconds=self.entitlement_recheck_seconds,
            total_timeout=self.total_timeout_seconds,
            max_body_bytes=self.max_body_bytes,
            plan=self.resolved_plan(),
            hours=hours,
            publication_delay=publication_delay,
            logger=logger,
        )

    def endpoint(self) -> tuple[str, str]:
        """(base URL, key): the configured ones, or an embedded simulator on loopback.

        The simulator is used only with the embedded database, so simulated prices can never
        reach a real trading database because POLYGON_BASE_URL was forgotten.
        """
        settings = Settings.from_env()
        base_url = self.base_url or settings.polygon_base_url
        key = self.api_key or settings.polygon_api_key
        if base_url:
            if not key:
                raise dg.Failure(f"POLYGON_API_KEY is not set (POLYGON_BASE_URL is {base_url})")
            return base_url, key
        if not self.budget.database.is_embedded():
            raise dg.Failure(
                "POLYGON_BASE_URL is not set while TRADING_DATABASE_URL is: the embedded Polygon"
                " simulator only serves the embedded database. Set POLYGON_BASE_URL to"
                " https://api.polygon.io (or to a simulator's URL on purpose)."
            )
        return embedded_simulator_url(*self.budget.limit()), key or SIMULATOR_KEY


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts are POSTed as JSON (`ALERT_WEBHOOK_URL`); unset, no alert is sent.

    The URL is a secret (a chat webhook's URL is its password): it comes through `dg.EnvVar`,
    and no log line, exception text or metadata this resource writes contains it. So the POST
    goes through `urllib`, which logs nothing, and a failure is described by its kind alone
    (an exception's text may quote the URL). A failed POST returns False and never raises:
    an alert that cannot be delivered must not break the sensor that sends it.
    """

    url: str = Field(default="", description="From ALERT_WEBHOOK_URL; a secret, never logged.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Longest wait for the answer.")

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().alert_webhook_url

    def configured(self) -> bool:
        return bool(self.resolved_url())

    def post(self, body: dict[str, Any], log: logging.Logger | Any) -> bool:
        """POST `body`; True when the receiver answered 2xx. Failures are logged without the URL."""
        url = self.resolved_url()
        if not url:
            return False
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "assets-pipeline"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as answer:
                answer.read(4096)
            return True
        except urllib.error.HTTPError as exc:
            problem = f"answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)  # urlopen wraps what failed in a URLError
            if isinstance(reason, TimeoutError):
                problem = f"did not answer within {self.timeout_seconds:g}s"
            else:
                problem = f"could not be reached ({type(reason).__name__})"
        alert = body.get("alert")
        log.warning(f"alert webhook (ALERT_WEBHOOK_URL) {problem}: {alert} not delivered")
        return False


def embedded_simulator_url(calls: int, window_seconds: float) -> str:
    """Start (once per process) the project's Polygon simulator on a free loopback port.

    Its prices are a pure function of ticker and time, so simulators in different run processes
    agree with each other.
    """
    global _simulator
    with _simulator_lock:
        if _simulator is None:
            from assets_pipeline.simulator import PolygonSimulator

            simulator = PolygonSimulator(
                host="127.0.0.1",
                port=0,
                rate_limit_calls=calls,
                rate_limit_window=window_seconds,
            )
            simulator.start()
            _simulator = simulator
        return _simulator.url
