"""Alerts to a webhook: a failed run of this project's jobs, and an ERROR check that fails.

Both sensors are always defined and start switched on; while `ALERT_WEBHOOK_URL` is unset they
send nothing (each tick says so), so setting the variable is all it takes. The webhook's URL is
a secret: it reaches Dagster as `dg.EnvVar` and is in no log, tick reason or metadata.

- `alert_on_failed_run` is Dagster's run-failure sensor: the daemon hands it each failed run
  of the monitored jobs once (its cursor is Dagster's own), and it posts one `run_failed` alert.
  A POST that fails is logged and not retried: the run stays failed in the UI.
- `alert_on_failed_check` reads the latest evaluation of every check of the quote assets and
  posts one `checks_failed` alert with the ERROR checks that started failing. Its cursor keeps
  the failing checks already alerted, so a check failing on every evaluation alerts once; a
  POST that fails leaves them unalerted, and the next tick tries again.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from assets_pipeline.defs.resources import AlertWebhook
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

UNSET = "ALERT_WEBHOOK_URL is not set: no alert is sent"
_COMPLETED = {"SUCCEEDED", "FAILED"}


def failed_run(context: dg.RunFailureSensorContext) -> FailedRun:
    """What the alert says of a failed run: its symbols are the assets it set out to
    materialize, its error the first failed step's (else the run's own failure message)."""
    run = context.dagster_run
    planned = context.instance.get_asset_keys_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    )
    step_errors = [
        event.step_failure_data.error.message.strip()
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    ]
    return FailedRun(
        job=run.job_name,
        run_id=run.run_id,
        kind=run_kind(run.tags),
        symbols=[key.path[-1] for key in planned],
        error=step_errors[0] if step_errors else (context.failure_event.message or ""),
        failed_at=clock.utcnow(),
        partition=run.tags.get("dagster/partition"),
        batch=run.tags.get(BATCH_TAG),
    )


def build_run_failure_alert(
    jobs: "Sequence[dg.UnresolvedAssetJobDefinition | dg.JobDefinition]",
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
        context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook
    ) -> None:
        # returns None: a returned value would end the tick after this one run
        if not alert_webhook.configured():
            context.log.info(f"run {context.dagster_run.run_id[:8]} failed; {UNSET}")
            return
        alert = run_failure_alert(failed_run(context))
        if alert_webhook.post(alert, context.log):
            context.log.info(f"alerted: run {alert['run_id'][:8]} of {alert['job']} failed")

    return alert_on_failed_run


def _outcome(record: object) -> CheckOutcome | None:
    """A completed evaluation from the check's latest execution record (None: still running,
    or an old record without its event)."""
    event = getattr(record, "event", None)
    status = getattr(getattr(record, "status", None), "value", None)
    if status not in _COMPLETED or event is None or event.dagster_event is None:
        return None
    evaluation = event.dagster_event.event_specific_data
    return CheckOutcome(
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        run_id=event.run_id,
        evaluated_at=dt.datetime.fromtimestamp(event.timestamp, dt.UTC),
        description=evaluation.description,
    )


def check_alert_tick(
    context: dg.SensorEvaluationContext,
    check_keys: Sequence[dg.AssetCheckKey],
    alert_webhook: AlertWebhook,
) -> dg.SensorResult | dg.SkipReason:
    if not alert_webhook.configured():
        return dg.SkipReason(UNSET)
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        list(check_keys)
    )
    outcomes = [o for o in map(_outcome, latest.values()) if o is not None]
    new, alerted = newly_failing(alerted_from_cursor(context.cursor), outcomes)
    if not new:
        reason = f"no newly failing ERROR check ({len(alerted)} still failing, alerted before)"
    elif alert_webhook.post(check_failure_alert(new), context.log):
        alerted |= {o.key for o in new}
        reason = f"alerted {len(new)} failing check(s): {', '.join(o.key for o in new)}"
    else:
        reason = f"{len(new)} failing check(s) not alerted (the webhook failed); next tick retries"
    return dg.SensorResult(skip_reason=reason, cursor=alerted_cursor(alerted))


def build_check_failure_alert(check_keys: Sequence[dg.AssetCheckKey]) -> dg.SensorDefinition:
    @dg.sensor(
        name="alert_on_failed_check",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="POST a checks_failed alert to ALERT_WEBHOOK_URL when an ERROR check (fresh)"
        " starts failing; once per failure (nothing while the variable is unset).",
    )
    def alert_on_failed_check(
        context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook
    ) -> dg.SensorResult | dg.SkipReason:
        return check_alert_tick(context, check_keys, alert_webhook)

    return alert_on_failed_check


def alert_definitions(watched: dg.Definitions) -> dg.Definitions:
    """This area's definitions: the two alert sensors, over `watched`'s jobs and its assets'
    checks."""
    checks = [key for assets in watched.assets or [] for key in assets.check_keys]
    return dg.Definitions(
        sensors=[
            build_run_failure_alert(list(watched.jobs or [])),
            build_check_failure_alert(checks),
        ]
    )
