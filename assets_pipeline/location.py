"""How the code location is assembled: assets, checks, jobs, schedules, sensors and resources.

`definitions.py` calls `build_definitions()` once for Dagster; the CLI calls it for its own runs.
The resources are built here, once, from the settings: the local set or the production set
(docs/configuration.md); secrets are passed as `dg.EnvVar`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import dagster as dg

from assets_pipeline.config.registry import Registry, load_registry
from assets_pipeline.config.settings import Deployment, Settings
from assets_pipeline.defs.alerts import alert_definitions
from assets_pipeline.defs.assets import build_quote_assets
from assets_pipeline.defs.checks import check_definitions
from assets_pipeline.defs.history import history_definitions
from assets_pipeline.defs.io_manager import QuoteIOManager
from assets_pipeline.defs.jobs import refresh_definitions
from assets_pipeline.defs.keys import QUOTE_IO_MANAGER_KEY
from assets_pipeline.defs.resources import (
    AlertWebhook,
    CallBudgetResource,
    EmbeddedSimulator,
    PolygonApi,
    PolygonBudgetResource,
    PolygonEndpoint,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.retention import retention_definitions
from assets_pipeline.defs.schedules import cadence_definitions
from assets_pipeline.defs.sensors import sensor_definitions
from assets_pipeline.defs.sources import (
    BitstampResource,
    KrakenResource,
    OandaResource,
    ProvidersResource,
)
from assets_pipeline.rules.providers import ProviderName

# Dagster warns that `owners` is in beta when it binds resources to the jobs of a sensor that
# targets job definitions (the market-open sensor's two jobs), though none is given.
warnings.filterwarnings("ignore", "Parameter `owners`", dg.BetaWarning)


def build_resources(
    settings: Settings | None = None, *, secrets_as_env_vars: bool = True
) -> dict[str, object]:
    """The resources, built once from the one `Settings`: the local set or the production set
    (`Settings.deployment`, see docs/configuration.md). For the code location every secret that
    is set is passed as `dg.EnvVar`, so the UI shows the variable's name and never its value;
    the CLI, which uses the resources outside Dagster, asks for the values themselves."""
    settings = settings or Settings.from_env()

    def secret(name: str, value: str) -> str | dg.EnvVar:
        return dg.EnvVar(name) if value and secrets_as_env_vars else value

    database = TradingDatabase(
        url=secret("TRADING_DATABASE_URL", settings.trading_database_url)
        or settings.embedded_database_url,
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        statement_timeout_seconds=settings.database_statement_timeout_seconds,
        retention_days=settings.retention_days,
    )
    redis = RedisResource(
        url=secret("REDIS_URL", settings.redis_url), namespace=settings.redis_namespace
    )
    budget = PolygonBudgetResource(
        calls=settings.rate_limit_calls,
        window_seconds=settings.rate_limit_window_seconds,
        store=settings.budget_store.value,
        redis=redis,
        database=database,
    )
    if settings.deployment is Deployment.LOCAL:
        api: PolygonEndpoint = local_polygon(settings)
    else:
        api = PolygonApi(
            base_url=settings.polygon_base_url,
            api_key=secret("POLYGON_API_KEY", settings.polygon_api_key),
            plan=settings.polygon_plan.value,
            snapshot_mode=settings.snapshot_mode.value,
        )
    return {
        "polygon": PolygonResource(api=api, budget=budget),
        "providers": providers_resource(settings, secret, redis, database),
        "database": database,
        "redis": redis,
        QUOTE_IO_MANAGER_KEY: QuoteIOManager(database=database),
        "alert_webhook": AlertWebhook(url=secret("ALERT_WEBHOOK_URL", settings.alert_webhook_url)),
    }


def providers_resource(
    settings: Settings,
    secret: Callable[[str, str], str | dg.EnvVar],
    redis: RedisResource,
    database: TradingDatabase,
) -> ProvidersResource:
    """Kraken, OANDA and Bitstamp: each as configured; unconfigured, its simulator in the local
    set and unused in production. Each has its own budget, kept beside Polygon's."""
    local = settings.deployment is Deployment.LOCAL

    def budget(name: str, calls: int, window: float) -> CallBudgetResource:
        store = settings.budget_store.value
        return CallBudgetResource(
            name=name,
            calls=calls,
            window_seconds=window,
            store=store,
            redis=redis,
            database=database,
        )

    kraken, oanda, bitstamp = settings.kraken, settings.oanda, settings.bitstamp
    return ProvidersResource(
        kraken=KrakenResource(
            base_url=kraken.base_url,
            simulated=local and not kraken.configured,
            budget=budget(ProviderName.KRAKEN.value, kraken.calls, kraken.window_seconds),
        ),
        oanda=OandaResource(
            base_url=oanda.base_url,
            simulated=local and not oanda.configured,
            token=secret("OANDA_API_TOKEN", oanda.token),
            account_id=oanda.account_id,
            budget=budget(ProviderName.OANDA.value, oanda.calls, oanda.window_seconds),
        ),
        bitstamp=BitstampResource(
            base_url=bitstamp.base_url,
            simulated=local and not bitstamp.configured,
            budget=budget(ProviderName.BITSTAMP.value, bitstamp.calls, bitstamp.window_seconds),
        ),
    )


def local_polygon(settings: Settings) -> EmbeddedSimulator:
    """The local set's Polygon: the project's simulator, with the budget's limits."""
    return EmbeddedSimulator(
        calls=settings.rate_limit_calls,
        window_seconds=settings.rate_limit_window_seconds,
        plan=settings.polygon_plan.value,
        snapshot_mode=settings.snapshot_mode.value,
    )


def build_definitions(
    registry: Registry | None = None, settings: Settings | None = None
) -> dg.Definitions:
    """The code location: every definition, from the symbols file and the settings (read from
    the environment when not given), and the resources built from them."""
    settings = settings or Settings.from_env()
    return _assemble(registry or load_registry(settings=settings), settings)


def _assemble(registry: Registry, settings: Settings) -> dg.Definitions:
    """Each area's small definitions, merged: what the alerts watch, then the alerts and the
    resources."""
    resources = build_resources(settings)
    refresh = refresh_definitions(registry)
    watched = dg.Definitions.merge(
        dg.Definitions(assets=build_quote_assets(registry)),
        # past days' bars: a family of its own, which the live definitions do not know
        history_definitions(registry, resources["database"]),
        refresh,
        check_definitions(registry),
        cadence_definitions(registry, list(refresh.jobs or [])),
        sensor_definitions(registry),
        retention_definitions(),
    )
    return dg.Definitions.merge(
        watched,
        alert_definitions(watched, registry),
        dg.Definitions(
            resources=resources,
            # Every job here is one step (one per 250 symbols, see assets.py): running the steps
            # in the run's own process saves starting a Python per step, most of a refresh's cost.
            executor=dg.in_process_executor,
        ),
    )
