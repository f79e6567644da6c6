"""When a failing check deserves an alert: once per failure, at ERROR only."""

from __future__ import annotations

import datetime as dt

from assets_pipeline.rules.alerts import (
    CheckOutcome,
    alerted_cursor,
    alerted_from_cursor,
    check_failure_alert,
    check_link,
    newly_failing,
)

AT = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def outcome(symbol, passed, severity="ERROR", check="fresh"):
    return CheckOutcome(f"quotes/{symbol}", check, passed, severity, AT, f"{symbol}: stale")


def test_each_failing_error_check_is_new_once_and_forgotten_when_it_passes_or_only_warns():
    cases = [
        # (alerted before, latest outcomes, newly failing, alerted still failing)
        # a first failure is new
        (set(), [outcome("EURUSD", False)], ["quotes/EURUSD:fresh"], set()),
        # still failing: the same failure, not new
        ({"quotes/EURUSD:fresh"}, [outcome("EURUSD", False)], [], {"quotes/EURUSD:fresh"}),
        # passing again: forgotten, so its next failure is new
        ({"quotes/EURUSD:fresh"}, [outcome("EURUSD", True)], [], set()),
        # a WARN failure is for the UI, not an alert, and ends an ERROR failure too
        ({"quotes/EURUSD:fresh"}, [outcome("EURUSD", False, "WARN")], [], set()),
        (set(), [outcome("GBPUSD", False, "WARN", "quote_age")], [], set()),
        # a check no longer judged (its symbol removed from the file) is forgotten
        ({"quotes/EURUSD:fresh"}, [outcome("GBPUSD", True)], [], set()),
    ]
    for alerted, outcomes, new, still in cases:
        found, remaining = newly_failing(alerted, outcomes)
        assert ([o.key for o in found], remaining) == (new, still), (alerted, outcomes)


def test_one_alert_names_every_newly_failing_check_its_verdict_and_its_checks_page():
    alert = check_failure_alert([outcome("EURUSD", False), outcome("BTCUSD", False)])
    assert alert["alert"] == "checks_failed" and alert["symbols"] == ["BTCUSD", "EURUSD"]
    first = alert["checks"][0]
    assert first == {
        "asset": "quotes/EURUSD",
        "symbol": "EURUSD",
        "check": "fresh",
        "severity": "ERROR",
        "description": "EURUSD: stale",
        "evaluated_at": "2026-11-25T12:00:00.000000Z",
        "link": "/assets/quotes/EURUSD?view=checks&checkDetail=fresh",
    }


def test_a_check_link_is_the_path_the_dagster_ui_builds():
    # the UI URL-encodes each segment of the asset's path (webapp: `assetDetailsPathForKey`)
    assert check_link("quotes/EURUSD", "fresh") == (
        "/assets/quotes/EURUSD?view=checks&checkDetail=fresh"
    )
    assert check_link("quotes/A B", "fresh") == "/assets/quotes/A%20B?view=checks&checkDetail=fresh"


def test_the_cursor_round_trips_and_a_broken_one_reads_as_nothing_alerted():
    assert alerted_from_cursor(alerted_cursor({"b", "a"})) == {"a", "b"}
    assert alerted_from_cursor(None) == alerted_from_cursor("{not json") == set()
    assert alerted_from_cursor('{"a": 1}') == set()
