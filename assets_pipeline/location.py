"""How the code location is assembled: assets, checks, jobs, schedules, sensors and resources.

`definitions.py` calls `build_definitions()` once for Dagster; the CLI calls it for its own runs.
The resources are built here, once, from the settings: the local set or the production set
(docs/configuration.md); secrets are passed as `dg.EnvVar`.
"""

from __future__ import annotations

import warnings

import dagster as dg

from assets_pipeline.config.registry import Registry, load_registry
from assets_pipeline.config.settings import Deployment, Settings
from assets_pipeline.defs.alerts import build_check_failure_alert, build_run_failure_alert
from assets_pipeline.defs.assets import build_quote_assets
from assets_pipeline.defs.checks import freshness_job, freshness_schedule
from assets_pipeline.defs.history import history_definitions
from assets_pipeline.defs.io_manager import QuoteIOManager
from assets_pipeline.defs.jobs import (
    enqueue_job,
    refresh_all_job,
    refresh_queue_job,
    refresh_tier_jobs,
)
from assets_pipeline.defs.keys import QUOTE_IO_MANAGER_KEY
from assets_pipeline.defs.resources import (
    AlertWebhook,
    EmbeddedSimulator,
    PolygonApi,
    PolygonBudgetResource,
    PolygonEndpoint,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.retention import prune_daily, prune_old_rows
from assets_pipeline.defs.schedules import (
    build_cadences,
    build_market_open_sensor,
    build_queue_catch_up_sensor,
)
from assets_pipeline.defs.sensors import build_drain_sensor, event_outbox_relay, relay_outbox

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
        "database": database,
        "redis": redis,
        QUOTE_IO_MANAGER_KEY: QuoteIOManager(database=database),
        "alert_webhook": AlertWebhook(url=secret("ALERT_WEBHOOK_URL", settings.alert_webhook_url)),
    }


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
    schedules, sensors = build_cadences(registry)
    assets = build_quote_assets(registry)
    check_cadence = freshness_schedule(registry)
    if isinstance(check_cadence, dg.ScheduleDefinition):
        schedules.append(check_cadence)
    else:
        sensors.append(check_cadence)
    tier_jobs = refresh_tier_jobs(registry)
    enqueue = enqueue_job(registry)
    jobs = [
        refresh_all_job(registry),
        refresh_queue_job(registry),
        *tier_jobs,
        freshness_job(registry),
    ]
    upkeep = [enqueue, relay_outbox, prune_old_rows]
    resources = build_resources(settings)
    live = dg.Definitions(
        assets=assets,
        jobs=[*jobs, *upkeep],
        schedules=[*schedules, prune_daily],
        sensors=[
            *sensors,
            build_drain_sensor(registry),
            build_market_open_sensor(registry, [*tier_jobs, enqueue]),
            build_queue_catch_up_sensor(registry),
            event_outbox_relay,
            build_run_failure_alert([*jobs, *upkeep]),
            build_check_failure_alert([key for a in assets for key in a.check_keys]),
        ],
        resources=resources,
        # Every job here is one step (one per 250 symbols, see assets.py): running the steps in
        # the run's own process saves starting a Python per step, most of a refresh's cost.
        executor=dg.in_process_executor,
    )
    # past days' bars: a family of its own, which the live definitions do not know
    return dg.Definitions.merge(live, history_definitions(registry, resources["database"]))
