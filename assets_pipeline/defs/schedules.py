"""The tier cadences: direct tiers refreshed on their own clock, queued tiers put on the queue.

Ticks decide, runs act: a tick reads and writes nothing. A direct tier's tick asks for one run of
its job (or skips, saying why); a queued tier's asks for an `enqueue_refreshes` run with its due
symbols. A cadence is a cron schedule when cron keeps it exactly, else a sensor
(docs/design/refresh-cadence.md)."""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.defs.runs import (
    ENQUEUE_JOB,
    ENQUEUE_TAG,
    cadence_definition,
    enqueue_run_config,
    in_flight,
    settled_view,
    settlements,
    tier_job_name,
)
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import Refresh, TierPolicy, format_duration
from assets_pipeline.rules.queue_rules import overdue, plan_enqueue
from assets_pipeline.rules.quotes import iso_utc
from assets_pipeline.rules.run_kinds import CRITICAL, UPKEEP, may_start, run_tags
from assets_pipeline.rules.taxonomy import Tier

#: A direct tier whose last run started longer ago than its cadence plus this is refreshed at
#: once: at start-up, and after the daemon was down or a tick was missed.
CATCH_UP_GRACE_SECONDS = 30.0


def due_symbols(
    registry: Registry,
    specs: Iterable[SymbolSpec],
    database: TradingDatabase,
    at: dt.datetime | None = None,
) -> tuple[list[SymbolSpec], str]:
    """The symbols a cadence may spend calls on now: their market trades, and a call can bring
    something new (on end-of-day bars, only once a newer bar is published). With them, why the
    others wait, for the tick's reason."""
    at = at or clock.utcnow()
    specs = list(specs)
    trading = registry.trading(specs, at)
    stored = database.quote_store().latest_quotes(s.symbol for s in trading) if trading else {}
    due = [s for s in trading if registry.due(s, stored.get(s.symbol), at)]
    waiting = [s for s in trading if s not in due]
    notes = []
    if len(trading) < len(specs):
        notes.append(f"market closed: {', '.join(s.symbol for s in specs if s not in trading)}")
    if waiting:
        newest = registry.newest_bar(waiting[0], at)
        notes.append(
            f"end-of-day plan, the newest close already stored: "
            f"{', '.join(s.symbol for s in waiting)} (next bar after"
            f" {iso_utc(newest.next_due)[:16]}Z)"
        )
    return due, "; ".join(notes)


def direct_tick(
    instance: dg.DagsterInstance,
    registry: Registry,
    policy: TierPolicy,
    database: TradingDatabase,
) -> dg.RunRequest | dg.SkipReason:
    """One refresh of a direct tier's symbols that are due, unless one is still queued or
    running."""
    job = tier_job_name(policy)
    start = may_start(CRITICAL, in_flight(instance, job))
    if not start.allowed:
        return dg.SkipReason(f"a {job} run is {start.why}: not starting another")
    due, why = due_symbols(registry, registry.in_tier(policy.tier), database)
    symbols = [s.symbol for s in due]
    if not symbols:
        return dg.SkipReason(f"no {policy.tier.value} symbol is due: {why}")
    return dg.RunRequest(
        asset_selection=[quote_asset_key(s) for s in symbols],
        tags=run_tags(CRITICAL, tier=policy.tier.value),
    )


def catch_up_tick(
    instance: dg.DagsterInstance,
    registry: Registry,
    policy: TierPolicy,
    now: float,
    database: TradingDatabase,
) -> dg.RunRequest | dg.SkipReason:
    """Refresh a direct tier now if no run of it started within its cadence (start-up)."""
    job = tier_job_name(policy)
    last = instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=1)
    if last:
        record = instance.get_run_record_by_id(last[0].run_id)
        started = (record.start_time or record.create_timestamp.timestamp()) if record else now
        if now - started < policy.every_seconds + CATCH_UP_GRACE_SECONDS:
            return dg.SkipReason(f"{job} ran {now - started:.0f}s ago: on schedule")
    return direct_tick(instance, registry, policy, database)


