"""Alerts to a webhook: a failed run of this project's jobs (`alert_on_failed_run`), and a `fresh`
check that starts failing (`alert_on_failed_check`, judged by the sensor itself from the trading
database, as the check judges it). Both read through Dagster's public API and write nothing.
While `ALERT_WEBHOOK_URL` (a secret, passed as `dg.EnvVar`, in no log or reason) is unset they
send nothing. What each alert says and when: docs/operations.md, "Alerts".
"""

import logging
from collections.abc import Mapping, Sequence

import dagster as dg

from assets_pipeline.config.registry import Registry
from assets_pipeline.defs.checks import CHECK_JOB, FRESH, judge_freshness
from assets_pipeline.defs.keys import quote_asset_key
from assets_pipeline.defs.resources import AlertWebhook, TradingDatabase
from assets_pipeline.persistence.batches import RESULT_TAG, batches_of_run
from assets_pipeline.persistence.database import DatabaseUnavailable
from assets_pipeline.rules import clock
from assets_pipeline.rules.alerts import (
    CheckOutcome,
    FailedRun,
    alerted_cursor,
    alerted_from_cursor,
    check_failure_alert,
    newly_failing,
    run_failure_alert,
)
from assets_pipeline.rules.run_kinds import BATCH_TAG, run_kind
from assets_pipeline.rules.taxonomy import Tier

UNSET = "ALERT_WEBHOOK_URL is not set: no alert is sent"


def job_symbols(registry: Registry) -> dict[str, list[str]]:
    """The symbols each job that refreshes or checks quotes was defined for (jobs.py and
    checks.py), from the registry alone: what a failed run of it set out to do when the run
    itself selected nothing narrower."""
    everything = [spec.symbol for spec in registry]
    symbols = {"refresh_quotes": everything, "refresh_queue": everything, CHECK_JOB: everything}
    for tier in Tier:
        if registry.in_tier(tier):
            symbols[f"refresh_{tier.value}"] = [spec.symbol for spec in registry.in_tier(tier)]
    return symbols


def failed_run(
    context: dg.RunFailureSensorContext,
    symbols_of_job: Mapping[str, Sequence[str]],
    database: TradingDatabase,
) -> FailedRun:
    """What the alert says of a failed run: its symbols are the assets it selected, else those
    its job was defined for; its error each failed symbol's, as the run's batches recorded them,
    else the first failed step's message, else the run's."""
    run = context.dagster_run
    selected = {key.path[-1] for key in run.asset_selection or ()}
    steps = [event.message for event in context.get_step_failure_events() if event.message]
    return FailedRun(
        job=run.job_name,
        run_id=run.run_id,
        kind=run_kind(run.tags),
        symbols=sorted(selected) or list(symbols_of_job.get(run.job_name, [])),
        error=_symbol_errors(database, run.run_id, context.log)
        or (steps[0] if steps else (context.failure_event.message or "")),
        failed_at=clock.utcnow(),
        partition=run.tags.get("dagster/partition"),
        batch=run.tags.get(BATCH_TAG),
        result=run.tags.get(RESULT_TAG),
    )


def _symbol_errors(database: TradingDatabase, run_id: str, log: logging.Logger) -> str:
    """`SYMBOL: error; ...` from the batches the run recorded ("" when it recorded none, or the
    database cannot say: the alert still goes, with Dagster's step message)."""
    try:
        batches = batches_of_run(database.engine(), run_id)
    except DatabaseUnavailable as exc:
        log.warning(f"the failed symbols of run {run_id[:8]} are not in the alert: {exc}")
        return ""
    failed = {symbol: error for batch in batches for symbol, error in batch.failed.items()}
    return "; ".join(f"{symbol}: {error}" for symbol, error in sorted(failed.items()))


def build_run_failure_alert(
    jobs: "Sequence[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]",
    symbols_of_job: Mapping[str, Sequence[str]],
) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="alert_on_failed_run",
        monitored_jobs=list(jobs),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="POST a run_failed alert to ALERT_WEBHOOK_URL for each failed run of the"
        " refresh, freshness-check and pruning jobs (nothing while it is unset).",
    )
    def alert_on_failed_run(
        context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook, database: TradingDatabase
    ) -> None:
        # returns None: a returned value would end the tick after this one run
        if not alert_webhook.configured():
            context.log.info(f"run {context.dagster_run.run_id[:8]} failed; {UNSET}")
            return
        alert = run_failure_alert(failed_run(context, symbols_of_job, database))
        if alert_webhook.post(alert, context.log):
            context.log.info(f"alerted: run {alert['run_id'][:8]} of {alert['job']} failed")

    return alert_on_failed_run


def judged_now(
    registry: Registry, database: TradingDatabase, checks: set[dg.AssetCheckKey]
) -> list[CheckOutcome]:
    """Every symbol's `fresh` check, judged now from one read of the trading database by the
    check's own function (`judge_freshness`, which writes nothing)."""
    at = clock.utcnow()
    return [
        CheckOutcome(
            asset="/".join(result.asset_key.path) if result.asset_key else "",
            check=result.check_name or FRESH,
            passed=result.passed,
            severity=result.severity.value,
            evaluated_at=at,
            description=result.description,
        )
        for result in judge_freshness(registry, database, checks).results
    ]


def check_alert_tick(
    context: dg.SensorEvaluationContext,
    outcomes: Sequence[CheckOutcome],
    alert_webhook: AlertWebhook,
) -> dg.SensorResult:
    """One POST for the ERROR checks newly failing among `outcomes`; the cursor keeps those
    alerted (a failed POST leaves them out, so the next tick tries again)."""
    new, alerted = newly_failing(alerted_from_cursor(context.cursor), outcomes)
    if not new:
        reason = f"no newly failing ERROR check ({len(alerted)} still failing, alerted before)"
    elif alert_webhook.post(check_failure_alert(new), context.log):
        alerted |= {o.key for o in new}
        reason = f"alerted {len(new)} failing check(s): {', '.join(o.key for o in new)}"
    else:
        reason = f"{len(new)} failing check(s) not alerted (the webhook failed); next tick retries"
    return dg.SensorResult(skip_reason=reason, cursor=alerted_cursor(alerted))


def build_check_failure_alert(registry: Registry) -> dg.SensorDefinition:
    checks = {dg.AssetCheckKey(quote_asset_key(spec.symbol), FRESH) for spec in registry}

    @dg.sensor(
        name="alert_on_failed_check",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="POST a checks_failed alert to ALERT_WEBHOOK_URL when a symbol's fresh check"
        " (ERROR) starts failing, judged here from the trading database whether or not the"
        " checks' own job runs; once per failure (nothing while the variable is unset).",
    )
    def alert_on_failed_check(
        context: dg.SensorEvaluationContext,
        alert_webhook: AlertWebhook,
        database: TradingDatabase,
    ) -> dg.SensorResult | dg.SkipReason:
        if not alert_webhook.configured():
            return dg.SkipReason(UNSET)
        return check_alert_tick(context, judged_now(registry, database, checks), alert_webhook)

    return alert_on_failed_check


def alert_definitions(watched: dg.Definitions, registry: Registry) -> dg.Definitions:
    """This area's definitions: the two alert sensors, over `watched`'s jobs and `registry`'s
    symbols."""
    return dg.Definitions(
        sensors=[
            build_run_failure_alert(list(watched.jobs or []), job_symbols(registry)),
            build_check_failure_alert(registry),
        ]
    )
