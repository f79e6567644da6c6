"""A run's kind comes from its tags alone: only this project's cadences make critical runs."""

from __future__ import annotations

import pytest

from assets_pipeline.rules.run_kinds import (
    BACKFILL,
    CRITICAL,
    MANUAL,
    QUEUE,
    max_runtime_seconds,
    run_kind,
    run_tags,
)


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
