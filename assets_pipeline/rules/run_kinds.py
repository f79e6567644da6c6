"""What kind of traffic a run is, read from its tags alone. Pure: no Dagster, no I/O.

The kind sets a run's `dagster/priority` and maximum runtime, whether its calls must leave the
critical reserve untouched, and whether it skips closed markets. Only this project's cadences and
`assets-pipeline run-batch` mark a run `critical` or `queue`; one launched from the UI, the
launchpad or a partition backfill is `manual` or `backfill` (docs/operations.md)."""

from __future__ import annotations

import enum
from collections.abc import Mapping


class RunKind(enum.StrEnum):
    """A run's kind, as its `assets_pipeline/kind` tag says it."""

    CRITICAL = "critical"
    QUEUE = "queue"
    MANUAL = "manual"
    BACKFILL = "backfill"
    #: The small runs the ticks launch to act on the queue and the outbox (no Polygon call).
    UPKEEP = "upkeep"


CRITICAL = RunKind.CRITICAL
QUEUE = RunKind.QUEUE
MANUAL = RunKind.MANUAL
BACKFILL = RunKind.BACKFILL
UPKEEP = RunKind.UPKEEP
RUN_PRIORITY = {CRITICAL: 10, MANUAL: 5, UPKEEP: 5, QUEUE: 0, BACKFILL: -10}

KIND_TAG = "assets_pipeline/kind"
BATCH_TAG = "assets_pipeline/batch"
PRIORITY_TAG = "dagster/priority"
#: Dagster's own tags: a run's maximum runtime (enforced by run monitoring), and the tag every
#: run of a partition backfill carries.
MAX_RUNTIME_TAG = "dagster/max_runtime"
DAGSTER_BACKFILL_TAG = "dagster/backfill"

#: How long a refresh run of each kind may take before it is taken for dead: its worker was
#: killed, or it hangs. Run monitoring (dagster.yaml) fails it after this, and the cadences stop
#: waiting for it. A critical refresh makes a few calls that never wait long for the budget; a
#: queue batch may wait a window or two for its slots (see `max_budget_wait_seconds`, 180 s).
MAX_RUNTIME_SECONDS = {CRITICAL: 300, QUEUE: 900, MANUAL: 900, UPKEEP: 300, BACKFILL: 3600}


def run_kind(tags: Mapping[str, str]) -> RunKind:
    """The kind a run's tags say it is; anything this project did not mark is manual."""
    kind = tags.get(KIND_TAG, "")
    if kind in RUN_PRIORITY:
        return RunKind(kind)
    if DAGSTER_BACKFILL_TAG in tags:
        return BACKFILL
    return MANUAL


def run_tags(kind: str, batch_id: str | None = None, **extra: str) -> dict[str, str]:
    """The tags this project puts on a run it launches: kind, priority and maximum runtime."""
    tags = {
        KIND_TAG: str(RunKind(kind)),
        PRIORITY_TAG: str(RUN_PRIORITY[kind]),
        MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS[kind]),
        **extra,
    }
    if batch_id:
        tags[BATCH_TAG] = batch_id
    return tags


#: A refresh stops asking Polygon at this share of its run's maximum runtime: the rest is for
#: settling every symbol's status (none left `in_progress`) before run monitoring ends the run.
REFRESH_SHARE_OF_RUNTIME = 0.8


def refresh_seconds(tags: Mapping[str, str]) -> float:
    """How long a run's refresh may ask Polygon: critical 240 s, queue and manual 720 s."""
    return max_runtime_seconds(tags) * REFRESH_SHARE_OF_RUNTIME


def max_runtime_seconds(tags: Mapping[str, str]) -> float:
    """A run's maximum runtime: its own tag when it has a valid one, else its kind's."""
    try:
        value = float(tags.get(MAX_RUNTIME_TAG, ""))
    except ValueError:
        value = 0.0
    return value if value > 0 else float(MAX_RUNTIME_SECONDS[run_kind(tags)])
