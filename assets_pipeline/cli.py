"""`assets-pipeline`: refresh quotes now, relay pending events, run the simulator, show the budget.

`refresh` runs the same Dagster job the UI launches, in this process, so the embedded defaults
(SQLite, the in-process simulator) need nothing else running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence

import dagster as dg

from assets_pipeline.events import relay_pending
from assets_pipeline.quotes import iso_utc, parse_iso_utc
from assets_pipeline.registry import Registry, Tier, load_registry
from assets_pipeline.settings import env_is_set


def _fmt(value: object, precision: int) -> str:
    return "-" if value is None else f"{float(value):.{precision}f}"  # type: ignore[arg-type]


def refresh(registry: Registry, tier: str | None, verbose: bool = False) -> int:
    """Materialize today's partition of every symbol (or one tier) and print a table."""
    from assets_pipeline.definitions import build_definitions

    defs = build_definitions(registry)
    job = defs.resolve_job_def(f"refresh_{tier}" if tier else "refresh_quotes")
    instance = dg.DagsterInstance.get() if env_is_set("DAGSTER_HOME") else None
    today = dt.datetime.now(dt.UTC).date().isoformat()
    level = "DEBUG" if verbose else "INFO"
    result = job.execute_in_process(
        partition_key=today,
        instance=instance,
        raise_on_error=False,
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
    print(f"published {result.sent} event(s); {result.pending} pending")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def budget(as_json: bool) -> int:
    from assets_pipeline.definitions import build_resources

    stats = build_resources()["polygon"].budget.budget().stats()  # type: ignore[attr-defined]
    doc = {
        "backend": stats.backend,
        "limit": stats.limit,
        "window_seconds": stats.window_seconds,
        "remaining": stats.remaining,
        "reset_at": iso_utc(stats.reset_at) if stats.reset_at else None,
        "paused_until": iso_utc(stats.paused_until) if stats.paused_until else None,
        "total_calls": stats.total_calls,
        "total_waits": stats.total_waits,
    }
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        for key, value in doc.items():
            print(f"{key:15} {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assets-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_refresh = sub.add_parser("refresh", help="refresh quotes now (today's partition)")
    p_refresh.add_argument("--tier", choices=[t.value for t in Tier], help="only this tier")
    p_refresh.add_argument("-v", "--verbose", action="store_true", help="show the run's log")
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
    if args.command == "relay":
        return relay()
    return budget(args.json)


if __name__ == "__main__":
    sys.exit(main())
