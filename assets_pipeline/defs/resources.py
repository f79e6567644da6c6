"""Dagster resources: the trading database, Redis, the shared Polygon budget and the client.

Built once from the settings when the definitions load (`location.py`); nothing here reads the
environment. Secrets are `dg.EnvVar`. Where Polygon is (`PolygonEndpoint`) is its own resource:
`PolygonApi`, or the local set's `EmbeddedSimulator`. What a run opens (engines, Redis clients,
the simulator) is the resource's, closed when the run ends."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

import dagster as dg
import redis
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from assets_pipeline.budget.fairness import CRITICAL_CALLER, Caller
from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import AssetType, Registry
from assets_pipeline.config.settings import (
    DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    BudgetStore,
)
from assets_pipeline.persistence import redis_client
from assets_pipeline.persistence.database import DatabaseTimeouts, create_engine, is_embedded
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
from assets_pipeline.rules.cadence import (
    DEFAULT_RATE_LIMIT_CALLS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
)
from assets_pipeline.rules.end_of_day import DEFAULT_PUBLICATION_DELAY
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.plans import (
    LearntPlan,
    Plan,
    PlanError,
    SnapshotMode,
    configured_bars,
)
from assets_pipeline.rules.providers import label
from assets_pipeline.rules.retention import DEFAULT_RETENTION_DAYS

#: The key the embedded simulator is sent (it accepts any).
SIMULATOR_KEY = "simulator-key"


def _choice(kind: type[Any], value: str, what: str) -> Any:
    """`value` as the enum `kind`, or a `dg.Failure` naming what was given (run config)."""
    if value not in {member.value for member in kind}:
        allowed = ", ".join(member.value for member in kind)
        raise dg.Failure(f"{what} must be one of {allowed}, got {value!r}")
    return kind(value)


def _parsed(kind: type[Plan] | type[SnapshotMode], value: str, what: str) -> Any:
    """A plan or a snapshot mode read by `kind.parse`, or a `dg.Failure` naming what was given
    (run config)."""
    try:
        return kind.parse(value, f"run config {what}")
    except PlanError as exc:
        raise dg.Failure(str(exc)) from None


class TradingDatabase(dg.ConfigurableResource):
    """The platform's PostgreSQL (`TRADING_DATABASE_URL`), or the embedded SQLite file. Its
    engine is made on first use (its tables checked) and disposed of when the run ends, with
    the quote stores (and the ids they remember) made on it."""

    url: str = Field(description="SQLAlchemy URL: TRADING_DATABASE_URL, else the embedded file.")
    connect_timeout_seconds: float = Field(
        default=DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS.",
    )
    statement_timeout_seconds: float = Field(
        default=DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS.",
    )
    retention_days: float = Field(
        default=DEFAULT_RETENTION_DAYS,
        gt=0,
        description="How long the growing tables keep their rows (ASSETS_RETENTION_DAYS).",
    )
    _engine: sa.Engine | None = PrivateAttr(default=None)
    _stores: dict[str, QuoteStore] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def is_embedded(self) -> bool:
        return is_embedded(self.url)

    def engine(self) -> sa.Engine:
        with self._lock:
            if self._engine is None:
                timeouts = DatabaseTimeouts(
                    self.connect_timeout_seconds, self.statement_timeout_seconds
                )
                self._engine = create_engine(self.url, timeouts)
            return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            self._stores.clear()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def quote_store(self, namespace: str = "") -> QuoteStore:
        """The writer (one per `namespace`, which prefixes the Redis channels its events go to),
        kept until the run ends: the symbol ids it learns serve every step of the run."""
        engine = self.engine()
        with self._lock:
            store = self._stores.get(namespace)
            if store is None or store.engine is not engine:
                store = self._stores[namespace] = QuoteStore(engine, namespace)
            return store


class RedisResource(dg.ConfigurableResource):
    """Where updates are announced and the budget is kept; no URL means no Redis. Its client
    is made on first use and closed when the run ends."""

    url: str = Field(default="", description="redis:// URL (REDIS_URL); empty = no Redis.")
    namespace: str = Field(
        default="", description="Prefix for keys and channels (empty in production)."
    )
    _client: redis.Redis | None = PrivateAttr(default=None)

    def client(self) -> redis.Redis | None:
        if not self.url:
            return None
        if self._client is None:
            self._client = redis_client.connect(self.url)  # every wait bounded
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class CallBudgetResource(dg.ConfigurableResource):
    """A provider's one budget, shared by every process: at most `calls` requests per
    `window_seconds`, kept under its `name` in Redis or the trading database."""

    calls: int = Field(
        default=DEFAULT_RATE_LIMIT_CALLS, gt=0, description="POLYGON_RATE_LIMIT_CALLS."
    )
    window_seconds: float = Field(
        default=DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
        gt=0,
        description="POLYGON_RATE_LIMIT_WINDOW_SECONDS.",
    )
    name: str = "polygon"
    store: str = Field(
        default=BudgetStore.AUTO.value,
        description="'auto': Redis when REDIS_URL is set, else the trading database;"
        " 'redis' or 'database' to choose (POLYGON_BUDGET_STORE).",
    )
    redis: RedisResource
    database: TradingDatabase

    def limit(self) -> tuple[int, float]:
        """(calls, window in seconds)."""
        return self.calls, self.window_seconds

    def budget(self, caller: Caller = CRITICAL_CALLER) -> PolygonBudget:
        """The shared budget, as `caller` sees it (non-critical callers keep a reserve)."""
        kind = _choice(BudgetStore, self.store, "the budget store")
        client = self.redis.client()
        if kind is BudgetStore.REDIS and client is None:
            raise dg.Failure("the Polygon budget store is 'redis' but REDIS_URL is not set")
        if client is not None and kind is not BudgetStore.DATABASE:
            store: Any = RedisBudgetStore(client, self.name, self.redis.namespace)
        else:
            store = SqlBudgetStore(self.database.engine(), self.name)
        provider = label(self.name)
        return PolygonBudget(
            store, self.calls, self.window_seconds, caller=caller, provider=provider
        )


class PolygonBudgetResource(CallBudgetResource):
    """Polygon's budget: `POLYGON_RATE_LIMIT_CALLS` per `POLYGON_RATE_LIMIT_WINDOW_SECONDS`."""


