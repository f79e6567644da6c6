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
        ("36500d", dt.timedelta(days=36_500)),
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
        # past a hundred years the cutoff would fall before year 1 (or overflow a timedelta)
        ("36501d", "--older-than: '36501d' must be longer than zero and at most 36,500d"),
        ("99999999999d", "at most 36,500d"),
        ("876001h", "at most 36,500d"),
        ("1e10d", "is not an age"),
    ],
)
def test_an_age_without_a_unit_of_nothing_or_of_centuries_is_refused_naming_where(text, message):
    with pytest.raises(RetentionError, match=message):
        parse_age(text, "--older-than")


def test_an_age_reads_back_as_written():
    assert [format_age(parse_age(t, "x")) for t in ("30d", "36h", "1.5d")] == ["30d", "36h", "36h"]
