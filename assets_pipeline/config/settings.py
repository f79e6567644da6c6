"""Every setting, read from the environment in one place: `Settings.from_env()`.

Each works unset on a fresh machine: the embedded SQLite database, no Redis, the project's own
Polygon simulator and the free plan's budget of 5 calls a minute. The code location (when it
loads) and the CLI read the environment through here, and nowhere else. A bad value fails at
once with the variable's name; a secret's value is never quoted."""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from assets_pipeline.rules.cadence import (
    DEFAULT_BITSTAMP_BUDGET,
    DEFAULT_KRAKEN_BUDGET,
    DEFAULT_OANDA_BUDGET,
    DEFAULT_RATE_LIMIT_CALLS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    BudgetShape,
)
from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.plans import Plan, PlanError, SnapshotMode
from assets_pipeline.rules.providers import BASE_URLS, ProviderName
from assets_pipeline.rules.retention import DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS


class BudgetStore(enum.StrEnum):
    """Where the shared budget is kept: Redis when `REDIS_URL` is set (`auto`), or as said."""

    AUTO = "auto"
    REDIS = "redis"
    DATABASE = "database"


class BudgetCheck(enum.StrEnum):
    """What a symbols file the budget cannot serve does at load: fail, or warn."""

    FAIL = "fail"
    WARN = "warn"


class Deployment(enum.StrEnum):
    """Which set of resources the code location is built with (`location.py`): `production`
    when POLYGON_BASE_URL or TRADING_DATABASE_URL is set, else `local` (the embedded SQLite
    file and the project's Polygon simulator)."""

    LOCAL = "local"
    PRODUCTION = "production"


Choice = TypeVar("Choice", bound=enum.StrEnum)
BUDGET_CHECKS = tuple(BudgetCheck)
BUDGET_STORES = tuple(BudgetStore)
#: How long a connection to the trading database may take to be answered, and a statement (or
#: a wait for a lock) to run, before the command fails naming the database.
DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS = 30.0
#: The longest either may be set to: an hour.
MAX_TIMEOUT_SECONDS = 3600.0
#: Variables whose values may hold a password or a key: passed to Dagster as `dg.EnvVar`, so
#: the UI shows their names and never their values.
SECRETS = (
    "POLYGON_API_KEY",
    "TRADING_DATABASE_URL",
    "REDIS_URL",
    "ALERT_WEBHOOK_URL",
    "OANDA_API_TOKEN",
)


#: Every variable `Settings.from_env()` reads: what a shell must not leak into a test or a bench.
VARIABLES = (
    "POLYGON_API_KEY",
    "POLYGON_BASE_URL",
    "POLYGON_SNAPSHOT_MODE",
    "POLYGON_PLAN",
    "POLYGON_BUDGET_CHECK",
    "POLYGON_RATE_LIMIT_CALLS",
    "POLYGON_RATE_LIMIT_WINDOW_SECONDS",
    "POLYGON_BUDGET_STORE",
    "TRADING_DATABASE_URL",
    "TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS",
    "TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS",
    "REDIS_URL",
    "REDIS_NAMESPACE",
    "ASSETS_CONFIG",
    "ASSETS_PIPELINE_HOME",
    "DAGSTER_HOME",
    "ASSETS_RETENTION_DAYS",
    "ALERT_WEBHOOK_URL",
    "KRAKEN_BASE_URL",
    "KRAKEN_RATE_LIMIT_CALLS",
    "KRAKEN_RATE_LIMIT_WINDOW_SECONDS",
    "OANDA_API_TOKEN",
    "OANDA_ACCOUNT_ID",
    "OANDA_BASE_URL",
    "OANDA_RATE_LIMIT_CALLS",
    "OANDA_RATE_LIMIT_WINDOW_SECONDS",
    "BITSTAMP_BASE_URL",
    "BITSTAMP_RATE_LIMIT_CALLS",
    "BITSTAMP_RATE_LIMIT_WINDOW_SECONDS",
)


