"""`assets-pipeline`: the operator's commands (refresh, backfill, run-batch, status, budget,
doctor, relay, queue, prune, migrate, simulator), each failing in one paragraph with its exit code.

`refresh` runs the same Dagster job the UI launches, in this process, so the embedded defaults
(SQLite, the in-process simulator) need nothing else running. Settings are read from the
environment as the code location reads them (`Settings.from_env()`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fcntl
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from assets_pipeline import failures as failures_module
from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import (
    AssetType,
    Registry,
    RegistryError,
    SymbolSpec,
    Tier,
    load_registry,
)
from assets_pipeline.config.settings import Settings, SettingsError
from assets_pipeline.persistence import migrate as migrations
from assets_pipeline.persistence.batches import batch_totals, recent_batches
from assets_pipeline.persistence.database import (
    DatabaseTimeouts,
    DatabaseUnavailable,
    create_engine,
    migrate_database,
    normalize_url,
)
from assets_pipeline.persistence.grants import grants_sql
from assets_pipeline.persistence.outbox import relay_pending
from assets_pipeline.persistence.refresh_queue import QueueOperationError, RefreshQueue
from assets_pipeline.persistence.retention import prune as prune_tables
from assets_pipeline.persistence.schema import SchemaError
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import Refresh, format_duration, next_tick, period_of_cron
from assets_pipeline.rules.feasibility import feasibility
from assets_pipeline.rules.plans import LearntPlan
from assets_pipeline.rules.queue_rules import QUEUED, QueueItem, drain_order
from assets_pipeline.rules.quotes import Timeframe, iso_utc, parse_iso_utc
from assets_pipeline.rules.retention import RetentionError, format_age, parse_age
from assets_pipeline.rules.run_kinds import BACKFILL, CRITICAL, run_tags

if TYPE_CHECKING:
    import dagster as dg

#: How long a command waits for another one to finish opening Dagster's instance.
INSTANCE_LOCK_SECONDS = 120.0
#: Beside Dagster's own files in `DAGSTER_HOME`: held while an instance is opened.
INSTANCE_LOCK_FILE = ".assets_pipeline_instance.lock"

#: No API CALLS column: one call may serve every symbol of a batch (a multi-ticker snapshot), so
#: a per-symbol count would be a fraction or the batch's total repeated; the summary has it.
TABLE_HEADER = ("SYMBOL", "BID", "ASK", "LAST", "DATA TIME (UTC)", "PROVIDER", "RESULT")


def _resources(settings: Settings) -> dict[str, Any]:
    """The code location's resources with the settings' values (the CLI is not the UI)."""
    from assets_pipeline.location import build_resources

    return build_resources(settings, secrets_as_env_vars=False)


class InstanceLockTimeout(RuntimeError):
    """Another command held the instance lock too long; the message names the lock file."""


def dagster_instance(settings: Settings) -> Any:
    """Dagster's instance at `DAGSTER_HOME`, opened under an exclusive lock on a file there:
    opening it the first time creates its SQLite databases, and commands doing that at once
    on a fresh `DAGSTER_HOME` fail on each other's half-made schema. Waits at most
    `INSTANCE_LOCK_SECONDS`, then `InstanceLockTimeout` names the file."""
    import dagster as dg

    home = Path(settings.dagster_home).expanduser()
    if not home.is_dir():
        return dg.DagsterInstance.get()  # Dagster's own error says what is wrong with it
    lock = home / INSTANCE_LOCK_FILE
    with lock.open("a") as handle:
        deadline = time.monotonic() + INSTANCE_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InstanceLockTimeout(
                        f"another command has been opening Dagster's instance at {home} for"
                        f" over {INSTANCE_LOCK_SECONDS:g} s (it holds {lock}); try again once"
                        " it is done"
                    ) from None
                time.sleep(0.05)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- refresh ---------------------------------------------------------------------------------


def refresh(
    registry: Registry,
    settings: Settings,
    tier: str | None,
    verbose: bool = False,
    tags: dict[str, str] | None = None,
    defs: dg.Definitions | None = None,
) -> int:
    """Materialize every symbol's quote (or one tier's) and print a table. Without
    `tags` the run is a manual one (see `rules/run_kinds.py`); `defs`: the definitions already
    built from `registry` and `settings`."""
    from assets_pipeline.location import build_definitions

    defs = defs or build_definitions(registry, settings)
    job = defs.resolve_job_def(f"refresh_{tier}" if tier else "refresh_quotes")
    # the console log only with --verbose: without it a failure ends in one paragraph (below)
    level = "DEBUG" if verbose else "CRITICAL"
    result = job.execute_in_process(
        instance=dagster_instance(settings) if settings.dagster_home else None,
        raise_on_error=False,
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
    )
    materialized = {
        m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
        for m in (
            e.step_materialization_data.materialization
            for e in result.all_events
            if e.is_step_materialization
        )
    }
    failures = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    specs = [s for s in registry if not tier or s.tier.value == tier]
    _print_table([TABLE_HEADER, *(_row(spec, materialized.get(spec.symbol)) for spec in specs)])
    calls = _api_calls(materialized.values(), failures)
    print(f"\n{len(materialized)} of {len(specs)} symbol(s) refreshed, {calls} API call(s).")
    if not settings.polygon_base_url:
        print("The prices are simulated (the embedded simulator: POLYGON_BASE_URL is unset).")
    if not result.success:
        _report_run_failure(
            failures, settings, verbose, f"refresh{f' --tier {tier}' if tier else ''}"
        )
    return 0 if result.success else 1


def _api_calls(materialized: Any, failures: list[Any]) -> int:
    """The calls the run made: each batch's total once (every symbol's output repeats it), and
    a failed batch's from its failure (a 401 costs the call it made)."""
    per_batch = {str(m.get("batch_id")): int(m.get("api_calls", 0)) for m in materialized}
    for failure in failures:
        meta = getattr(failure.user_failure_data, "metadata", None) or {}
        batch = getattr(meta.get("batch"), "data", None)
        if hasattr(batch, "get"):
            per_batch[str(batch.get("batch_id"))] = int(batch.get("api_calls") or 0)
    return sum(per_batch.values())