def enqueue_request(
    instance: dg.DagsterInstance,
    registry: Registry,
    database: TradingDatabase,
    arrivals: list[tuple[str, Tier]],
    purpose: str,
    settle: bool = False,
    note: str = "",
) -> dg.RunRequest | str:
    """An `enqueue_refreshes` run for `arrivals` (and, with `settle`, for claims to settle), or
    why none is needed: the queue, read without a write, already holds them as they would be
    put; or a run for the same purpose is still queued or running."""
    items = RefreshQueue(database.engine(), registry.queue).items()
    plan = plan_enqueue(items, arrivals, clock.utcnow(), registry.queue.max_size)
    if not (plan.insert or plan.update or settle):
        if not arrivals:
            return "nothing to enqueue"
        return f"{len(arrivals)} {purpose} symbol(s) due, all already waiting"
    runs = [run for run in in_flight(instance, ENQUEUE_JOB) if run.tags.get(ENQUEUE_TAG) == purpose]
    start = may_start(UPKEEP, runs)
    if not start.allowed:
        return f"an enqueue run for {purpose} is {start.why}"
    symbols = [symbol for symbol, _ in arrivals]
    return dg.RunRequest(
        job_name=ENQUEUE_JOB,
        run_config=enqueue_run_config(symbols, purpose, note),
        tags=run_tags(UPKEEP, **{ENQUEUE_TAG: purpose}),
    )


def enqueue_tick(
    instance: dg.DagsterInstance, registry: Registry, policy: TierPolicy, database: TradingDatabase
) -> dg.RunRequest | dg.SkipReason:
    """An `enqueue_refreshes` run with a queued tier's due symbols, or why none is needed."""
    due, why = due_symbols(registry, registry.in_tier(policy.tier), database)
    if not due:
        return dg.SkipReason(f"no {policy.tier.value} symbol is due: {why}")
    arrivals = [(s.symbol, s.tier) for s in due]
    request = enqueue_request(instance, registry, database, arrivals, policy.tier.value, note=why)
    if isinstance(request, dg.RunRequest):
        return request
    return dg.SkipReason(request + (f"; {why}" if why else ""))


