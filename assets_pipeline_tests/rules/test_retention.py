"""Reading a retention: days or hours, a unit required, never zero."""

from __future__ import annotations

import datetime as dt

import pytest

from assets_pipeline.rules.retention import RetentionError, format_age, parse_age


@pytest.mark.parametrize(
    "text, age",
    [
        ("30d", dt.timedelta(days=30)),
        ("36h", dt.timedelta(hours=36)),
        (" 1.5d ", dt.timedelta(hours=36)),
    ],
)
def test_an_age_is_days_or_hours(text, age):
    assert parse_age(text, "--older-than") == age


@pytest.mark.parametrize(
    "text, message",
    [
        # without a unit, 30 could be read as seconds and prune nearly everything
        ("30", "--older-than: '30' is not an age such as 30d or 36h"),
        ("30m", "is not an age such as 30d or 36h"),
        ("-1d", "is not an age"),
        ("0d", "--older-than: '0d' must be longer than zero"),
    ],
)
def test_an_age_without_a_unit_or_of_nothing_is_refused_naming_where(text, message):
    with pytest.raises(RetentionError, match=message):
        parse_age(text, "--older-than")


def test_an_age_reads_back_as_written():
    assert [format_age(parse_age(t, "x")) for t in ("30d", "36h", "1.5d")] == ["30d", "36h", "36h"]