def _report_run_failure(failures: list[Any], settings: Settings, verbose: bool, what: str) -> None:
    """One paragraph for the run's failure (its first failed step); its trace with --verbose."""
    errors = [f.error for f in failures if f is not None and f.error is not None]
    links = failures_module.info_chain(errors[0]) if errors else []
    if verbose:
        for error in errors:
            print(failures_module.redact(error.to_string(), settings), file=sys.stderr)
    diagnosis = failures_module.diagnose(links, settings)
    print(failures_module.paragraph(what, diagnosis, links, settings), file=sys.stderr)


def _row(spec: SymbolSpec, meta: dict[str, Any] | None) -> tuple[str, ...]:
    if meta is None:
        return (spec.symbol, "-", "-", "-", "-", "-", "failed")
    precision = spec.price_precision

    def price(key: str) -> str:
        value = meta.get(key)
        return "-" if value is None else f"{float(value):.{precision}f}"

    data_time = parse_iso_utc(str(meta["data_time"])).strftime("%Y-%m-%d %H:%M:%S")
    result = "stored" if meta.get("written", True) else _kept(str(meta.get("write_result", "")))
    provider = str(meta.get("provider") or "-")
    if meta.get("timeframe") == Timeframe.END_OF_DAY.value:
        provider += " (end of day)"
    row = (spec.symbol, price("bid"), price("ask"), price("last_price"), data_time)
    return (*row, provider, result)


def _kept(reason: str) -> str:
    """Why a fetched quote was not stored, in a word for the table."""
    return "unchanged" if reason.startswith("unchanged") else "older, kept"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


# --- history ---------------------------------------------------------------------------------


