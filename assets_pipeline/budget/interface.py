"""What the HTTP client needs of the budget: a slot per request, a pause after a 429, and the
memory of what the plan refused. Pure types; the client imports nothing else of the budget."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class BudgetError(RuntimeError):
    """No slot could be had: the deadline passed, or the store is unreachable (fail closed)."""

    retryable = True


class BudgetCongested(BudgetError):
    """Every slot was taken until past the caller's deadline: busy, not broken. The symbol that
    asked did nothing wrong, so it is not blamed for it (see `refresh.py`)."""


@dataclass(frozen=True)
class Refusal:
    """Polygon refused a kind of request for this key (a 403: the plan does not include it)."""

    feature: str
    refused_at: dt.datetime
    message: str


class CallBudget(Protocol):
    """The shared budget as the client uses it (`limiter.PolygonBudget` is the one in use).
    Every method raises `BudgetError` when the store cannot be reached."""

    limit: int
    window_seconds: float
    #: What this process has waited for slots (for a refresh's report).
    waits: int
    waited_seconds: float

    def acquire(
        self, max_wait_seconds: float, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Take one slot for one request, waiting up to `max_wait_seconds` (`BudgetCongested`
        if none frees by then); return the seconds waited. `on_wait` hears the first wait."""
        ...

    def penalize(self) -> None:
        """Polygon said 429: every caller sharing the budget waits a full window."""
        ...

    def refuse(self, feature: str, message: str) -> None:
        """Remember, for every process, that the plan refused `feature`."""
        ...

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        """The remembered refusal of `feature`, unless it is older than `max_age` seconds."""
        ...
