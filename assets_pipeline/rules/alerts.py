"""What an alert says, and when a failing check deserves one. Pure: no Dagster, no HTTP.

Two JSON alerts, named by `alert`: `run_failed` (a refresh, freshness or pruning run failed) and
`checks_failed` (ERROR-severity checks that started failing). A failing check is alerted once per
failure: `newly_failing` remembers what was alerted and forgets a check that passes again, fails
only at WARN or is no longer judged. The bodies and the sensors: docs/operations.md, "Alerts"."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from assets_pipeline.rules.quotes import iso_utc

RUN_FAILED = "run_failed"
CHECKS_FAILED = "checks_failed"
#: The longest error text an alert carries (a stack trace is in the UI, one click away).
MAX_ERROR_CHARS = 500


def run_link(run_id: str) -> str:
    """The run's page, as a path of the Dagster UI (the webserver's address is the reader's)."""
    return f"/runs/{run_id}"


def check_link(asset: str, check: str) -> str:
    """The check's panel on its asset's Checks tab, as the Dagster UI (1.13) builds the path:
    each segment of the asset's path URL-encoded, then `?view=checks&checkDetail=<check>`."""
    path = "/".join(urllib.parse.quote(part, safe="") for part in asset.split("/"))
    query = urllib.parse.urlencode({"view": "checks", "checkDetail": check})
    return f"/assets/{path}?{query}"


@dataclass(frozen=True)
class FailedRun:
    job: str
    run_id: str
    kind: str
    symbols: Sequence[str]
    error: str
    failed_at: dt.datetime
    partition: str | None = None
    batch: str | None = None
    #: How the run's batch ended, from its result tag ("2 updated, 1 failed, 3 calls").
    result: str | None = None


def run_failure_alert(run: FailedRun) -> dict[str, Any]:
    return {
        "alert": RUN_FAILED,
        "job": run.job,
        "run_id": run.run_id,
        "kind": run.kind,
        "partition": run.partition,
        "batch": run.batch,
        "result": run.result,
        "symbols": sorted(run.symbols),
        "error": run.error[:MAX_ERROR_CHARS],
        "failed_at": iso_utc(run.failed_at),
        "link": run_link(run.run_id),
    }


@dataclass(frozen=True)
class CheckOutcome:
    """A check as the sensor judged it, at `evaluated_at`. `key` is `<asset path>:<check name>`."""

    asset: str
    check: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    evaluated_at: dt.datetime
    description: str | None = None

    @property
    def key(self) -> str:
        return f"{self.asset}:{self.check}"

    @property
    def failing(self) -> bool:
        """Failing at ERROR: what an alert is for (a WARN is for the UI)."""
        return not self.passed and self.severity == "ERROR"


def newly_failing(
    alerted: Iterable[str], outcomes: Iterable[CheckOutcome]
) -> tuple[list[CheckOutcome], set[str]]:
    """(the failing checks not yet alerted, the alerted checks still failing). `outcomes` is
    every check judged: one that passes again, fails only at WARN, or is not judged any more (its
    symbol removed) leaves the alerted set, so its next failure alerts again. The caller adds
    the new ones to the set once their alert is delivered."""
    before = set(alerted)
    new, still = [], set()
    for outcome in outcomes:
        if outcome.failing and outcome.key in before:
            still.add(outcome.key)
        elif outcome.failing:
            new.append(outcome)
    return sorted(new, key=lambda o: o.key), still


def check_failure_alert(outcomes: Sequence[CheckOutcome]) -> dict[str, Any]:
    return {
        "alert": CHECKS_FAILED,
        "symbols": sorted({o.asset.rsplit("/", 1)[-1] for o in outcomes}),
        "checks": [
            {
                "asset": o.asset,
                "symbol": o.asset.rsplit("/", 1)[-1],
                "check": o.check,
                "severity": o.severity,
                "description": o.description,
                "evaluated_at": iso_utc(o.evaluated_at),
                "link": check_link(o.asset, o.check),
            }
            for o in outcomes
        ],
    }


def alerted_from_cursor(cursor: str | None) -> set[str]:
    """The alerted set a sensor's cursor holds (a JSON list); an unreadable cursor is empty, so
    at worst a failing check is alerted once more."""
    try:
        value = json.loads(cursor or "[]")
    except ValueError:
        return set()
    return {str(v) for v in value} if isinstance(value, list) else set()


def alerted_cursor(alerted: Iterable[str]) -> str:
    return json.dumps(sorted(alerted))