def backfill(
    registry: Registry,
    settings: Settings,
    days: tuple[dt.date, dt.date],
    specs: list[SymbolSpec],
    verbose: bool = False,
) -> int:
    """Backfill `history/<SYMBOL>` of `specs` over the UTC days `days` (first, last; see
    `past_days`) in one run, as the UI's backfill does; print each symbol's days and bars."""
    from assets_pipeline.defs.history import history_asset_key
    from assets_pipeline.location import build_definitions

    first, last = days
    job = build_definitions(registry, settings).resolve_implicit_global_asset_job_def()
    level = "DEBUG" if verbose else "CRITICAL"
    result = job.execute_in_process(
        instance=dagster_instance(settings) if settings.dagster_home else None,
        raise_on_error=False,
        asset_selection=[history_asset_key(spec.symbol) for spec in specs],
        tags=run_tags(
            BACKFILL,
            **{
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        ),
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
    )
    bars: dict[str, list[int]] = {}
    for event in result.get_asset_materialization_events():
        recorded = event.step_materialization_data.materialization
        bars.setdefault(recorded.asset_key.path[-1], []).append(
            int(recorded.metadata["bars"].value)
        )
    rows = [("SYMBOL", "DAYS", "BARS")]
    rows += [
        (s.symbol, str(len(bars[s.symbol])), str(sum(bars[s.symbol])))
        if s.symbol in bars
        else (s.symbol, "-", "missing")
        for s in specs
    ]
    _print_table(rows)
    print(f"\n{first} to {last}: {len(bars)} of {len(specs)} symbol(s) stored.")
    if not result.success:
        failures = [e.step_failure_data for e in result.all_events if e.is_step_failure]
        _report_run_failure(failures, settings, verbose, "backfill")
    return 0 if result.success and len(bars) == len(specs) else 1


def past_days(registry: Registry, first: str, last: str) -> tuple[dt.date, dt.date]:
    """The backfill's first and last day: dates, in order, from the symbols file's `start_date`
    to yesterday (UTC; today's bars are not complete)."""
    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError as exc:
        raise ValueError(f"--from and --to take dates as YYYY-MM-DD: {exc}") from None
    earliest, yesterday = dt.date.fromisoformat(registry.start_date), clock.today()
    yesterday -= dt.timedelta(days=1)
    if not earliest <= start <= end <= yesterday:
        raise ValueError(
            f"backfill days run from {earliest} (the symbols file's start_date) to {yesterday}"
            f" (yesterday, UTC), first before last; not {first} to {last}"
        )
    return start, end


def run_batch(registry: Registry, settings: Settings, verbose: bool) -> int:
    """Refresh the direct tiers now, as their schedule would: critical runs, inside the budget."""
    from assets_pipeline.location import build_definitions

    tiers = [p.tier.value for p in registry.tiers.values() if p.refresh is Refresh.DIRECT]
    defs = build_definitions(registry, settings)  # once, for every tier's run
    codes = [
        refresh(registry, settings, tier, verbose, run_tags(CRITICAL, tier=tier), defs)
        for tier in tiers
        if registry.in_tier(Tier(tier))
    ]
    return max(codes, default=0)


# --- relay and budget ------------------------------------------------------------------------


def relay(settings: Settings) -> int:
    resources = _resources(settings)
    result = relay_pending(resources["database"].engine(), resources["redis"].client())
    print(result.summary())
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def budget(settings: Settings, as_json: bool) -> int:
    doc = _resources(settings)["polygon"].budget.budget().stats().as_dict()
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        for key, value in doc.items():
            print(f"{key:15} {value}")
    return 0


# --- migrate ---------------------------------------------------------------------------------


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Bring the trading database to this version's tables (as their owner), or print the SQL,
    check the revision, or print the writer's GRANTs, without touching the database."""
    if args.grants:
        print(grants_sql(args.grants), end="")
        return 0
    if args.sql:
        migrations.upgrade_sql(sys.stdout)
        return 0
    if args.check:
        return migrate_check(settings.database_url, database_timeouts(settings))
    before, after = migrate_database(settings.database_url, database_timeouts(settings))
    where = migrations.where(make_url(normalize_url(settings.database_url)))
    if before == after:
        print(f"{where} is at revision {after} (the newest): nothing to do")
    else:
        print(f"{where} migrated from revision {before or 'none'} to {after}")
    return 0


def database_timeouts(settings: Settings) -> DatabaseTimeouts:
    """The trading database's timeouts, as the settings say."""
    return DatabaseTimeouts(
        settings.database_connect_timeout_seconds, settings.database_statement_timeout_seconds
    )


def migrate_check(url: str, timeouts: DatabaseTimeouts | None = None) -> int:
    """0 when the database is at the newest revision, else 1 with what to run (nothing run)."""
    engine = create_engine(url, timeouts, check_schema=False)
    try:
        with engine.connect() as conn:
            found = migrations.current(conn)
    finally:
        engine.dispose()
    problem = migrations.behind(found, engine.url)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"{migrations.where(engine.url)} is at revision {found} (the newest)")
    return 0


