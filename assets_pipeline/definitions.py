"""The code location: assets, jobs, sensors and resources, configured from the environment.

Secrets (`POLYGON_API_KEY`, and the database and Redis URLs, which may hold passwords) are passed
as `dg.EnvVar` when set, so the UI shows the variable's name and never its value. Unset, each
setting falls back to the embedded default described in `settings.py`.
"""

from __future__ import annotations

import dagster as dg

from assets_pipeline.config.registry import Registry, load_registry
from assets_pipeline.config.settings import (
    DEFAULT_RATE_LIMIT_CALLS,
    DEFAULT_RATE_LIMIT_WINDOW_SECONDS,
    env,
    env_is_set,
)
from assets_pipeline.defs.assets import build_quote_assets
from assets_pipeline.defs.checks import build_freshness_checks, freshness_job, freshness_schedule
from assets_pipeline.defs.io_manager import QuoteIOManager
from assets_pipeline.defs.jobs import refresh_all_job, refresh_queue_job, refresh_tier_jobs
from assets_pipeline.defs.keys import QUOTE_IO_MANAGER_KEY
from assets_pipeline.defs.resources import (
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.schedules import (
    build_cadences,
    build_market_open_sensor,
    build_queue_catch_up_sensor,
)
from assets_pipeline.defs.sensors import build_drain_sensor, event_outbox_relay


def _secret(name: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if env_is_set(name) else ""


def build_resources() -> dict[str, object]:
    database = TradingDatabase(url=_secret("TRADING_DATABASE_URL"))
    redis = RedisResource(url=_secret("REDIS_URL"), namespace=env("REDIS_NAMESPACE"))
    budget = PolygonBudgetResource(
        calls=int(env("POLYGON_RATE_LIMIT_CALLS", str(DEFAULT_RATE_LIMIT_CALLS))),
        window_seconds=float(
            env("POLYGON_RATE_LIMIT_WINDOW_SECONDS", str(DEFAULT_RATE_LIMIT_WINDOW_SECONDS))
        ),
        store=env("POLYGON_BUDGET_STORE", "auto"),
        redis=redis,
        database=database,
    )
    polygon = PolygonResource(
        api_key=_secret("POLYGON_API_KEY"),
        base_url=env("POLYGON_BASE_URL"),
        snapshot_mode=env("POLYGON_SNAPSHOT_MODE"),
        budget=budget,
    )
    return {
        "polygon": polygon,
        "database": database,
        "redis": redis,
        QUOTE_IO_MANAGER_KEY: QuoteIOManager(database=database, redis=redis),
    }


def build_definitions(registry: Registry | None = None) -> dg.Definitions:
    registry = registry or load_registry()
    schedules, sensors = build_cadences(registry)
    checks = build_freshness_checks(registry)
    check_cadence = freshness_schedule(registry)
    if isinstance(check_cadence, dg.ScheduleDefinition):
        schedules.append(check_cadence)
    else:
        sensors.append(check_cadence)
    return dg.Definitions(
        assets=[build_quote_assets(registry)],
        asset_checks=[checks],
        jobs=[
            refresh_all_job(registry),
            refresh_queue_job(registry),
            *refresh_tier_jobs(registry),
            freshness_job(checks),
        ],
        schedules=schedules,
        sensors=[
            *sensors,
            build_drain_sensor(registry),
            build_market_open_sensor(registry),
            build_queue_catch_up_sensor(registry),
            event_outbox_relay,
        ],
        resources=build_resources(),
    )


defs = build_definitions()