class SettingsError(ValueError):
    """A variable holds a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class ProviderSettings:
    """One more provider of prices (Kraken, OANDA, Bitstamp): where it is, its key if it takes one,
    and its budget. In production it is used only when configured (`configured`): a deployment
    asks no host it was not given; the local set runs its simulator instead."""

    base_url: str = ""
    token: str = ""
    account_id: str = ""
    calls: int = 1
    window_seconds: float = 1.0

    @property
    def configured(self) -> bool:
        return bool(self.base_url)


@dataclass(frozen=True)
class Settings:
    """The deployment's settings. Empty strings mean "unset: use the embedded default"."""

    polygon_api_key: str = ""
    polygon_base_url: str = ""
    snapshot_mode: SnapshotMode = SnapshotMode.BATCH
    polygon_plan: Plan = Plan.AUTO
    budget_check: BudgetCheck = BudgetCheck.FAIL
    rate_limit_calls: int = DEFAULT_RATE_LIMIT_CALLS
    rate_limit_window_seconds: float = DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    budget_store: BudgetStore = BudgetStore.AUTO
    trading_database_url: str = ""
    database_connect_timeout_seconds: float = DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS
    database_statement_timeout_seconds: float = DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS
    redis_url: str = ""
    redis_namespace: str = ""
    assets_config: str = ""
    home: Path = Path.home() / ".assets_pipeline"
    dagster_home: str = ""
    retention_days: float = DEFAULT_RETENTION_DAYS
    alert_webhook_url: str = ""
    kraken: ProviderSettings = ProviderSettings(*("", "", ""), *DEFAULT_KRAKEN_BUDGET)
    oanda: ProviderSettings = ProviderSettings(*("", "", ""), *DEFAULT_OANDA_BUDGET)
    bitstamp: ProviderSettings = ProviderSettings(*("", "", ""), *DEFAULT_BITSTAMP_BUDGET)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable (see docs/configuration.md): when the
        definitions load, and once per command; nothing reads them at run time."""
        return cls._read(os.environ if environ is None else environ)

    @classmethod
    def _read(cls, environ: Mapping[str, str]) -> Settings:
        env = _Reader(environ)
        return cls(
            polygon_api_key=env.text("POLYGON_API_KEY"),
            polygon_base_url=env.text("POLYGON_BASE_URL"),
            snapshot_mode=env.parsed("POLYGON_SNAPSHOT_MODE", SnapshotMode),
            polygon_plan=env.parsed("POLYGON_PLAN", Plan),
            budget_check=env.choice("POLYGON_BUDGET_CHECK", BudgetCheck),
            rate_limit_calls=env.number("POLYGON_RATE_LIMIT_CALLS", int, DEFAULT_RATE_LIMIT_CALLS),
            rate_limit_window_seconds=env.number(
                "POLYGON_RATE_LIMIT_WINDOW_SECONDS", float, DEFAULT_RATE_LIMIT_WINDOW_SECONDS
            ),
            budget_store=env.choice("POLYGON_BUDGET_STORE", BudgetStore),
            trading_database_url=env.text("TRADING_DATABASE_URL"),
            database_connect_timeout_seconds=env.number(
                "TRADING_DATABASE_CONNECT_TIMEOUT_SECONDS",
                float,
                DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
                MAX_TIMEOUT_SECONDS,
            ),
            database_statement_timeout_seconds=env.number(
                "TRADING_DATABASE_STATEMENT_TIMEOUT_SECONDS",
                float,
                DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECONDS,
                MAX_TIMEOUT_SECONDS,
            ),
            redis_url=env.text("REDIS_URL"),
            redis_namespace=env.text("REDIS_NAMESPACE"),
            assets_config=env.text("ASSETS_CONFIG"),
            home=_home(env.text("ASSETS_PIPELINE_HOME"), env.text("DAGSTER_HOME")),
            dagster_home=env.text("DAGSTER_HOME"),
            retention_days=env.number(
                "ASSETS_RETENTION_DAYS", float, DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS
            ),
            alert_webhook_url=_webhook_url(env.text("ALERT_WEBHOOK_URL")),
            kraken=_kraken(env),
            oanda=_oanda(env),
            bitstamp=_bitstamp(env),
        )

    @property
    def budget_shape(self) -> BudgetShape:
        """What the staleness defaults need to know of the budget."""
        return BudgetShape(
            self.rate_limit_calls, self.rate_limit_window_seconds, self.snapshot_mode
        )

    @property
    def live_providers(self) -> frozenset[str]:
        """The live providers besides Polygon this deployment has: those configured, and in
        the local set every one (their simulators stand in)."""
        local = self.deployment is Deployment.LOCAL
        given = {
            ProviderName.KRAKEN: self.kraken,
            ProviderName.OANDA: self.oanda,
            ProviderName.BITSTAMP: self.bitstamp,
        }
        return frozenset(str(n) for n, p in given.items() if p.configured or local)

    @property
    def retention(self) -> dt.timedelta:
        """How long the growing tables keep their rows (`persistence/retention.py`)."""
        return dt.timedelta(days=self.retention_days)

    @property
    def embedded_database_url(self) -> str:
        return f"sqlite:///{self.home / 'trading.sqlite'}"

    @property
    def deployment(self) -> Deployment:
        """Local (nothing external set) or production (see `Deployment`)."""
        if self.polygon_base_url or self.trading_database_url:
            return Deployment.PRODUCTION
        return Deployment.LOCAL

    @property
    def database_url(self) -> str:
        """The trading database: `TRADING_DATABASE_URL`, else the embedded file."""
        return self.trading_database_url or self.embedded_database_url


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str) -> str:
        return self.environ.get(name, "").strip()

    def choice(self, name: str, allowed: type[Choice]) -> Choice:
        """One of `allowed`'s values; unset, its first."""
        value = self.text(name) or next(iter(allowed)).value
        if value not in {member.value for member in allowed}:
            raise SettingsError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        return allowed(value)

    def parsed(self, name: str, kind: type[Plan] | type[SnapshotMode]) -> Plan | SnapshotMode:
        """A plan or a snapshot mode, read by its own `parse` (rules/plans.py); unset, the
        first."""
        try:
            return kind.parse(self.text(name) or next(iter(kind)).value, name)
        except PlanError as exc:
            raise SettingsError(str(exc)) from None

    def number(
        self,
        name: str,
        kind: type[int] | type[float],
        default: float,
        most: float | None = None,
    ) -> int | float:
        """A number above 0 (and at most `most`): NaN, infinity and the like are refused."""
        raw = self.text(name)
        if not raw:
            return kind(default)
        expected = "a whole number" if kind is int else "a number"
        bounds = f"above 0 and at most {most:g}" if most is not None else "above 0"
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={excerpt(raw)}: expected {expected} {bounds}") from None
        if not value > 0 or (most is not None and not value <= most):
            raise SettingsError(f"{name}={excerpt(raw)}: must be {bounds}")
        return value


