"""What kind of traffic a run is, read from its tags alone. Pure: no Dagster, no I/O.

The kind sets a run's `dagster/priority`, maximum runtime and how many may be in flight at once
(`may_start`, and Dagster's run queue), and whether it spares the critical reserve and skips closed
markets. Only this project's cadences and `assets-pipeline run-batch` mark a run `critical` or
`queue`; one from the UI, the launchpad or a backfill is `manual` or `backfill`."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


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


#: How many runs of each kind may be in flight at once: one. Dagster's run queue starts no more
#: (dagster.yaml's `tag_concurrency_limits`, which must equal `tag_concurrency_limits()`), and a
#: cadence requests no run while its own is still alive (`may_start`).
RUNS_AT_ONCE = {CRITICAL: 1, QUEUE: 1, MANUAL: 1, UPKEEP: 1, BACKFILL: 1}


@dataclass(frozen=True)
class RunInFlight:
    """A run queued or running: its id, its status, its tags and how long it has been in flight
    (since it started, or was created)."""

    run_id: str
    status: str
    tags: Mapping[str, str]
    seconds: float

    @property
    def alive(self) -> bool:
        """Within its maximum runtime. A run whose worker was killed stays in flight for ever;
        past that runtime it is taken for dead (run monitoring fails it) and holds nothing."""
        return self.seconds <= max_runtime_seconds(self.tags)


@dataclass(frozen=True)
class Start:
    """Whether another run may start, and if not, why: `still queued (1a2b3c4d)`."""

    allowed: bool
    why: str = ""


def may_start(kind: str, in_flight: Iterable[RunInFlight]) -> Start:
    """May another run of `kind` start while `in_flight` (the runs doing the same work: its
    job's, its enqueue purpose's) are queued or running? Only while fewer than the kind's
    `RUNS_AT_ONCE` of them are alive. The one rule for every cadence that launches runs."""
    alive = [run for run in in_flight if run.alive]
    if len(alive) < RUNS_AT_ONCE[RunKind(kind)]:
        return Start(True)
    first = alive[0]
    return Start(False, f"still {first.status.lower()} ({first.run_id[:8]})")


def tag_concurrency_limits() -> list[dict[str, object]]:
    """`RUNS_AT_ONCE` as Dagster's run queue takes it (`run_coordinator` in dagster.yaml): one
    limit for each value of the kind tag, one for the runs of partition backfills."""
    (per_kind,) = {limit for kind, limit in RUNS_AT_ONCE.items() if kind is not BACKFILL}
    return [
        {"key": KIND_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": per_kind},
        {"key": DAGSTER_BACKFILL_TAG, "limit": RUNS_AT_ONCE[BACKFILL]},
    ]