# --- status ----------------------------------------------------------------------------------


#: What a read-only command treats as a part it cannot reach (it shows the rest).
UNREACHABLE = (DatabaseUnavailable, SchemaError, BudgetError, redis.RedisError, OperationalError)


def status_document(registry: Registry, settings: Settings | None = None) -> dict[str, Any]:
    """Everything `status` shows, as plain data (also what `--json` prints). A part whose
    database or Redis cannot be reached is None, and `unreachable` says which and why."""
    settings = settings or Settings.from_env()
    resources = _resources(settings)
    now = clock.utcnow()
    missing: dict[tuple[str, str], list[str]] = {}  # (cause, fix): the parts not shown

    def reach(what: str, read: Any) -> Any:
        try:
            return read()
        except UNREACHABLE as exc:
            links = failures_module.exception_chain(exc)
            found = failures_module.diagnose(links, settings) or dataclasses.replace(
                failures_module.unknown(links, settings), fix=""
            )
            missing.setdefault((found.cause.split("\n")[0], found.fix), []).append(what)
            return None

    database = reach(
        "the last batch, queue and totals",
        lambda: _database_part(resources["database"].engine(), registry, now),
    )
    learnt = reach("the plan", resources["polygon"].learnt)
    budget = reach("the budget", lambda: resources["polygon"].budget.budget().stats().as_dict())
    providers = reach("the providers", lambda: _providers_part(registry, resources, now))
    unreachable = [
        {"cause": cause, "not_shown": parts, "fix": fix} for (cause, fix), parts in missing.items()
    ]
    return {
        "now": iso_utc(now),
        **(database or dict.fromkeys(("last_batch", "last_critical_batch", "queue", "totals"))),
        "next_scheduled_runs": _next_runs(registry, settings),
        "priority_symbols": [s.symbol for s in registry.direct()],
        "plan": _plan_document(registry, learnt, now) if learnt else None,
        "budget_need": _budget_need(registry, settings, learnt) if learnt else None,
        "budget": budget,
        "providers": providers,
        "running_backfills": _running_backfills(settings),
        "unreachable": unreachable,
    }


def _providers_part(registry: Registry, resources: dict[str, Any], now: Any) -> list[Any]:
    """Each provider's plan, timeframe, budget left, health and the symbols it serves now."""
    from assets_pipeline.defs.sources import provider_report
    from assets_pipeline.persistence.provider_state import serving

    engine = resources["database"].engine()
    served = {s: held.provider for s, held in serving(engine, [x.symbol for x in registry]).items()}
    return provider_report(registry, resources["polygon"], resources["providers"], served, now)


def _database_part(engine: Any, registry: Registry, now: Any) -> dict[str, Any]:
    last = recent_batches(engine, 1)
    last_critical = recent_batches(engine, 1, kind=CRITICAL)
    return {
        "last_batch": last[0].as_dict() if last else None,
        "last_critical_batch": last_critical[0].as_dict() if last_critical else None,
        "queue": _queue_document(RefreshQueue(engine, registry.queue), now),
        "totals": batch_totals(engine),
    }


def _running_backfills(settings: Settings) -> list[dict[str, Any]]:
    """History backfills in flight (`history/<SYMBOL>`), from Dagster's own storage
    (`DAGSTER_HOME`): their partitions."""
    if not settings.dagster_home:
        return []
    import dagster as dg

    from assets_pipeline.defs.runs import IN_FLIGHT_STATUSES

    with dagster_instance(settings) as instance:
        in_flight = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT_STATUSES))
        runs = [run for run in in_flight if "dagster/backfill" in run.tags]
        return [
            {
                "run_id": run.run_id,
                "backfill": run.tags["dagster/backfill"],
                "status": run.status.value,
                "partitions": _partition_range(run.tags),
            }
            for run in runs
        ]


def _partition_range(tags: dict[str, str]) -> str:
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    return f"{start} to {end}" if start else tags.get("dagster/partition", "")


