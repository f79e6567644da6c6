"""Waiting for a slot of the Polygon call budget, shared by every process and run of a deployment.

At most `limit` HTTP requests in any `window` seconds, counted in a store every process shares
(`redis_store`, `sql_store`, providing `BudgetStore`). `PolygonBudget` waits for a slot up to a
deadline, pauses everyone after a 429, and fails closed: no store, no slot. Why no library and
why the store's clock: docs/architecture.md, "Budget"."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from assets_pipeline.budget.fairness import CRITICAL_CALLER, Caller
from assets_pipeline.budget.interface import BudgetCongested, BudgetError, Refusal
from assets_pipeline.rules.quotes import iso_utc

#: Slack added to the window: a slot frees this long after the window has strictly passed. A slot
#: is taken just before its request is sent, and a request can be delayed on its way (connection
#: set-up, a busy CPU) while the next one is not; the server then sees the two closer together
#: than we did. Half a second covers such delays for under 1% of a 60 s window's throughput.
WINDOW_MARGIN_SECONDS = 0.5


#: How long a store keeps a refusal at all; readers decide how old is too old to trust.
REFUSAL_MEMORY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class BudgetStats:
    """What the status command and run metadata report."""

    limit: int
    window_seconds: float
    remaining: int
    reset_at: dt.datetime | None
    paused_until: dt.datetime | None
    total_calls: int
    total_waits: int
    backend: str

    def as_dict(self) -> dict[str, object]:
        """What `status` and `budget` print (times as ISO-8601 UTC)."""

        def iso(moment: dt.datetime | None) -> str | None:
            return iso_utc(moment) if moment else None

        return {
            "backend": self.backend,
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "remaining": self.remaining,
            "reset_at": iso(self.reset_at),
            "paused_until": iso(self.paused_until),
            "total_calls": self.total_calls,
            "total_waits": self.total_waits,
        }


class BudgetStore(Protocol):
    """The atomic primitives; times are epoch seconds on the store's clock."""

    backend: str

    def try_acquire(self, limit: int, window: float, caller: Caller) -> float:
        """Take a slot and return 0, or take nothing and return the seconds to wait (`decide`)."""
        ...

    def free_slots(self, limit: int, window: float, caller: Caller) -> int: ...

    def pause(self, seconds: float) -> None:
        """Grant no slot to anyone for `seconds` (after a 429)."""
        ...

    def record_wait(self) -> None: ...

    def stats(self, limit: int, window: float) -> BudgetStats: ...

    def refuse(self, feature: str, message: str) -> None:
        """Remember, for every process, that the plan refused `feature` (now, store clock)."""
        ...

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        """The remembered refusal of `feature`, unless it is older than `max_age` seconds."""
        ...


class PolygonBudget:
    """Waits for a slot up to a deadline, then fails with a clear error (the `CallBudget` the
    client uses, on any `BudgetStore`)."""

    def __init__(
        self,
        store: BudgetStore,
        limit: int,
        window_seconds: float,
        *,
        caller: Caller = CRITICAL_CALLER,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        provider: str = "Polygon",
    ) -> None:
        if limit < 1:
            raise ValueError(f"the budget needs at least 1 call per window, got {limit}")
        if window_seconds <= 0:
            raise ValueError(f"the budget window must be positive, got {window_seconds}")
        if caller.reserve >= limit:
            raise ValueError(
                f"reserving {caller.reserve} of {limit} calls per window for the critical tier"
                " leaves nothing for other callers"
            )
        self.store = store
        #: Whose calls it counts, as its messages name it.
        self.provider = provider
        self.limit = limit
        self.window_seconds = window_seconds
        self.caller = caller
        self._sleep = sleep
        self._monotonic = monotonic
        #: What this process has done; the store keeps the deployment-wide totals.
        self.calls = 0
        self.waits = 0
        self.waited_seconds = 0.0

    def acquire(
        self, max_wait_seconds: float, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Take one slot for one HTTP request; return how long we waited for it.

        `on_wait` hears, once per acquire, how long the first wait will be (for a log line).
        """
        started = self._monotonic()
        deadline = started + max_wait_seconds
        counted_wait = False
        while True:
            wait = self._try(self.store.try_acquire, self.limit, self.window_seconds, self.caller)
            if wait <= 0:
                self.calls += 1
                waited = self._monotonic() - started
                self.waited_seconds += waited
                return waited
            remaining = deadline - self._monotonic()
            if wait > remaining:
                # The next slot frees after our deadline: fail now rather than sleep in vain.
                reserve = self.caller.reserve
                reserved = f", {reserve} kept for critical" if reserve else ""
                raise BudgetCongested(
                    f"no {self.provider} call slot within {max_wait_seconds:g}s: the budget of"
                    f" {self.limit} calls per {self.window_seconds:g}s is in use{reserved}"
                    f" (next slot in {wait:.1f}s)"
                )
            if not counted_wait:
                counted_wait = True
                self.waits += 1
                self._try(self.store.record_wait)
                if on_wait is not None:
                    on_wait(wait)
            self._sleep(min(wait, max(remaining, 0.01)))

    def penalize(self) -> None:
        """Polygon said 429: everybody waits a full window."""
        self._try(self.store.pause, self.window_seconds + WINDOW_MARGIN_SECONDS)

    def stats(self) -> BudgetStats:
        return self._try(self.store.stats, self.limit, self.window_seconds)

    def free_slots(self) -> int:
        """Slots this caller could take now, without taking any."""
        return self._try(self.store.free_slots, self.limit, self.window_seconds, self.caller)

    def refuse(self, feature: str, message: str) -> None:
        """Remember that the plan refused `feature`, for every process sharing this budget."""
        self._try(self.store.refuse, feature, message[:500])

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        """What the plan refused and when, if it was learnt within `max_age` seconds."""
        return self._try(self.store.refusal, feature, max_age)

    def _try(self, call: Callable[..., object], *args: object) -> object:  # type: ignore[return]
        try:
            return call(*args)
        except BudgetError:
            raise
        except Exception as exc:
            raise BudgetError(
                f"the Polygon budget store ({self.store.backend}) is unreachable, so no call is"
                f" made: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def as_datetime(epoch: float | None) -> dt.datetime | None:
    """Epoch seconds (0 or None: none) as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


def window_stats(
    limit: int,
    window: float,
    now: float,
    used: int,
    oldest: float,
    paused: float,
    calls: float,
    waits: float,
    backend: str,
) -> BudgetStats:
    """The stats of a window holding `used` calls, the oldest at `oldest` (store clock)."""
    paused_until = paused if paused > now else None
    reset = oldest + window + WINDOW_MARGIN_SECONDS if used else None
    return BudgetStats(
        limit=limit,
        window_seconds=window,
        remaining=0 if paused_until else max(limit - used, 0),
        reset_at=as_datetime(max(filter(None, [reset, paused_until]), default=None)),
        paused_until=as_datetime(paused_until),
        total_calls=int(calls),
        total_waits=int(waits),
        backend=backend,
    )
