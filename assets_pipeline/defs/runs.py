"""What every cadence and run needs to know of Dagster's runs, and how a cadence becomes a
definition. Shared by the schedules, the sensors, the jobs and the assets, so none imports another.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dagster as dg

from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import TierPolicy, cron_for
from assets_pipeline.rules.queue_rules import (
    IN_FLIGHT,
    QUEUED,
    QueueItem,
    after_failure,
    claimed_batches,
)
from assets_pipeline.rules.run_kinds import BATCH_TAG, RunInFlight

QUEUE_JOB = "refresh_queue"
#: The small op job that puts symbols on the queue (and first settles ended runs' claims).
ENQUEUE_JOB = "enqueue_refreshes"
ENQUEUE_OP = "enqueue_symbols"
#: What an enqueue run is for (a tier, `overdue`, `market open`): one in flight per purpose.
ENQUEUE_TAG = "assets_pipeline/enqueue"
#: On a queue run: it claims its selected symbols (at most this many) when it starts.
CLAIM_TAG = "assets_pipeline/claim"
#: A claimed batch with no run after this long goes back (claims made before runs claimed).
ORPHAN_CLAIM_SECONDS = 120.0
#: A run that ended without settling its batch: a crash counts an attempt, the others do not.
GIVE_BACK = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED}
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def tier_job_name(policy: TierPolicy) -> str:
    return f"refresh_{policy.tier.value}"


def in_flight(instance: dg.DagsterInstance, job_name: str) -> list[RunInFlight]:
    """The job's runs still queued or running, each with how long it has been in flight, for
    `may_start` (rules/run_kinds.py) to weigh: it decides which are taken for dead."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=20
    )
    now = clock.utcnow().timestamp()
    return [
        RunInFlight(
            record.dagster_run.run_id,
            record.dagster_run.status.value,
            record.dagster_run.tags,
            now - (record.start_time or record.create_timestamp.timestamp()),
        )
        for record in records
    ]


def enqueue_run_config(symbols: Iterable[str], reason: str, note: str = "") -> dict[str, object]:
    """The run config of an `ENQUEUE_JOB` run: the symbols to put on the queue, why, and what
    the tick saw of the others (`note`, e.g. markets closed)."""
    config = {"symbols": list(symbols), "reason": reason, "note": note}
    return {"ops": {ENQUEUE_OP: {"config": config}}}


@dataclass(frozen=True)
class Reconciled:
    """What settling the claims of batches no run works on does (or, for a tick, would do)."""

    released: int = 0  # back in their place, no attempt counted
    failed: int = 0  # their run crashed: one failed attempt each

    def note(self) -> str:
        parts = []
        if self.released:
            parts.append(f"{self.released} item(s) of a finished batch go back")
        if self.failed:
            parts.append(f"{self.failed} item(s) of a crashed run count a failed attempt")
        return f" (to settle first: {'; '.join(parts)})" if parts else ""


def settlements(
    instance: dg.DagsterInstance, items: Iterable[QueueItem], now: dt.datetime
) -> dict[str, str | None]:
    """Batch id -> the error to count (its run FAILED: it died after claiming), or None (give
    the items back: the run was canceled or succeeded, or never appeared within
    `ORPHAN_CLAIM_SECONDS`), for the claimed batches no run works on. Reads only."""
    out: dict[str, str | None] = {}
    for batch_id, claimed_at in claimed_batches(items).items():
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
            out[batch_id] = f"run {runs[0].run_id[:8]} died before settling it"
        elif (runs and runs[0].status in GIVE_BACK) or (
            not runs and (now - claimed_at).total_seconds() > ORPHAN_CLAIM_SECONDS
        ):
            out[batch_id] = None
    return out


def settled_view(
    items: list[QueueItem], settle: dict[str, str | None], max_retries: int, now: dt.datetime
) -> tuple[list[QueueItem], Reconciled]:
    """The queue as it will be once `settle` is applied, computed without writing (a tick's
    view of what the next run will find)."""
    view, released, failed = [], 0, 0
    for item in items:
        if item.status == IN_FLIGHT and item.batch_id in settle:
            error = settle[item.batch_id]
            if error is None:
                released += 1
                item = dataclasses.replace(item, status=QUEUED, batch_id=None, claimed_at=None)
            else:
                failed += 1
                item = after_failure(item, error, True, max_retries, now)
        view.append(item)
    return view, Reconciled(released, failed)


def reconcile_claims(
    instance: dg.DagsterInstance, queue: RefreshQueue, now: dt.datetime
) -> Reconciled:
    """Settle items claimed by batches whose run ended without settling them (`settlements`),
    so the queue never loses an item and never retries a crashing one forever. Runs do this
    (the queue and enqueue runs, as they start); ticks only read `settled_view`."""
    released = failed = 0
    for batch_id, error in settlements(instance, queue.items(), now).items():
        if error is None:
            released += queue.release(batch_id)
        else:
            failed += len(queue.fail_batch(batch_id, error, now))
    return Reconciled(released, failed)


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
