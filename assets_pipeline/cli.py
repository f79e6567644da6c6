"""`assets-pipeline`: refresh quotes now, relay pending events, run the simulator, show the budget.

`refresh` runs the same Dagster job the UI launches, in this process, so the embedded defaults
(SQLite, the in-process simulator) need nothing else running.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets_pipeline.config.registry import Registry, Tier, load_registry
from assets_pipeline.config.settings import env_is_set
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import format_duration, next_tick, period_of_cron
from assets_pipeline.rules.quotes import iso_utc, parse_iso_utc
from assets_pipeline.rules.run_kinds import CRITICAL, run_tags
from assets_pipeline.storage.batches import batch_totals, recent_batches
from assets_pipeline.storage.outbox import relay_pending
from assets_pipeline.storage.refresh_queue import RefreshQueue


def _fmt(value: object, precision: int) -> str:
    return "-" if value is None else f"{float(value):.{precision}f}"  # type: ignore[arg-type]


def refresh(
    registry: Registry,
    tier: str | None,
    verbose: bool = False,
    tags: dict[str, str] | None = None,
) -> int:
    """Materialize today's partition of every symbol (or one tier) and print a table. Without
    `tags` the run is a manual one (see `run_kinds.py`)."""
    from assets_pipeline.definitions import build_definitions

    defs = build_definitions(registry)
    job = defs.resolve_job_def(f"refresh_{tier}" if tier else "refresh_quotes")
    instance = dg.DagsterInstance.get() if env_is_set("DAGSTER_HOME") else None
    today = clock.today().isoformat()
    level = "DEBUG" if verbose else "INFO"
    result = job.execute_in_process(
        partition_key=today,
        instance=instance,
        raise_on_error=False,
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": level}}}},
    )
    materialized = {
        m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node("quotes")
    }
    failures = [
        e.step_failure_data.error.message.strip()
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data and e.step_failure_data.error
    ]

    rows = [("SYMBOL", "BID", "ASK", "LAST", "QUOTE TIME (UTC)", "API CALLS", "RESULT")]
    api_calls = 0
    for spec in registry:
        if tier and spec.tier.value != tier:
            continue
        meta = materialized.get(spec.symbol)
        if meta is None:
            rows.append((spec.symbol, "-", "-", "-", "-", "-", "failed"))
            continue
        api_calls = max(api_calls, int(meta.get("api_calls", 0)))
        quote_time = parse_iso_utc(str(meta["quote_time"])).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            (
                spec.symbol,
                _fmt(meta.get("bid"), spec.price_precision),
                _fmt(meta.get("ask"), spec.price_precision),
                _fmt(meta.get("last_price"), spec.price_precision),
                quote_time,
                str(meta.get("api_calls", "-")),
                "stored" if meta.get("written", True) else "unchanged",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n{len(materialized)} of {len(rows) - 1} symbol(s) refreshed, {api_calls} API call(s).")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 0 if result.success else 1


def relay() -> int:
    from assets_pipeline.definitions import build_resources

    resources = build_resources()
    database = resources["database"]
    redis = resources["redis"]
    result = relay_pending(database.engine(), redis.client())  # type: ignore[attr-defined]
    print(result.summary())
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def budget(as_json: bool) -> int:
    from assets_pipeline.definitions import build_resources

    stats = build_resources()["polygon"].budget.budget().stats()  # type: ignore[attr-defined]
    doc = stats.as_dict()
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        for key, value in doc.items():
            print(f"{key:15} {value}")
    return 0


def status_document(registry: Registry) -> dict[str, Any]:
    """Everything `status` shows, as plain data (also what `--json` prints)."""
    from assets_pipeline.definitions import build_definitions, build_resources

    resources = build_resources()
    database = resources["database"]
    engine = database.engine()  # type: ignore[attr-defined]
    now = clock.utcnow()
    queue = RefreshQueue(engine, registry.queue).stats()
    stats = resources["polygon"].budget.budget().stats()  # type: ignore[attr-defined]
    last = recent_batches(engine, 1)
    last_critical = recent_batches(engine, 1, kind="critical")

    next_runs = []
    for schedule in build_definitions(registry).get_repository_def().schedule_defs:
        cron = str(schedule.cron_schedule)
        every = period_of_cron(cron)
        tick = iso_utc(next_tick(every, now)) if every else None
        next_runs.append({"schedule": schedule.name, "cron": cron, "next": tick})
    for policy in registry.tiers.values():
        if registry.in_tier(policy.tier) and not policy.cron:
            next_runs.append(
                {
                    "sensor": f"every {format_duration(policy.every_seconds)}",
                    "tier": policy.tier.value,
                }
            )
    return {
        "now": iso_utc(now),
        "last_batch": last[0].as_dict() if last else None,
        "last_critical_batch": last_critical[0].as_dict() if last_critical else None,
        "next_scheduled_runs": next_runs,
        "priority_symbols": [s.symbol for s in registry.direct()],
        "queue": {
            "waiting_by_tier": queue.waiting_by_tier,
            "waiting": queue.waiting,
            "in_flight": queue.in_flight,
            "failed": queue.failed,
            "oldest_item_age_seconds": (
                round((now - queue.oldest_enqueued_at).total_seconds(), 1)
                if queue.oldest_enqueued_at
                else None
            ),
        },
        "totals": batch_totals(engine),
        "budget": stats.as_dict(),
    }


def status(registry: Registry, as_json: bool) -> int:
    doc = status_document(registry)
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    last = doc["last_batch"]
    print(f"status at {doc['now']}\n")
    if last:
        failed = ", ".join(f"{s} ({e})" for s, e in last["symbols_failed"].items()) or "none"
        print(
            f"last batch     {last['batch_id']} ({last['kind']}), ended {last['end']},"
            f" {last['duration_ms']} ms\n"
            f"               updated {len(last['symbols_updated'])}, failed: {failed},"
            f" API calls {last['api_calls']}, budget waits {last['budget_waits']}"
        )
    else:
        print("last batch     none yet")
    critical = doc["last_critical_batch"]
    print(f"last critical  {critical['end'] if critical else 'none yet'}")
    print(f"priority       {', '.join(doc['priority_symbols'])}")
    for entry in doc["next_scheduled_runs"]:
        if "schedule" in entry:
            print(f"next run       {entry['next']}  {entry['schedule']} ({entry['cron']})")
        else:
            print(f"sensor         {entry['tier']} {entry['sensor']}")
    queue = doc["queue"]
    by_tier = ", ".join(f"{t} {n}" for t, n in queue["waiting_by_tier"].items())
    age = queue["oldest_item_age_seconds"]
    print(
        f"queue          {queue['waiting']} waiting ({by_tier}), {queue['in_flight']} in"
        f" flight, {queue['failed']} failed; oldest {'-' if age is None else f'{age:.0f}s'}"
    )
    totals = doc["totals"]
    print(
        f"totals         {totals['batches']} batches, {totals['symbols_updated']} updates,"
        f" {totals['symbols_failed']} failures, {totals['api_calls']} API calls,"
        f" {totals['budget_waits']} budget waits"
    )
    budget = doc["budget"]
    print(
        f"budget         {budget['remaining']} of {budget['limit']} calls left per"
        f" {budget['window_seconds']:g}s ({budget['backend']}); resets"
        f" {budget['reset_at'] or 'now'}; {budget['total_calls']} calls and"
        f" {budget['total_waits']} waits in all"
        + (f"; PAUSED until {budget['paused_until']}" if budget["paused_until"] else "")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assets-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_refresh = sub.add_parser("refresh", help="refresh quotes now (today's partition)")
    p_refresh.add_argument("--tier", choices=[t.value for t in Tier], help="only this tier")
    p_refresh.add_argument("-v", "--verbose", action="store_true", help="show the run's log")
    p_batch = sub.add_parser("run-batch", help="refresh the critical tier now, inside the budget")
    p_batch.add_argument("-v", "--verbose", action="store_true", help="show the run's log")
    p_status = sub.add_parser("status", help="last batch, next runs, queue, budget")
    p_status.add_argument("--json", action="store_true", help="machine-readable")
    sub.add_parser("relay", help="publish events waiting in the outbox")
    p_budget = sub.add_parser("budget", help="show the Polygon budget")
    p_budget.add_argument("--json", action="store_true")
    sub.add_parser("simulator", help="run the Polygon simulator (see --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)

    if args.command == "simulator":
        from assets_pipeline.simulator.__main__ import main as simulator_main

        return simulator_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "refresh":
        return refresh(load_registry(), args.tier, args.verbose)
    if args.command == "run-batch":
        registry = load_registry()
        tiers = [p.tier.value for p in registry.tiers.values() if p.refresh == "direct"]
        return max(
            (
                refresh(registry, tier, args.verbose, run_tags(CRITICAL, tier=tier))
                for tier in tiers
            ),
            default=0,
        )
    if args.command == "status":
        return status(load_registry(), args.json)
    if args.command == "relay":
        return relay()
    return budget(args.json)


if __name__ == "__main__":
    sys.exit(main())
