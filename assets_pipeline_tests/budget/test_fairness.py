"""The critical reserve: which calls a secondary caller may make, and how long it waits (pure)."""

from __future__ import annotations

import pytest

from assets_pipeline.budget.fairness import Caller, decide, free_slots

SECONDARY = Caller(critical=False, reserve=3, critical_gap=240)
WINDOW = 60.0


@pytest.mark.parametrize(
    ("case", "now", "times", "last_critical", "expected_wait", "expected_free"),
    [
        # a critical caller takes any free slot, reserve or not
        ("critical", 100, [90, 95, 99], 0, None, None),
        # no critical refresh seen: its time is unknown, so 3 stay free in every window
        ("unknown, 1 used", 100, [99], 0, 0.0, 1),
        ("unknown, 2 used", 100, [98, 99], 0, 58.0, 0),  # the call at 98 expires at 158
        # while a critical refresh may still be making its calls (15 s), the reserve holds
        ("burst", 110, [100], 100, 0.0, 1),
        ("burst, full", 110, [100, 105], 100, 50.0, 0),  # the call at 100 expires at 160
        # after it (at 100, next due at 340): calls made before 280 expire before the next
        # is due, so everything free may be used
        ("fresh", 120, [100, 101, 102], 100, 0.0, 2),
        # 30 s before it is due: calls now would still count then, the reserve applies
        ("close", 310, [300], 100, 0.0, 1),
        ("close, full", 310, [300, 305], 100, 30.0, 0),
        # overdue (the critical run is late): reserve applies, slots free as calls expire
        ("overdue", 400, [350, 360], 100, 10.0, 0),
        # the window itself is full: wait for the oldest call to expire
        ("full", 100, [50, 60, 70, 80, 90], 0, 10.0, 0),
    ],
)
def test_the_reserve_applies_only_to_calls_that_would_meet_the_next_critical_refresh(
    case, now, times, last_critical, expected_wait, expected_free
):
    if case == "critical":
        assert decide(now, times, 5, WINDOW, Caller(), last_critical) == 0
        return
    assert decide(now, times, 5, WINDOW, SECONDARY, last_critical) == pytest.approx(expected_wait)
    assert free_slots(now, times, 5, WINDOW, SECONDARY, last_critical) == expected_free
