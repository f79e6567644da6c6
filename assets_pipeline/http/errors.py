"""How a vendor's call (Polygon, Kraken, OANDA) can fail, sorted by what to do about it.

The split matters for the budget: a retryable error (429, 5xx, a timeout, a broken body) may be
tried again, a permanent one (400, 401, 403, 404) never is, because repeating it only burns calls
from a budget of five a minute.
"""

from __future__ import annotations


class PolygonError(Exception):
    """A Polygon request or answer we could not use. Messages never contain the API key."""

    retryable: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, ticker: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.ticker = ticker


class RetryableError(PolygonError):
    """Worth another attempt later: rate limited, server trouble, network trouble, a broken body."""

    retryable = True


class PermanentError(PolygonError):
    """Will fail the same way again: bad request, bad key, plan not entitled, unknown ticker."""

    retryable = False


class RateLimited(RetryableError):
    """HTTP 429: the key's budget at Polygon is spent; every caller must pause for a window."""


class MalformedResponse(RetryableError):
    """The body was not the JSON we expected (a proxy page, a truncated answer)."""


class OutOfTime(RetryableError):
    """The refresh's own deadline passed: this request was not sent (or was cut off)."""


class NotEntitled(PermanentError):
    """HTTP 403 NOT_AUTHORIZED: the plan does not include this data."""


class RedirectRefused(PermanentError):
    """HTTP 3xx: Polygon's answers are never redirected; the redirect is not followed."""


class TickerNotFound(PermanentError):
    """HTTP 404 or a NOT_FOUND item: Polygon does not know this ticker."""


def classify_status(status: int) -> type[PolygonError]:
    """The error class for an HTTP status, before looking at the body."""
    if status == 429:
        return RateLimited
    if status == 403:
        return NotEntitled
    if status == 404:
        return TickerNotFound
    if status >= 500 or status in (408, 425):
        return RetryableError
    return PermanentError