def _plan_document(registry: Registry, learnt: LearntPlan, now: Any) -> dict[str, Any]:
    """The plan as learnt for each market, what a critical refresh costs on it, and each tier's
    effective cadence: on day bars, a call only once a newer bar is published."""
    cadences = {}
    for policy in registry.tiers.values():
        specs = registry.in_tier(policy.tier)
        if not specs:
            continue
        every = f"every {format_duration(policy.every_seconds)}"
        on_bars = [s for s in specs if s.asset_type in learnt.bars]
        if not on_bars:
            cadences[policy.tier.value] = f"{every} (snapshots)"
            continue
        next_due = min(registry.newest_bar(s, now).next_due for s in on_bars)
        cadences[policy.tier.value] = (
            f"{every} for snapshot markets; day-bar markets only once a session's bar is"
            f" published (next after {iso_utc(next_due)[:16]}Z)"
            if len(on_bars) < len(specs)
            else f"one call per market once a session's bar is published (next after"
            f" {iso_utc(next_due)[:16]}Z), nothing in between"
        )
    return {
        "plan": learnt.plan,
        "mode": learnt.mode,
        "day_bar_markets": sorted(k.value for k in learnt.bars),
        "described": learnt.describe(),
        "critical_refresh_calls": registry.critical_reserve(learnt.mode, learnt.bars),
        "cadence": cadences,
    }


def _budget_need(registry: Registry, settings: Settings, learnt: LearntPlan) -> dict[str, Any]:
    """What the tiers need of the budget on the plan as learnt (day-bar markets once a day)."""
    kinds: dict[Tier, dict[str, AssetType]] = {}
    for spec in registry:
        kinds.setdefault(spec.tier, {})[spec.polygon_ticker] = spec.asset_type
    shape = dataclasses.replace(settings.budget_shape, mode=learnt.mode)
    found = feasibility(registry.tiers, kinds, shape, learnt.bars)
    return {**found.as_dict(), "arithmetic": found.explain()}


def _next_runs(registry: Registry, settings: Settings) -> list[dict[str, Any]]:
    import dagster as dg

    from assets_pipeline.location import build_definitions

    now = clock.utcnow()
    runs: list[dict[str, Any]] = []
    for schedule in build_definitions(registry, settings).get_repository_def().schedule_defs:
        if schedule.default_status != dg.DefaultScheduleStatus.RUNNING:
            continue  # switched off until an operator switches it on (pruning): no next run
        cron = str(schedule.cron_schedule)
        every = period_of_cron(cron)
        tick = iso_utc(next_tick(every, now)) if every else None
        runs.append({"schedule": schedule.name, "cron": cron, "next": tick})
    for policy in registry.tiers.values():
        if registry.in_tier(policy.tier) and not policy.cron:
            every = format_duration(policy.every_seconds)
            runs.append({"sensor": f"every {every}", "tier": policy.tier.value})
    return runs


def _queue_document(queue: RefreshQueue, now: Any) -> dict[str, Any]:
    stats = queue.stats()
    oldest = stats.oldest_enqueued_at
    return {
        "waiting_by_tier": stats.waiting_by_tier,
        "waiting": stats.waiting,
        "in_flight": stats.in_flight,
        "failed": stats.failed,
        "oldest_item_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
    }


def status(registry: Registry, settings: Settings, as_json: bool) -> int:
    """The status; exit 1 when a part was unreachable (the lines say which, last)."""
    doc = status_document(registry, settings)
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"status at {doc['now']}\n")
        for line in _status_lines(doc):
            print(line)
    for problem in doc["unreachable"]:
        parts = problem["not_shown"]
        shown = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        verb = "are" if len(parts) > 1 else "is"
        print(f"error: {problem['cause']}: {shown} {verb} not shown", file=sys.stderr)
        if problem["fix"]:
            print(f"  fix: {problem['fix']}", file=sys.stderr)
    return 1 if doc["unreachable"] else 0


def _status_lines(doc: dict[str, Any]) -> list[str]:
    lines = _batch_lines(doc) + _plan_lines(doc)
    for entry in doc["next_scheduled_runs"]:
        if "schedule" in entry:
            lines.append(f"next run       {entry['next']}  {entry['schedule']} ({entry['cron']})")
        else:
            lines.append(f"sensor         {entry['tier']} {entry['sensor']}")
    for run in doc.get("running_backfills", []):
        lines.append(
            f"backfill       {run['backfill']} {run['status'].lower()}: {run['partitions']}"
            f" (run {run['run_id'][:8]})"
        )
    if doc["queue"] is not None:
        lines += [_queue_line(doc["queue"]), _totals_line(doc["totals"])]
    lines += provider_lines(doc.get("providers") or [])
    return [*lines, _budget_line(doc)] if doc["budget"] is not None else lines


