"""What every vendor's client does around one request, written once: a budget slot before each
attempt, retries of what is retryable (with backoff), the budget paused on a rate limit, never a
retry of a permanent error (400, 401, 403, 404), every attempt counted, no redirect followed,
nothing asked after the refresh's deadline. `PaidClient` is the base of Polygon's, Kraken's and
OANDA's clients: each reads its own answers. Why: a budget of a few calls a minute is shared."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from assets_pipeline.budget.interface import BudgetError, CallBudget
from assets_pipeline.http.errors import (
    OutOfTime,
    PolygonError,
    RateLimited,
    RedirectRefused,
    RetryableError,
)
from assets_pipeline.http.transport import Answer, NoAnswer, Origin, bounded_get, origin_of

T = TypeVar("T")
E = TypeVar("E", bound=PolygonError)

#: The longest pause between two attempts, however many came before.
MAX_BACKOFF_SECONDS = 30.0


class PaidClient:
    """A client whose every HTTP attempt is paid from a shared budget before it is sent. A
    subclass names its `vendor` (for messages) and reads its answers (`_paid_get` hands back
    every answer that is not a redirect); `redact` removes its secret from what leaves it."""

    #: The vendor's name in messages and logs.
    vendor = "the vendor"

    def __init__(
        self,
        base_url: str,
        budget: CallBudget,
        *,
        total_timeout: float,
        max_body_bytes: int,
        max_retries: int,
        backoff_seconds: float,
        max_budget_wait_seconds: float,
        sleep: Callable[[float], None],
        logger: logging.Logger | Any,
    ) -> None:
        #: Where every request goes: the base URL's scheme, host and port (and path, if any).
        self.origin = Origin.parse(base_url)
        self.budget = budget
        self.total_timeout = total_timeout
        self.max_body_bytes = max_body_bytes
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_budget_wait_seconds = max_budget_wait_seconds
        self._sleep = sleep
        self.log = logger
        #: HTTP attempts made by this client (each page, chunk and retry counts).
        self.calls = 0
        #: When the refresh must stop asking (`time.monotonic()`), if it has a deadline.
        self.deadline: float | None = None
        #: The origin the last answer came from (always `origin`: nothing else is asked).
        self.answered_by: str | None = None

    def redact(self, text: str) -> str:
        """`text` as it may leave the client; a client holding a secret removes it here."""
        return text

    def stop_by(self, seconds: float) -> None:
        """Ask nothing after `seconds` from now: a request still waiting for a slot or an
        answer then is cut off, so the refresh settles every symbol before its run's limit."""
        self.deadline = time.monotonic() + seconds

    def _retrying(self, path: str, ticker: str | None, attempt: Callable[[], T]) -> T:
        """`attempt()`'s answer, trying a retryable error again up to `max_retries` times: after
        a backoff, or after a rate limit (which pauses every caller of the budget) at once, the
        budget's own pause being the wait. The deadline passed is never tried again; a retry
        that gets no budget slot ends in the error it was retrying (the vendor's), not ours."""
        tries = 0
        failed: RetryableError | None = None
        while True:
            self._in_time(path, ticker)
            try:
                return attempt()
            except BudgetError:
                if failed is not None:  # no slot for a retry: what failed is the vendor's answer
                    raise failed from None
                raise
            except RetryableError as exc:
                failed = exc
                if isinstance(exc, RateLimited):
                    self.budget.penalize()
                if tries >= self.max_retries or isinstance(exc, OutOfTime):
                    raise
                tries += 1
                delay = 0.0 if isinstance(exc, RateLimited) else self._backoff(tries)
                self.log.warning(
                    self.redact(
                        f"{self.vendor} {path}: {exc}; retry {tries} of {self.max_retries}"
                        + (f" in {delay:.1f}s" if delay else " once the budget allows")
                    )
                )
                if delay:
                    self._sleep(delay)

    def _paid_get(
        self,
        target: str,
        ticker: str | None,
        headers: Mapping[str, str],
        timeouts: tuple[float, float],
    ) -> Answer:
        """One attempt: a slot of the budget, then one bounded GET of `target` at the origin.
        Too slow, too large or broken off is this attempt's retryable error; a 3xx is refused,
        never followed; any other answer is handed back for the vendor's reading."""
        self.budget.acquire(self._left(self.max_budget_wait_seconds), on_wait=self._log_wait)
        path = target.partition("?")[0]
        self._in_time(path, ticker)  # the wait for a slot may have used up the time
        self.calls += 1
        try:
            answer = bounded_get(
                self.origin,
                target,
                headers,
                timeouts,
                self._left(self.total_timeout),
                self.max_body_bytes,
            )
        except RetryableError as exc:  # too slow, too large, no answer, broken off: this one only
            message = (
                f"{self.vendor} did not answer {path} in time (one wait outlasted its timeout)"
                if isinstance(exc, NoAnswer)
                else f"{self.vendor} {path} at {self.origin}: {exc}"
            )
            raise type(exc)(self.redact(message), ticker=ticker) from None
        self.answered_by = answer.origin
        if 300 <= answer.status < 400:
            where = origin_of(answer.location, self.origin)
            text = (
                f"{self.vendor} answered a redirect to {where}: refused ({answer.status} for"
                f" {path})"
            )
            raise RedirectRefused(self.redact(text), status=answer.status, ticker=ticker)
        return answer

    def _redacted(self, error: E) -> E:
        """`error` with the secret removed from its message."""
        error.args = tuple(self.redact(str(arg)) for arg in error.args)
        return error

    def _left(self, wanted: float) -> float:
        """`wanted` seconds, or what is left before the deadline if that is less."""
        if self.deadline is None:
            return wanted
        return max(0.0, min(wanted, self.deadline - time.monotonic()))

    def _in_time(self, path: str, ticker: str | None) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise OutOfTime(
                f"the refresh's deadline passed before {self.vendor} {path} was asked",
                ticker=ticker,
            )

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)

    def _log_wait(self, seconds: float) -> None:
        self.log.info(
            f"waiting {seconds:.1f}s for a slot of the {self.vendor} budget ({self.budget.limit}"
            f" calls per {self.budget.window_seconds:g}s, shared by every run)"
        )
