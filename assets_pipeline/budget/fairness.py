"""How the budget is shared between the critical tier and the rest: one rule, pure, no I/O.

`decide` grants a slot or says how long to wait; `free_slots` is what the drain sensor plans with.
A non-critical call leaves `reserve` slots for the next critical refresh, but only if it would
still count when that refresh is due. `sql_store.py` calls it and `redis_store.py` runs it in Lua,
to the same answers. Why it is so: docs/design/budget-fairness.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who asks for a slot. `critical_gap`: seconds from one critical refresh to the earliest
    the next may come (0 = unknown, so the reserve always applies)."""

    critical: bool = True
    reserve: int = 0
    critical_gap: float = 0.0


CRITICAL_CALLER = Caller()


#: A critical refresh makes its calls in a burst; for this long after any critical call (or half
#: the gap, if shorter) the refresh may still need slots, so the reserve applies in full.
CRITICAL_BURST_SECONDS = 15.0


def _critical_due(now: float, last_critical_at: float, gap: float) -> float:
    """When the next critical refresh may come: never earlier than now (overdue = any moment),
    and now while the last one may still be making its calls."""
    if not last_critical_at or not gap:
        return now
    if now - last_critical_at < min(CRITICAL_BURST_SECONDS, gap / 2):
        return now
    return max(now, last_critical_at + gap)


def _protected(
    now: float, times: list[float], window: float, caller: Caller, last_critical_at: float
) -> tuple[float, list[float]] | None:
    """For a non-critical caller whose call would still be in the window when the next critical
    refresh is due: (when it is due, the calls that will still count then). Else None."""
    if caller.critical or caller.reserve <= 0:
        return None
    due = _critical_due(now, last_critical_at, caller.critical_gap)
    if now + window <= due:
        return None  # this call expires before the next critical refresh needs its slots
    return due, [t for t in times if t > due - window]


def decide(
    now: float,
    times: list[float],
    limit: int,
    window: float,
    caller: Caller,
    last_critical_at: float = 0.0,
) -> float:
    """0 to grant a slot, else the seconds to wait. `times`: the calls in the window, sorted."""
    used = len(times)
    if used >= limit:
        return max(times[used - limit] + window - now, 0.001)
    reserved = _protected(now, times, window, caller, last_critical_at)
    if reserved is None:
        return 0.0
    due, protected = reserved
    usable = limit - caller.reserve
    if len(protected) < usable:
        return 0.0
    if due > now:
        return due - now  # the picture changes when the critical refresh is due
    return max(protected[len(protected) - usable] + window - now, 0.001)


def free_slots(
    now: float,
    times: list[float],
    limit: int,
    window: float,
    caller: Caller,
    last_critical_at: float = 0.0,
) -> int:
    """How many slots `caller` could take right now (what the drain sensor plans with)."""
    allowed = limit - len(times)
    reserved = _protected(now, times, window, caller, last_critical_at)
    if reserved is not None:
        allowed = min(allowed, limit - caller.reserve - len(reserved[1]))
    return max(0, allowed)


def critical_gap(direct_cadences: Sequence[float]) -> float:
    """The earliest the next critical refresh may come after the last: the shortest direct
    cadence less a slack for late runs (20%, at least 10 s, at most 60 s)."""
    if not direct_cadences:
        return 0.0
    every = min(direct_cadences)
    return max(every - min(max(0.2 * every, 10.0), 60.0), 0.0)


def secondary_caller(reserve: int, direct_cadences: Sequence[float]) -> Caller:
    """How non-critical runs (the queue, manual refreshes, backfills) ask the budget: leaving
    `reserve` calls (one refresh of the direct tiers) for the critical tier."""
    return Caller(critical=False, reserve=reserve, critical_gap=critical_gap(direct_cadences))