def _batch_lines(doc: dict[str, Any]) -> list[str]:
    if doc["totals"] is None:  # the database was unreachable
        return [f"priority       {', '.join(doc['priority_symbols'])}"]
    last, critical = doc["last_batch"], doc["last_critical_batch"]
    lines = ["last batch     none yet"]
    if last:
        failed = ", ".join(f"{s} ({e})" for s, e in last["symbols_failed"].items()) or "none"
        lines = [
            f"last batch     {last['batch_id']} ({last['kind']}), ended {last['end']},"
            f" {last['duration_ms']} ms",
            f"               updated {len(last['symbols_updated'])}, failed: {failed},"
            f" API calls {last['api_calls']}, budget waits {last['budget_waits']}",
        ]
    lines.append(f"last critical  {critical['end'] if critical else 'none yet'}")
    lines.append(f"priority       {', '.join(doc['priority_symbols'])}")
    return lines


def _plan_lines(doc: dict[str, Any]) -> list[str]:
    plan = doc["plan"]
    if plan is None:
        return []
    lines = [f"plan           {plan['described']}"]
    lines.append(
        f"               a critical refresh costs {plan['critical_refresh_calls']} call(s);"
        " that many are kept free for it"
    )
    for tier, cadence in plan["cadence"].items():
        lines.append(f"cadence        {tier}: {cadence}")
    if doc.get("budget_need"):
        lines.append(f"budget need    {doc['budget_need']['arithmetic']}")
    return lines


