"""Durations, the cadences cron can express, and the next tick of a cadence (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.rules.cadence import cron_for, next_tick, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds", "cron"),
    [
        ("5m", 300, "*/5 * * * *"),
        ("30m", 1800, "*/30 * * * *"),
        ("15s", 15, None),
        ("20s", 20, None),
        ("1h", 3600, "0 * * * *"),
        ("7m", 420, None),
        (90, 90, None),
    ],
)
def test_durations_and_the_cadences_cron_can_express(text, seconds, cron):
    assert parse_duration(text) == seconds
    assert cron_for(seconds) == cron


@pytest.mark.parametrize(
    ("every", "after", "expected"),
    [
        # every 5 minutes: the next multiple of 5 minutes since midnight UTC
        (300, "2026-11-26T10:02:30", "2026-11-26T10:05:00"),
        # exactly on a tick: the next one, not this one
        (300, "2026-11-26T10:05:00", "2026-11-26T10:10:00"),
        # every 6 hours, across midnight
        (21600, "2026-11-26T19:00:00", "2026-11-27T00:00:00"),
    ],
)
def test_the_next_tick_of_a_cron_cadence(every, after, expected):
    at = dt.datetime.fromisoformat(after).replace(tzinfo=dt.UTC)
    assert next_tick(every, at) == dt.datetime.fromisoformat(expected).replace(tzinfo=dt.UTC)