def build_cadences(
    registry: Registry,
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    schedules: list[dg.ScheduleDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for policy in registry.tiers.values():
        if not registry.in_tier(policy.tier):
            continue
        if policy.refresh is Refresh.DIRECT:
            schedules_or_sensors = _direct(registry, policy)
            if policy.cron:  # a sensor cadence already fires at start-up
                sensors.append(_catch_up(registry, policy))
        else:
            schedules_or_sensors = _enqueue(registry, policy)
        if isinstance(schedules_or_sensors, dg.ScheduleDefinition):
            schedules.append(schedules_or_sensors)
        else:
            sensors.append(schedules_or_sensors)
    return schedules, sensors


def _direct(registry: Registry, policy: TierPolicy) -> dg.ScheduleDefinition | dg.SensorDefinition:
    every = format_duration(policy.every_seconds)
    return cadence_definition(
        f"refresh_{policy.tier.value}_every_{every}",
        policy.every_seconds,
        tier_job_name(policy),
        f"Refresh the {policy.tier.value} tier every {every} (its open markets); skips while a"
        " refresh of the tier is still queued or running.",
        lambda context, database: direct_tick(context.instance, registry, policy, database),
    )


def _catch_up(registry: Registry, policy: TierPolicy) -> dg.SensorDefinition:
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
    def catch_up(context: dg.SensorEvaluationContext, database: TradingDatabase):  # noqa: ANN202
        now = clock.utcnow().timestamp()
        return catch_up_tick(context.instance, registry, policy, now, database)

    return catch_up


def _enqueue(registry: Registry, policy: TierPolicy) -> dg.ScheduleDefinition | dg.SensorDefinition:
    every = format_duration(policy.every_seconds)
    return cadence_definition(
        f"enqueue_{policy.tier.value}_every_{every}",
        policy.every_seconds,
        ENQUEUE_JOB,
        f"Put the {policy.tier.value} tier's due symbols on the refresh queue every {every}"
        " (an enqueue_refreshes run); the queue drain sensor refreshes them as the budget"
        " allows.",
        lambda context, database: enqueue_tick(context.instance, registry, policy, database),
    )


def queue_catch_up_tick(
    instance: dg.DagsterInstance, registry: Registry, database: TradingDatabase
) -> dg.RunRequest | dg.SkipReason:
    """An enqueue run for the queued-tier symbols whose market is open and that are overdue
    (start-up), or for the claims of ended queue runs still to settle (the run settles them)."""
    now = clock.utcnow()
    items = RefreshQueue(database.engine(), registry.queue).items()
    due, _ = due_symbols(registry, registry.queued(), database, now)
    candidates = [(s.symbol, s.tier, registry.tiers[s.tier].every_seconds) for s in due]
    owed = overdue(
        candidates, database.quote_store().last_syncs(), {item.symbol for item in items}, now
    )
    settle = settlements(instance, items, now)
    note = settled_view(items, settle, registry.queue.max_retries, now)[1].note()
    if not owed and not settle:
        return dg.SkipReason("no queued-tier symbol is overdue")
    request = enqueue_request(instance, registry, database, owed, "overdue", bool(settle))
    return request if isinstance(request, dg.RunRequest) else dg.SkipReason(request + note)


def build_queue_catch_up_sensor(registry: Registry) -> dg.SensorDefinition:
    @dg.sensor(
        name="enqueue_overdue_at_start_up",
        job_name=ENQUEUE_JOB,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Put queued-tier symbols on the queue when they are overdue (not refreshed within"
            " their cadence, not on the queue): at start-up and after the daemon was down,"
            " instead of waiting for the next enqueue tick. Its enqueue_refreshes run also"
            " settles the claims of queue runs that ended without settling them."
        ),
    )
    def enqueue_overdue_at_start_up(
        context: dg.SensorEvaluationContext, database: TradingDatabase
    ) -> dg.RunRequest | dg.SkipReason:
        return queue_catch_up_tick(context.instance, registry, database)

    return enqueue_overdue_at_start_up


def market_open_tick(
    context: dg.SensorEvaluationContext, registry: Registry, database: TradingDatabase
) -> list[dg.RunRequest] | dg.SkipReason:
    """When a market opens, refresh its direct-tier symbols at once and queue the others, so
    the first refresh after the open does not wait for the next cadence tick."""
    now = clock.utcnow()
    last = dt.datetime.fromtimestamp(float(context.cursor), dt.UTC) if context.cursor else None
    if last is None:
        context.update_cursor(str(now.timestamp()))
        return dg.SkipReason("first evaluation: watching for market opens from now on")
    opened = [s for s in registry if registry.market_hours.opened_between(s.asset_type, last, now)]
    opened = due_symbols(registry, opened, database, now)[0] if opened else []
    now_direct = [s for s in opened if s in set(registry.direct())]
    runs = [run for job in _direct_jobs(registry) for run in in_flight(context.instance, job)]
    start = may_start(CRITICAL, runs)
    if now_direct and not start.allowed:
        # Not now, and the cursor stays: the next evaluation sees the same open again.
        return dg.SkipReason(
            f"market opened for {', '.join(s.symbol for s in now_direct)}, but a critical"
            f" refresh is {start.why}; trying again at the next evaluation"
        )
    context.update_cursor(str(now.timestamp()))
    if not opened:
        return dg.SkipReason("no market opened")
    requests, why = [], ""
    queued = [(s.symbol, s.tier) for s in opened if s not in now_direct]
    if queued:
        enqueue = enqueue_request(context.instance, registry, database, queued, "market open")
        if isinstance(enqueue, dg.RunRequest):
            requests.append(enqueue)
        else:
            why = f": {enqueue}"
    if now_direct:
        requests.append(
            dg.RunRequest(
                job_name=_direct_jobs(registry)[0],
                asset_selection=[quote_asset_key(s.symbol) for s in now_direct],
                tags=run_tags(CRITICAL, tier="critical"),
            )
        )
    return requests or dg.SkipReason(f"market opened for {', '.join(s for s, _ in queued)}{why}")


def _direct_jobs(registry: Registry) -> list[str]:
    """The jobs of direct tiers that have symbols (a tier without symbols has no job)."""
    return [
        tier_job_name(p)
        for p in registry.tiers.values()
        if p.refresh is Refresh.DIRECT and registry.in_tier(p.tier)
    ]


def build_market_open_sensor(
    registry: Registry, jobs: "list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]"
) -> dg.SensorDefinition:
    """`jobs`: the direct tiers' jobs and the enqueue job, which its runs target."""
    targets = {*_direct_jobs(registry), ENQUEUE_JOB}

    @dg.sensor(
        name="refresh_at_market_open",
        jobs=[job for job in jobs if job.name in targets],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "When a market opens (forex on Sunday 17:00 New York, an index at its exchange's"
            " open), refresh its critical symbols at once and queue the others (an"
            " enqueue_refreshes run)."
        ),
    )
    def refresh_at_market_open(
        context: dg.SensorEvaluationContext, database: TradingDatabase
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return market_open_tick(context, registry, database)

    return refresh_at_market_open


def cadence_definitions(
    registry: Registry, jobs: "list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]"
) -> dg.Definitions:
    """This area's definitions: each tier's cadence and catch-up, the market-open sensor (over
    `jobs`, the refresh area's) and the queue's catch-up."""
    schedules, sensors = build_cadences(registry)
    sensors.append(build_market_open_sensor(registry, jobs))
    sensors.append(build_queue_catch_up_sensor(registry))
    return dg.Definitions(schedules=schedules, sensors=sensors)
