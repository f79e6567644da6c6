"""Jobs that refresh quotes: everything, a tier, or a queue batch (each one run, one step per 250
symbols), with the quality checks but not the freshness checks (their own job); and
`enqueue_refreshes`, the run that puts the symbols a tick chose on the queue. A refresh job's run
launched from the UI carries no kind tag: it is a manual run (`rules/run_kinds.py`)."""

import dagster as dg
from pydantic import Field

from assets_pipeline.config.registry import Registry, SymbolSpec, Tier
from assets_pipeline.defs.keys import QUALITY_CHECK, QUOTES_PREFIX, quote_asset_key
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.defs.runs import ENQUEUE_JOB, ENQUEUE_OP, reconcile_claims
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules import clock
from assets_pipeline.rules.queue_rules import EnqueuePlan


def _refresh(symbols: list[SymbolSpec], assets: dg.AssetSelection) -> dg.AssetSelection:
    quality = [dg.AssetCheckKey(quote_asset_key(s.symbol), QUALITY_CHECK) for s in symbols]
    return assets.without_checks() | dg.AssetSelection.checks(*quality)


def refresh_all_job(registry: Registry) -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        "refresh_quotes",
        selection=_refresh(list(registry), dg.AssetSelection.key_prefixes([QUOTES_PREFIX])),
        description="Refresh every configured symbol's quote.",
    )


def refresh_queue_job(registry: Registry) -> "dg.UnresolvedAssetJobDefinition":
    """What the drain sensor launches, each run with the batch's symbols as its selection; the
    run claims them as it starts."""
    return dg.define_asset_job(
        "refresh_queue",
        selection=_refresh(list(registry), dg.AssetSelection.key_prefixes([QUOTES_PREFIX])),
        description="Refresh a batch of queued symbols: the drain sensor picks them, the run"
        " claims them on the queue as it starts.",
    )


def refresh_tier_jobs(registry: Registry) -> "list[dg.UnresolvedAssetJobDefinition]":
    return [
        dg.define_asset_job(
            f"refresh_{tier.value}",
            selection=_refresh(registry.in_tier(tier), dg.AssetSelection.groups(tier.value)),
            description=f"Refresh the {tier.value} tier's quotes.",
        )
        for tier in Tier
        if registry.in_tier(tier)
    ]


class EnqueueConfig(dg.Config):
    symbols: list[str] = Field(default=[], description="The symbols to put on the queue.")
    reason: str = Field(default="", description="Why (a tier's cadence, a market open, ...).")
    note: str = Field(default="", description="What the tick saw of the others.")


def enqueue_message(plan: EnqueuePlan, arrivals: int, label: str, max_size: int) -> str:
    """What an enqueue did, in one line: added, already waiting, and what a full queue left out
    (arrivals dropped, waiting items evicted for better ones)."""
    added = len(plan.insert) + sum(1 for item in plan.update if item.attempts == 0)
    message = (
        f"enqueued {added} {label} symbol(s); {arrivals - added - len(plan.refused)} already"
        " waiting"
    )
    if plan.dropped:
        message += f"; QUEUE FULL ({max_size}): dropped {', '.join(plan.dropped)}"
        if plan.evicted:
            message += f" (evicted from the queue for a better tier: {', '.join(plan.evicted)})"
    return message


def enqueue_job(registry: Registry) -> dg.JobDefinition:
    """The run the enqueue schedules and the market-open and start-up sensors launch: it settles
    the claims of queue runs that ended without settling them, then enqueues its symbols."""

    @dg.op(name=ENQUEUE_OP)
    def enqueue_symbols(
        context: dg.OpExecutionContext, config: EnqueueConfig, database: TradingDatabase
    ) -> dg.Output[int]:
        queue = RefreshQueue(database.engine(), registry.queue)
        settled = reconcile_claims(context.instance, queue, clock.utcnow())
        configured = {spec.symbol for spec in registry}
        known = [s for s in config.symbols if s in configured]
        if len(known) < len(config.symbols):
            gone = [s for s in config.symbols if s not in configured]
            context.log.warning(f"no longer configured, not enqueued: {', '.join(gone)}")
        plan = queue.enqueue([(s, registry.get(s).tier) for s in known])
        message = enqueue_message(plan, len(known), config.reason, registry.queue.max_size)
        message += f"; {config.note}" if config.note else ""
        context.log.info(message + settled.note().replace("to settle first", "settled"))
        return dg.Output(len(plan.insert), metadata={"enqueued": message})

    @dg.job(
        name=ENQUEUE_JOB,
        description="Put symbols on the refresh queue (its run config names them and why); the"
        " drain sensor refreshes them as the budget allows. Makes no Polygon call.",
    )
    def enqueue_refreshes() -> None:
        enqueue_symbols()

    return enqueue_refreshes


def refresh_definitions(registry: Registry) -> dg.Definitions:
    """This area's definitions: the refresh jobs (everything, the queue, each tier) and the
    enqueue job."""
    return dg.Definitions(
        jobs=[
            refresh_all_job(registry),
            refresh_queue_job(registry),
            *refresh_tier_jobs(registry),
            enqueue_job(registry),
        ]
    )
