"""What every cadence needs to know of Dagster's runs, and how a cadence becomes a definition.

Shared by the schedules, the sensors and the checks' own cadence, so none of them imports another.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import TierPolicy, cron_for
from assets_pipeline.rules.run_kinds import max_runtime_seconds

QUEUE_JOB = "refresh_queue"
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def tier_job_name(policy: TierPolicy) -> str:
    return f"refresh_{policy.tier.value}"


def today() -> str:
    """The live partition's key."""
    return clock.today().isoformat()


def runs_in_flight(instance: dg.DagsterInstance, job_name: str) -> list[dg.DagsterRun]:
    """The job's runs still queued or running, less those past their maximum runtime.

    A run whose worker was killed stays STARTED for ever; a cadence that waited for it would
    never refresh again. A run in flight for longer than its maximum runtime (the
    `dagster/max_runtime` tag, which run monitoring enforces) is taken for dead and no longer
    holds the cadence back.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=20
    )
    now = clock.utcnow().timestamp()
    alive = []
    for record in records:
        since = record.start_time or record.create_timestamp.timestamp()
        if now - since <= max_runtime_seconds(record.dagster_run.tags):
            alive.append(record.dagster_run)
    return alive


Tick = Callable[
    [dg.ScheduleEvaluationContext | dg.SensorEvaluationContext, TradingDatabase], object
]


def cadence_definition(
    name: str, every_seconds: float, job_name: str, description: str, tick: Tick
) -> dg.ScheduleDefinition | dg.SensorDefinition:
    """A schedule when cron can express the period, else a sensor with that interval."""
    cron = cron_for(every_seconds)
    if cron:

        @dg.schedule(
            name=name,
            cron_schedule=cron,
            job_name=job_name,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=description,
        )
        def on_schedule(context: dg.ScheduleEvaluationContext, database: TradingDatabase):  # noqa: ANN202
            return tick(context, database)

        return on_schedule

    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=max(1, int(every_seconds)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def on_sensor(context: dg.SensorEvaluationContext, database: TradingDatabase):  # noqa: ANN202
        return tick(context, database)

    return on_sensor
