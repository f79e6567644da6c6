"""What the keyless public market-data providers (Kraken, Bitstamp) share: a base URL with
no key, one connection per request and the project's bounds on time, size, retries and the
budget wait, on the shared retrying client (`http/paid.py`). Each adds its own wire."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from assets_pipeline.budget.interface import CallBudget
from assets_pipeline.http.paid import PaidClient
from assets_pipeline.rules.quotes import Timeframe

#: The answers are small (a ticker of 20 pairs ~10 KB, years of day candles ~70 KB): far above,
#: refused; and the longest a whole answer may take.
DEFAULT_MAX_BODY_BYTES = 2_000_000
DEFAULT_TOTAL_TIMEOUT_SECONDS = 30.0
#: No key: public data asks for none.
HEADERS = {"Accept": "application/json", "User-Agent": "assets-pipeline"}


class KeylessProvider(PaidClient):
    """A provider asked without a key. Subclasses name their `default_base_url`."""

    default_base_url: ClassVar[str] = ""
    timeframe = Timeframe.REAL_TIME

    def __init__(
        self,
        budget: CallBudget,
        base_url: str | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_retries: int = 2,
        backoff_seconds: float = 1.0,
        max_budget_wait_seconds: float = 180.0,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        super().__init__(
            base_url or self.default_base_url,
            budget,
            total_timeout=total_timeout,
            max_body_bytes=max_body_bytes,
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_budget_wait_seconds=max_budget_wait_seconds,
            sleep=sleep,
            logger=logger or logging.getLogger(type(self).__module__),
        )
        self.timeouts = (connect_timeout, read_timeout)

    def close(self) -> None:
        """Nothing to release: every request has its own connection, closed after it."""
