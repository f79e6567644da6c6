"""Fixtures of the Dagster layer's tests: the deployment as the daemon builds it, and run records
as the daemon finds them."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest

from assets_pipeline.budget.fairness import Caller
from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.definitions import build_definitions
from assets_pipeline.defs.resources import (
    PolygonApi,
    PolygonBudgetResource,
    PolygonResource,
    RedisResource,
    TradingDatabase,
)
from assets_pipeline.defs.runs import ENQUEUE_OP
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline_tests.conftest import get_engine


def default_job(defs, request):
    """The job of a queue drain's request (it names none: the sensor's own)."""
    return "refresh_queue" if request.tags.get("assets_pipeline/kind") == "queue" else None


def enqueued(result) -> int:
    """How many symbols an enqueue run put on the queue: its one output."""
    return result.output_for_node(ENQUEUE_OP)


def create_run_for_test(instance, job_name, status, tags=None):
    """A run record as the daemon would find it (queued ones included)."""
    run = dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=status, tags=tags or {})
    return instance.add_run(run)


@pytest.fixture
def deployment(pg_url, monkeypatch, registry, dagster_instance, frozen_clock):
    """Resources as the daemon builds them, on a database of the test's own, no Redis, and the
    package's clock frozen (the budget still counts on its store's clock)."""
    for name in ("REDIS_URL", "POLYGON_BASE_URL", "TRADING_DATABASE_URL", "POLYGON_SNAPSHOT_MODE"):
        monkeypatch.delenv(name, raising=False)

    class Deployment:
        max_wait = 60.0  # one window: the drain claims only what is free now
        defs = build_definitions(registry)
        symbols = registry
        queue = RefreshQueue(get_engine(pg_url), registry.queue)

        def resources(self, mode="per_ticker"):
            database = TradingDatabase(url=pg_url)
            budget = PolygonBudgetResource(
                calls=5,
                window_seconds=60,
                store="database",
                redis=RedisResource(),
                database=database,
            )
            polygon = PolygonResource(
                api=PolygonApi(base_url="http://127.0.0.1:9", api_key="unused"),
                snapshot_mode=mode,
                budget=budget,
                max_budget_wait_seconds=self.max_wait,
            )
            return {"database": database, "polygon": polygon}

        def schedule(self, name, mode="per_ticker"):
            with dg.build_schedule_context(
                instance=self.instance, resources=self.resources(mode)
            ) as context:
                return self.defs.resolve_schedule_def(name)(context)

        def sensor(self, name, mode="per_ticker", instance=None):
            with dg.build_sensor_context(
                instance=instance or self.instance, resources=self.resources(mode)
            ) as context:
                return self.defs.resolve_sensor_def(name)(context)

        def execute(self, request, **env):
            """Run what a tick requested, in process, as the daemon would launch it, on the
            test's database (and, for a refresh, `env`'s Polygon): the code location loaded
            with those settings."""
            with monkeypatch.context() as patched:
                for name, value in {"TRADING_DATABASE_URL": pg_url, **env}.items():
                    patched.setenv(name, value)
                defs = build_definitions(self.symbols)
                job = defs.resolve_job_def(request.job_name or default_job(defs, request))
                return job.execute_in_process(
                    run_config=request.run_config or None,
                    instance=self.instance,
                    tags=request.tags,
                    partition_key=request.partition_key,
                    asset_selection=request.asset_selection,
                )

        def enqueue(self, name):
            """An enqueue schedule's tick, and the enqueue run it requests."""
            request = self.schedule(name)
            if isinstance(request, dg.RunRequest):
                assert self.execute(request).success
            return request

        def spend(self, calls, critical=False):
            caller = Caller(critical=critical)
            budget = PolygonBudget(SqlBudgetStore(get_engine(pg_url)), 5, 60, caller=caller)
            for _ in range(calls):
                budget.acquire(1)

    deployment = Deployment()
    deployment.instance = dagster_instance
    deployment.clock = frozen_clock
    return deployment