class PolygonEndpoint(dg.ConfigurableResource):
    """Where Polygon is, and the deployment's plan and snapshot mode (what `polygon` uses
    unless a run's config says otherwise)."""

    plan: str = Field(default=Plan.AUTO.value, description="POLYGON_PLAN: auto, free or paid.")
    snapshot_mode: str = Field(
        default=SnapshotMode.BATCH.value, description="POLYGON_SNAPSHOT_MODE: batch or per_ticker."
    )

    def endpoint(self) -> tuple[str, str]:
        """(base URL, key)."""
        raise NotImplementedError


class PolygonApi(PolygonEndpoint):
    """The production set's Polygon: `POLYGON_BASE_URL` with `POLYGON_API_KEY`. It never
    starts a simulator: without a base URL a run fails, so simulated prices can never reach a
    real trading database because POLYGON_BASE_URL was forgotten."""

    base_url: str = Field(default="", description="e.g. https://api.polygon.io.")
    api_key: str = Field(default="", description="From POLYGON_API_KEY; never logged.")

    def endpoint(self) -> tuple[str, str]:
        if not self.base_url:
            raise dg.Failure(
                "POLYGON_BASE_URL is not set while TRADING_DATABASE_URL is: the embedded Polygon"
                " simulator only serves the embedded database. Set POLYGON_BASE_URL to"
                " https://api.polygon.io (or to a simulator's URL on purpose)."
            )
        if not self.api_key:
            raise dg.Failure(f"POLYGON_API_KEY is not set (POLYGON_BASE_URL is {self.base_url})")
        return self.base_url, self.api_key