def provider_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per provider: its plan and timeframe, budget, health, the symbols it serves."""
    lines = []
    for row in rows:
        name = f"{row['provider']:<14} "
        if not row["configured"]:
            lines.append(f"{name}not configured (see docs/providers.md); serves nothing")
            continue
        where = " (simulated)" if row.get("simulated") else ""
        serves = ", ".join(row["serving"]) or "nothing now"
        lines.append(f"{name}{row['plan']}{where}, {row['timeframe']}; serves {serves}")
        lines.append(f"{'':<15}budget {row.get('budget')}; {row.get('health')}")
    return lines


def _queue_line(queue: dict[str, Any]) -> str:
    by_tier = ", ".join(f"{t} {n}" for t, n in queue["waiting_by_tier"].items())
    age = queue["oldest_item_age_seconds"]
    return (
        f"queue          {queue['waiting']} waiting ({by_tier}), {queue['in_flight']} in"
        f" flight, {queue['failed']} failed; oldest {'-' if age is None else f'{age:.0f}s'}"
    )


def _totals_line(totals: dict[str, Any]) -> str:
    return (
        f"totals         {totals['batches']} batches, {totals['symbols_updated']} updates,"
        f" {totals['symbols_failed']} failures, {totals['api_calls']} API calls,"
        f" {totals['budget_waits']} budget waits"
    )


def _budget_line(doc: dict[str, Any]) -> str:
    budget = doc["budget"]
    paused = f"; PAUSED until {budget['paused_until']}" if budget["paused_until"] else ""
    return (
        f"budget         {budget['remaining']} of {budget['limit']} calls left per"
        f" {budget['window_seconds']:g}s ({budget['backend']}); resets"
        f" {budget['reset_at'] or 'now'}; {budget['total_calls']} calls and"
        f" {budget['total_waits']} waits in all{paused}"
    )


# --- operations: the queue and pruning -------------------------------------------------------

QUEUE_HEADER = ("#", "SYMBOL", "TIER", "BASE TIER", "STATE", "ATTEMPTS", "ENQUEUED (UTC)", "BATCH")


def queue_list(registry: Registry, settings: Settings, as_json: bool) -> int:
    """Every item on the queue: waiting ones in the order the drain takes them (`#`), then those
    in flight and those failed, with their last error."""
    queue = RefreshQueue(_resources(settings)["database"].engine(), registry.queue)
    items = drain_order(queue.items())
    if as_json:
        print(json.dumps([_queue_item_document(i) for i in items], indent=2))
        return 0
    if not items:
        print("the queue is empty")
        return 0
    rows = [_queue_row(n, item) for n, item in enumerate(items, 1)]
    _print_table([QUEUE_HEADER, *rows])
    for item in items:
        if item.last_error:
            print(f"{item.symbol}: last error: {item.last_error}")
    return 0


def _queue_row(position: int, item: QueueItem) -> tuple[str, ...]:
    return (
        str(position) if item.status == QUEUED else "-",
        item.symbol,
        item.tier.value,
        item.base_tier.value,
        item.status,
        str(item.attempts),
        item.enqueued_at.strftime("%Y-%m-%d %H:%M:%S"),
        item.batch_id or "-",
    )


def _queue_item_document(item: QueueItem) -> dict[str, Any]:
    return {
        "symbol": item.symbol,
        "tier": item.tier.value,
        "base_tier": item.base_tier.value,
        "state": item.status,
        "attempts": item.attempts,
        "enqueued_at": iso_utc(item.enqueued_at),
        "batch": item.batch_id,
        "last_error": item.last_error,
    }


def queue_change(registry: Registry, settings: Settings, action: str, symbols: list[str]) -> int:
    """`requeue` or `clear` the symbols, all or none: an error names each symbol at fault."""
    queue = RefreshQueue(_resources(settings)["database"].engine(), registry.queue)
    try:
        if action == "requeue":
            configured = {spec.symbol for spec in registry}
            for item in queue.requeue(symbols, configured=configured):
                print(f"requeued {item.symbol}: waiting at {item.tier.value}, attempts reset")
        else:
            for item in queue.clear(symbols):
                was = f"{item.status}" + (f": {item.last_error}" if item.last_error else "")
                print(f"cleared {item.symbol} (was {was})")
    except QueueOperationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def prune(settings: Settings, older_than: str | None, dry_run: bool) -> int:
    """Delete (or count, `--dry-run`) the rows older than the retention that nothing needs."""
    try:
        age = parse_age(older_than, "--older-than") if older_than else settings.retention
    except RetentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = _resources(settings)["database"].engine()
    report = prune_tables(engine, clock.utcnow() - age, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    print(f"rows older than {format_age(age)} (before {iso_utc(report.cutoff)}), {verb}:")
    _print_table([("TABLE", "ROWS"), *((t, str(n)) for t, n in report.rows.items())])
    return 0


# --- the command line ------------------------------------------------------------------------

#: `-v` after a subcommand too; SUPPRESS keeps the global flag's value when it is not given there.
VERBOSE: dict[str, Any] = {
    "action": "store_true",
    "default": argparse.SUPPRESS,
    "help": "show the run's log and every traceback",
}
EXIT_CODES = """exit codes:
  0  done
  1  the operation failed, or status could not reach a part
  2  bad usage or configuration (an argument, a variable, the symbols file)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assets-pipeline",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Dagster's log and every traceback"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_refresh = sub.add_parser("refresh", help="refresh quotes now")
    p_refresh.add_argument("--tier", choices=[t.value for t in Tier], help="only this tier")
    p_refresh.add_argument("-v", "--verbose", **VERBOSE)
    p_batch = sub.add_parser("run-batch", help="refresh the critical tier now, inside the budget")
    p_batch.add_argument("-v", "--verbose", **VERBOSE)
    p_backfill = sub.add_parser("backfill", help="store past days' bars (history), in one run")
    p_backfill.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    p_backfill.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    p_backfill.add_argument("--symbol", dest="symbols", action="append", metavar="SYMBOL")
    p_backfill.add_argument("-v", "--verbose", **VERBOSE)
    p_status = sub.add_parser("status", help="last batch, next runs, queue, budget")
    p_status.add_argument("--json", action="store_true", help="machine-readable")
    sub.add_parser("relay", help="publish events waiting in the outbox")
    p_budget = sub.add_parser("budget", help="show the Polygon budget")
    p_budget.add_argument("--json", action="store_true")
    sub.add_parser(
        "simulator",
        help="run a vendor's simulator: Polygon, Kraken or OANDA (see --help)",
        add_help=False,
    )
    p_doctor = sub.add_parser("doctor", help="check the settings, services and files; say the fix")
    p_doctor.add_argument("--json", action="store_true", help="machine-readable")
    p_doctor.add_argument("--probe", action="store_true", help="spend one call to check the key")
    _migrate_parser(sub)
    _operations_parsers(sub)
    return parser