def environment() -> Mapping[str, str]:
    """The process's environment: the one place the package reads it (the doctor reports on
    the raw variables, the settings read them)."""
    return os.environ


def _webhook_url(value: str) -> str:
    """`ALERT_WEBHOOK_URL`, an http(s) URL. It is a secret (a chat webhook's URL is its
    password), so a bad one is refused without being quoted."""
    if value and not value.lower().startswith(("http://", "https://")):
        raise SettingsError(
            "ALERT_WEBHOOK_URL: expected an http:// or https:// URL (the value is a secret and"
            " is not shown)"
        )
    return value


def _budget(env: _Reader, prefix: str, default: tuple[int, float]) -> tuple[int, float]:
    calls = env.number(f"{prefix}_RATE_LIMIT_CALLS", int, default[0])
    window = env.number(f"{prefix}_RATE_LIMIT_WINDOW_SECONDS", float, default[1])
    return int(calls), float(window)


def _kraken(env: _Reader) -> ProviderSettings:
    """Kraken's public data: used in production once `KRAKEN_BASE_URL` names it (no key)."""
    url = _http_url(env.text("KRAKEN_BASE_URL"), "KRAKEN_BASE_URL")
    return ProviderSettings(url, "", "", *_budget(env, "KRAKEN", DEFAULT_KRAKEN_BUDGET))


def _bitstamp(env: _Reader) -> ProviderSettings:
    """Bitstamp's public data: used in production once `BITSTAMP_BASE_URL` names it (no key)."""
    url = _http_url(env.text("BITSTAMP_BASE_URL"), "BITSTAMP_BASE_URL")
    return ProviderSettings(url, "", "", *_budget(env, "BITSTAMP", DEFAULT_BITSTAMP_BUDGET))


def _oanda(env: _Reader) -> ProviderSettings:
    """OANDA v20: used in production once `OANDA_API_TOKEN` is set, with its account id, at
    `OANDA_BASE_URL` (the practice server unless said)."""
    token, account = env.text("OANDA_API_TOKEN"), env.text("OANDA_ACCOUNT_ID")
    url = _http_url(env.text("OANDA_BASE_URL"), "OANDA_BASE_URL")
    if token and not account:
        raise SettingsError(
            "OANDA_API_TOKEN is set but OANDA_ACCOUNT_ID is not (such as 101-004-1234567-001)"
        )
    if (account or url) and not token:
        raise SettingsError("OANDA_ACCOUNT_ID or OANDA_BASE_URL is set but OANDA_API_TOKEN is not")
    if token:
        url = url or BASE_URLS[ProviderName.OANDA]
    return ProviderSettings(url, token, account, *_budget(env, "OANDA", DEFAULT_OANDA_BUDGET))


def _http_url(value: str, name: str) -> str:
    if value and not value.lower().startswith(("http://", "https://")):
        raise SettingsError(f"{name}={excerpt(value)}: expected an http:// or https:// URL")
    return value.rstrip("/")


def _home(configured: str, dagster_home: str) -> Path:
    """Where the embedded defaults keep their files: `ASSETS_PIPELINE_HOME`, else
    `$DAGSTER_HOME/assets_pipeline`, else `~/.assets_pipeline`. Absolute, so the webserver, the
    daemon and every run process agree whatever their working directory."""
    if configured:
        return Path(configured).expanduser().resolve()
    if dagster_home:
        return Path(dagster_home).expanduser().resolve() / "assets_pipeline"
    return Path.home() / ".assets_pipeline"
