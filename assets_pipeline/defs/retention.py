"""Pruning in Dagster: the `prune_old_rows` job (the same pruning as `assets-pipeline prune`,
`persistence/retention.py`) and its daily schedule, which starts switched off: deleting rows is
the operator's decision (docs/operations.md, "Pruning")."""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.persistence.retention import prune
from assets_pipeline.rules import clock
from assets_pipeline.rules.retention import format_age, parse_age

PRUNE_JOB = "prune_old_rows"


class PruneConfig(dg.Config):
    older_than: str = Field(
        default="", description="An age such as 30d or 36h; empty = ASSETS_RETENTION_DAYS."
    )
    dry_run: bool = Field(default=False, description="Count what would go; delete nothing.")


@dg.op(name="prune_tables")
def prune_tables(
    context: dg.OpExecutionContext, config: PruneConfig, database: TradingDatabase
) -> dg.Output[int]:
    """Delete the rows older than the retention that nothing needs any more."""
    if config.older_than:
        try:
            age = parse_age(config.older_than, "older_than")
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
    else:
        age = dt.timedelta(days=database.retention_days)
    report = prune(database.engine(), clock.utcnow() - age, dry_run=config.dry_run)
    context.log.info(f"{report.summary()} (retention {format_age(age)})")
    return dg.Output(
        report.total,
        metadata={
            "retention": format_age(age),
            "cutoff": report.cutoff.isoformat(),
            "dry_run": report.dry_run,
            **{f"rows/{table}": n for table, n in report.rows.items()},
        },
    )


@dg.job(
    name=PRUNE_JOB,
    description="Prune delivered events, refresh batches and quote history older than the"
    " retention (ASSETS_RETENTION_DAYS); keeps undelivered events and each symbol's newest quote.",
)
def prune_old_rows() -> None:
    prune_tables()


prune_daily = dg.ScheduleDefinition(
    name="prune_old_rows_daily",
    job=prune_old_rows,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Prune old rows once a day (03:17 UTC). Off until switched on: deleting rows is"
    " the operator's decision.",
)


def retention_definitions() -> dg.Definitions:
    """This area's definitions: the pruning job and its daily schedule."""
    return dg.Definitions(jobs=[prune_old_rows], schedules=[prune_daily])
