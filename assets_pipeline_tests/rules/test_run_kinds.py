"""A run's kind comes from its tags alone: only this project's cadences make critical runs."""

from __future__ import annotations

import pytest

from assets_pipeline.rules.run_kinds import (
    BACKFILL,
    CRITICAL,
    MANUAL,
    QUEUE,
    RUNS_AT_ONCE,
    UPKEEP,
    RunInFlight,
    RunKind,
    Start,
    max_runtime_seconds,
    may_start,
    run_kind,
    run_tags,
    tag_concurrency_limits,
)
from assets_pipeline_tests.conftest import REPO


@pytest.mark.parametrize(
    ("tags", "kind"),
    [
        # what the critical schedule and the market-open sensor tag their runs with
        (run_tags(CRITICAL, tier="critical"), CRITICAL),
        # what the queue drain tags its runs with
        (run_tags(QUEUE, "q-1"), QUEUE),
        # the UI's Materialize button: no tags at all, whatever it selects
        ({}, MANUAL),
        # a partition backfill launched from the UI: Dagster's own backfill tag
        ({"dagster/backfill": "abcdefgh"}, BACKFILL),
        # a schedule of someone else's on our job: Dagster's tag, not ours
        ({"dagster/schedule_name": "my_schedule"}, MANUAL),
        # a kind this project does not know is not trusted
        ({"assets_pipeline/kind": "vip"}, MANUAL),
    ],
)
def test_the_kind_of_a_run(tags, kind):
    assert run_kind(tags) == kind


def test_every_run_we_launch_carries_its_priority_and_maximum_runtime():
    tags = run_tags(CRITICAL)
    assert tags["dagster/priority"] == "10" and tags["dagster/max_runtime"] == "300"
    assert run_tags(QUEUE, "q-1")["assets_pipeline/batch"] == "q-1"
    assert int(run_tags(BACKFILL)["dagster/priority"]) < int(run_tags(MANUAL)["dagster/priority"])


@pytest.mark.parametrize(
    ("tags", "seconds"),
    [
        (run_tags(CRITICAL), 300),  # its own tag
        ({"dagster/max_runtime": "42"}, 42),  # a tag set by hand wins
        ({"dagster/max_runtime": "soon"}, 900),  # unreadable: the kind's (manual)
        ({}, 900),  # a UI run: manual
    ],
)
def test_how_long_a_run_may_take_before_it_is_taken_for_dead(tags, seconds):
    assert max_runtime_seconds(tags) == seconds


def _run(seconds: float, kind: str = CRITICAL, status: str = "STARTED") -> RunInFlight:
    return RunInFlight("1a2b3c4d5e6f", status, run_tags(kind), seconds)


# each case: a kind, the runs doing the same work in flight, and whether another may start
START_CASES = [
    # nothing in flight: start
    (CRITICAL, [], Start(True)),
    # one alive, queued or running: wait for it, saying which
    (CRITICAL, [_run(10)], Start(False, "still started (1a2b3c4d)")),
    (QUEUE, [_run(10, QUEUE, "QUEUED")], Start(False, "still queued (1a2b3c4d)")),
    (UPKEEP, [_run(299, UPKEEP)], Start(False, "still started (1a2b3c4d)")),
    # past its maximum runtime (critical 300 s), its worker is taken for dead: start
    (CRITICAL, [_run(301)], Start(True)),
    # a dead run and a live one: the live one holds
    (QUEUE, [_run(5000, QUEUE), _run(1, QUEUE)], Start(False, "still started (1a2b3c4d)")),
]


@pytest.mark.parametrize(("kind", "runs", "expected"), START_CASES)
def test_one_run_of_a_kind_in_flight_at_a_time(kind, runs, expected):
    assert may_start(kind, runs) == expected


def test_dagsters_run_queue_holds_the_same_limits():
    # the instance the UI and daemon run (dagster.yaml) and the production one start no more
    # runs of a kind than a cadence would request (the Helm chart is deploy/dagster.yaml's,
    # test_containers.py); a kind whose limit differed from the others' would need its own entry
    import yaml

    for path in ("dagster.yaml", "deploy/dagster.yaml"):
        settings = yaml.safe_load((REPO / path).read_text())
        limits = settings["run_coordinator"]["config"]["tag_concurrency_limits"]
        assert limits == tag_concurrency_limits(), path
    assert set(RUNS_AT_ONCE) == set(RunKind)
