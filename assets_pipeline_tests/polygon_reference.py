"""Parsers for the Polygon endpoints the client does not call: the v1 last quote and trade.

They live in the tests, not the package, because only the tests need them: they read the
recorded responses and the simulator's answers, to show that the simulator speaks the same
shapes as the real API. They are built on the package's own parsing helpers.
"""

from __future__ import annotations

from typing import Any

from assets_pipeline.polygon.parsing import (
    _mid,
    _number,
    _object,
    _require_ok,
    epoch_to_utc,
)
from assets_pipeline.rules.quotes import Quote

SOURCE_V1 = "polygon:v1-last"


def parse_v1_last_quote(body: Any) -> Quote:
    """`/v1/last_quote/currencies/{from}/{to}`: `symbol` is `AUD/USD`, `last.timestamp` ms."""
    body = _require_ok(body)
    ticker = "C:" + str(body.get("symbol", "")).replace("/", "")
    last = _object(body, "last")
    bid = _number(ticker, last, "bid", "bid (last.bid)")
    ask = _number(ticker, last, "ask", "ask (last.ask)")
    return Quote(
        ticker=ticker,
        data_time=epoch_to_utc(last.get("timestamp"), "last.timestamp"),
        source=SOURCE_V1,
        bid=bid,
        ask=ask,
        last_price=_mid(bid, ask),
    )


def parse_v1_last_crypto(body: Any) -> Quote:
    """`/v1/last/crypto/{from}/{to}`: `symbol` is `BTC-USD`, a trade with no bid or ask."""
    body = _require_ok(body)
    ticker = "X:" + str(body.get("symbol", "")).replace("-", "")
    last = _object(body, "last")
    return Quote(
        ticker=ticker,
        data_time=epoch_to_utc(last.get("timestamp"), "last.timestamp"),
        source=SOURCE_V1,
        last_price=_number(ticker, last, "price", "price (last.price)"),
    )
