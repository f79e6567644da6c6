"""The tier cadences: direct tiers refreshed on their own clock, queued tiers put on the queue.

None of these call Polygon. A direct tier's tick asks for one run of its job and skips, with the
reason, while one is still queued or running; a queued tier's tick only writes the queue (its
refresh is the drain sensor's business). A cadence cron can express becomes a schedule, others
(sub-minute, for compressed tests) a sensor with that interval, both driven by the functions here.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from assets_pipeline.batches import CRITICAL, run_tags
from assets_pipeline.cadence import TierPolicy, format_duration
from assets_pipeline.refresh_queue import RefreshQueue
from assets_pipeline.registry import Registry
from assets_pipeline.resources import TradingDatabase

QUEUE_JOB = "refresh_queue"
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
#: A direct tier whose last run started longer ago than its cadence plus this is refreshed at
#: once: at start-up, and after the daemon was down or a tick was missed.
CATCH_UP_GRACE_SECONDS = 30.0


def tier_job_name(policy: TierPolicy) -> str:
    return f"refresh_{policy.tier.value}"


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def runs_in_flight(instance: dg.DagsterInstance, job_name: str) -> Sequence[dg.DagsterRun]:
    return instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=5
    )


def direct_tick(instance: dg.DagsterInstance, policy: TierPolicy) -> dg.RunRequest | dg.SkipReason:
    """One refresh of a direct tier, unless one is still queued or running."""
    job = tier_job_name(policy)
    busy = runs_in_flight(instance, job)
    if busy:
        return dg.SkipReason(
            f"a {job} run is still {busy[0].status.value.lower()} ({busy[0].run_id[:8]}):"
            " not starting another"
        )
    return dg.RunRequest(partition_key=today(), tags=run_tags(CRITICAL, tier=policy.tier.value))


def catch_up_tick(
    instance: dg.DagsterInstance, policy: TierPolicy, now: float
) -> dg.RunRequest | dg.SkipReason:
    """Refresh a direct tier now if no run of it started within its cadence (start-up)."""
    job = tier_job_name(policy)
    last = instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
    if last:
        record = instance.get_run_record_by_id(last[0].run_id)
        started = (record.start_time or record.create_timestamp.timestamp()) if record else now
        if now - started < policy.every_seconds + CATCH_UP_GRACE_SECONDS:
            return dg.SkipReason(f"{job} ran {now - started:.0f}s ago: on schedule")
    return direct_tick(instance, policy)


def enqueue_tick(registry: Registry, policy: TierPolicy, database: TradingDatabase) -> str:
    """Put a queued tier's symbols on the queue; return what happened, for the tick's reason."""
    symbols = [(s.symbol, s.tier) for s in registry.in_tier(policy.tier)]
    plan = RefreshQueue(database.engine(), registry.queue).enqueue(symbols)
    added = len(plan.insert) + sum(1 for item in plan.update if item.attempts == 0)
    message = (
        f"enqueued {added} {policy.tier.value} symbol(s);"
        f" {len(symbols) - added - len(plan.dropped)} already waiting"
    )
    if plan.dropped:
        message += f"; QUEUE FULL ({registry.queue.max_size}): dropped {', '.join(plan.dropped)}"
    return message


def build_cadences(
    registry: Registry,
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    schedules: list[dg.ScheduleDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for policy in registry.tiers.values():
        if not registry.in_tier(policy.tier):
            continue
        if policy.refresh == "direct":
            schedules_or_sensors = _direct(policy)
            if policy.cron:  # a sensor cadence already fires at start-up
                sensors.append(_catch_up(policy))
        else:
            schedules_or_sensors = _enqueue(registry, policy)
        if isinstance(schedules_or_sensors, dg.ScheduleDefinition):
            schedules.append(schedules_or_sensors)
        else:
            sensors.append(schedules_or_sensors)
    return schedules, sensors


def _direct(policy: TierPolicy) -> dg.ScheduleDefinition | dg.SensorDefinition:
    name = f"refresh_{policy.tier.value}_every_{format_duration(policy.every_seconds)}"
    description = (
        f"Refresh the {policy.tier.value} tier every {format_duration(policy.every_seconds)};"
        " skips while a refresh of the tier is still queued or running."
    )
    job = tier_job_name(policy)
    if policy.cron:

        @dg.schedule(
            name=name,
            cron_schedule=policy.cron,
            job_name=job,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=description,
        )
        def direct_schedule(context: dg.ScheduleEvaluationContext):  # noqa: ANN202
            return direct_tick(context.instance, policy)

        return direct_schedule

    @dg.sensor(
        name=name,
        job_name=job,
        minimum_interval_seconds=max(1, int(policy.every_seconds)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def direct_sensor(context: dg.SensorEvaluationContext):  # noqa: ANN202
        return direct_tick(context.instance, policy)

    return direct_sensor


def _catch_up(policy: TierPolicy) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"refresh_{policy.tier.value}_at_start_up",
        job_name=tier_job_name(policy),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Refresh the {policy.tier.value} tier at once when none of its runs started within"
            " its cadence: at start-up, and after the daemon was down."
        ),
    )
    def catch_up(context: dg.SensorEvaluationContext):  # noqa: ANN202
        return catch_up_tick(context.instance, policy, dt.datetime.now(dt.UTC).timestamp())

    return catch_up


def _enqueue(registry: Registry, policy: TierPolicy) -> dg.ScheduleDefinition | dg.SensorDefinition:
    name = f"enqueue_{policy.tier.value}_every_{format_duration(policy.every_seconds)}"
    description = (
        f"Put the {policy.tier.value} tier on the refresh queue every"
        f" {format_duration(policy.every_seconds)}; the queue drain sensor refreshes it as the"
        " budget allows. Launches no run itself."
    )
    if policy.cron:

        @dg.schedule(
            name=name,
            cron_schedule=policy.cron,
            job_name=QUEUE_JOB,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=description,
        )
        def enqueue_schedule(context: dg.ScheduleEvaluationContext, database: TradingDatabase):  # noqa: ANN202
            return dg.SkipReason(enqueue_tick(registry, policy, database))

        return enqueue_schedule

    @dg.sensor(
        name=name,
        job_name=QUEUE_JOB,
        minimum_interval_seconds=max(1, int(policy.every_seconds)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def enqueue_sensor(context: dg.SensorEvaluationContext, database: TradingDatabase):  # noqa: ANN202
        return dg.SkipReason(enqueue_tick(registry, policy, database))

    return enqueue_sensor