def _migrate_parser(sub: Any) -> None:
    p_migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the trading database's tables (run as their owner)",
        description="Upgrade TRADING_DATABASE_URL (or the embedded file) to the newest revision."
        " The writer never runs DDL on an external database: run this first, as the owner.",
    )
    what = p_migrate.add_mutually_exclusive_group()
    what.add_argument(
        "--sql", action="store_true", help="print the PostgreSQL script for a DBA; run nothing"
    )
    what.add_argument(
        "--check", action="store_true", help="exit 1 if the database is behind; change nothing"
    )
    what.add_argument(
        "--grants", metavar="ROLE", help="print the least GRANTs the writer's ROLE needs"
    )


def _operations_parsers(sub: Any) -> None:
    p_queue = sub.add_parser("queue", help="inspect and repair the refresh queue")
    actions = p_queue.add_subparsers(dest="action", required=True)
    p_list = actions.add_parser("list", help="every item: order, tier, state, attempts, error")
    p_list.add_argument("--json", action="store_true", help="machine-readable")
    p_requeue = actions.add_parser(
        "requeue", help="put failed or demoted symbols back at their tier, attempts reset"
    )
    p_requeue.add_argument("symbols", nargs="+", metavar="SYMBOL")
    p_clear = actions.add_parser("clear", help="take symbols off the queue, failure and all")
    p_clear.add_argument("symbols", nargs="+", metavar="SYMBOL")
    p_prune = sub.add_parser("prune", help="delete delivered events, batches, history by age")
    p_prune.add_argument(
        "--older-than", metavar="AGE", help="e.g. 30d or 36h (default: ASSETS_RETENTION_DAYS)"
    )
    p_prune.add_argument("--dry-run", action="store_true", help="count per table, delete nothing")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a failure ends in one paragraph (operation, cause, fix), its traceback
    only with `--verbose`."""
    args = None
    try:
        args, rest = _parser().parse_known_args(argv)
        return _run(args, rest)
    except Exception as exc:  # noqa: BLE001 (every failure ends in the paragraph, no more)
        verbose = bool(getattr(args, "verbose", False))
        settings = _settings_or_defaults()
        print(failures_module.report(_operation(args), exc, settings, verbose), file=sys.stderr)
        return 2 if isinstance(exc, SettingsError | RegistryError) else 1


def _settings_or_defaults() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError:
        return Settings()


def _operation(args: argparse.Namespace | None) -> str:
    if args is None:
        return "assets-pipeline"
    return " ".join(filter(None, [args.command, getattr(args, "action", None)]))


def entry() -> int:
    """The `assets-pipeline` console script: `main`, then an exit that skips Python's last
    garbage collection over every object the run made (half a second of CPU after a refresh, on
    a process that is ending anyway): they are frozen out of the collector first."""
    code = main()
    gc.freeze()
    return code


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.command == "simulator":
        from assets_pipeline.simulator.__main__ import main as simulator_main

        return simulator_main(rest)
    if rest:
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "doctor":  # before the settings are read: it reports their errors
        from assets_pipeline.doctor import doctor

        return doctor(args.json, args.probe)
    settings = Settings.from_env()  # SettingsError, RegistryError: exit 2 (see `main`)
    registry = load_registry(settings=settings)
    if args.command == "migrate":
        return migrate(settings, args)
    if args.command in ("relay", "budget"):
        return relay(settings) if args.command == "relay" else budget(settings, args.json)
    if args.command == "queue":
        if args.action == "list":
            return queue_list(registry, settings, args.json)
        return queue_change(registry, settings, args.action, args.symbols)
    if args.command == "prune":
        return prune(settings, args.older_than, args.dry_run)
    if args.command == "refresh":
        return refresh(registry, settings, args.tier, args.verbose)
    if args.command == "run-batch":
        return run_batch(registry, settings, args.verbose)
    if args.command == "backfill":
        try:
            days = past_days(registry, args.first, args.last)
            specs = [registry.get(s) for s in args.symbols] if args.symbols else list(registry)
        except (ValueError, KeyError) as exc:
            _parser().error(str(exc).strip("'\""))
        return backfill(registry, settings, days, specs, args.verbose)
    return status(registry, settings, args.json)


if __name__ == "__main__":
    sys.exit(entry())
