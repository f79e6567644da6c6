"""The errors' former address: they live in `http/errors.py` now, below every vendor's client.
Kept so that the modules outside the clients which import them here keep working."""

from __future__ import annotations

from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    OutOfTime,
    PermanentError,
    PolygonError,
    RateLimited,
    RedirectRefused,
    RetryableError,
    TickerNotFound,
    classify_status,
)

__all__ = [
    "MalformedResponse",
    "NotEntitled",
    "OutOfTime",
    "PermanentError",
    "PolygonError",
    "RateLimited",
    "RedirectRefused",
    "RetryableError",
    "TickerNotFound",
    "classify_status",
]