class EmbeddedSimulator(PolygonEndpoint):
    """The local set's Polygon: the project's simulator on a free loopback port, started when
    a run first asks for it and stopped when the run ends. Its prices are a pure function of
    ticker and time, so simulators in different processes agree with each other."""

    calls: int = Field(default=DEFAULT_RATE_LIMIT_CALLS, gt=0)
    window_seconds: float = Field(default=DEFAULT_RATE_LIMIT_WINDOW_SECONDS, gt=0)
    _simulator: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def endpoint(self) -> tuple[str, str]:
        with self._lock:
            if self._simulator is None:
                from assets_pipeline.simulator import PolygonSimulator

                simulator = PolygonSimulator(
                    host="127.0.0.1",
                    port=0,
                    rate_limit_calls=self.calls,
                    rate_limit_window=self.window_seconds,
                )
                simulator.start()
                self._simulator = simulator
            return self._simulator.url, SIMULATOR_KEY

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            if self._simulator is not None:
                self._simulator.stop()
                self._simulator = None


class PolygonResource(dg.ConfigurableResource):
    """Polygon's REST API through `api` (see `PolygonEndpoint`), within the shared budget.

    Run config (the launchpad) that sets any of these fields resets the others to their
    defaults (Dagster's way): so the plan and snapshot mode are empty here by default, meaning
    `api`'s, and the endpoint, key, database and budget are nested resources, which run config
    of `polygon` leaves as loaded."""

    snapshot_mode: str = Field(
        default="",
        description="'batch': one /v3/snapshot call per 250 tickers (falls back to per_ticker"
        " on a 403); 'per_ticker': one call per symbol, the free-plan way. Empty = the"
        " deployment's (POLYGON_SNAPSHOT_MODE).",
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
        " the newest day bars; 'paid': snapshots. Empty = the deployment's (POLYGON_PLAN).",
    )
    entitlement_recheck_seconds: float = Field(
        default=DEFAULT_RECHECK_SECONDS,
        gt=0,
        description="How long a plan's refusal of batch snapshots (a 403) is remembered before"
        " a refresh asks again.",
    )
    api: PolygonEndpoint
    budget: PolygonBudgetResource

    def mode(self) -> SnapshotMode:
        return _parsed(SnapshotMode, self.snapshot_mode or self.api.snapshot_mode, "snapshot_mode")

    def resolved_plan(self) -> Plan:
        return _parsed(Plan, self.plan or self.api.plan, "plan")

    def effective_mode(self) -> str:
        """The snapshot mode refreshes will really use: `per_ticker` in `batch` mode while the
        plan's refusal of multi-ticker snapshots is remembered."""
        return self.learnt().mode

    def learnt(self) -> LearntPlan:
        """What the key is served, market by market: day bars for every market on `free`, for
        none on `paid`, and on `auto` for those whose snapshots the plan refused (remembered
        for every process). The critical reserve is sized from it."""
        plan, mode = self.resolved_plan(), self.mode()
        if plan is not Plan.AUTO:
            return LearntPlan(plan, mode, configured_bars(plan))
        try:
            budget = self.budget.budget()
            recheck = self.entitlement_recheck_seconds
            bars = frozenset(
                k for k in AssetType if budget.refusal(snapshot_feature(k), recheck) is not None
            )
            refused = budget.refusal(MULTI_TICKER_SNAPSHOT, recheck) is not None
            if mode is SnapshotMode.BATCH and refused:
                mode = SnapshotMode.PER_TICKER
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
            plan=self.resolved_plan().value,
            hours=hours,
            publication_delay=publication_delay,
            logger=logger,
        )

    def endpoint(self) -> tuple[str, str]:
        """(base URL, key): `api`'s."""
        return self.api.endpoint()


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

    def configured(self) -> bool:
        return bool(self.url)

    def post(self, body: dict[str, Any], log: logging.Logger | Any) -> bool:
        """POST `body`; True when the receiver answered 2xx. Failures are logged without the URL."""
        import urllib.error  # here: urllib.request costs the code location's load ~60 ms
        import urllib.request

        url = self.url
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
