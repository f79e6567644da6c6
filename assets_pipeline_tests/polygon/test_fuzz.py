"""Hostile answers, fuzzed: whatever Polygon (or something in its place) sends, the parser ends in
a quote that passes every hard rule or in one of the project's own errors with its reason. Zero
escapes (no RecursionError, OverflowError, TypeError ... reaching the refresh), zero bad rows, and
in a batch one broken ticker never takes the others with it.

The bodies start from the recorded responses and are mutated: fields removed, nulls, strings for
numbers, NaN and infinities, huge and deeply nested values, ancient and future times, truncated
JSON, HTML pages. The runs are derandomized, so CI sees the same thousands of cases every time.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets_pipeline.polygon.errors import PolygonError
from assets_pipeline.polygon.parsing import load_json, parse_v2_single, parse_v3_snapshot
from assets_pipeline.rules.quotes import Quote, QuoteRejected, validate_quote
from assets_pipeline_tests.conftest import RESPONSES

NOW = dt.datetime(2020, 11, 24, 12, 0, tzinfo=dt.UTC)  # when the recorded bodies were current
FUZZ = settings(
    max_examples=1500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OURS = (PolygonError, QuoteRejected)


def recorded(name: str) -> Any:
    return json.loads((RESPONSES / name).read_text())


BODIES = {
    "v2 forex": recorded("v2_forex_ticker_C_EURUSD.json"),
    "v2 crypto": recorded("v2_crypto_ticker_X_BTCUSD.json"),
    "v3 mixed": recorded("v3_snapshot_mixed.json"),
}

hostile_values = st.one_of(
    st.none(),
    st.sampled_from(["", "1.08", "NaN", "null", "<html>", "0x10", "1e999"]),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0, -1, 9e18, 1e-320, True]),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, 1, -1, 10**30, 2**63, 253402300800000, 99999999999999999999]),  # times
    st.floats(allow_nan=True, allow_infinity=True),
    st.just([]),
    st.just({}),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=20),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += paths(child, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, name: str) -> str:
    """A recorded body with up to three fields replaced or removed, as JSON text (NaN allowed)."""
    body = copy.deepcopy(BODIES[name])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(body)[1:]))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(hostile_values)
    return json.dumps(body)


@st.composite
def broken_text(draw: st.DrawFn, name: str) -> str:
    """Not JSON, or JSON no parser should have to go down into."""
    text = json.dumps(BODIES[name])
    return draw(
        st.one_of(
            st.integers(0, len(text) - 1).map(lambda n: text[:n]),  # truncated
            st.just("<html><head><title>502 Bad Gateway</title></head></html>"),
            st.integers(1000, 200_000).map(lambda n: "[" * n + "]" * n),  # deep nesting
            st.just('{"status": "OK", "ticker": ' + "9" * 400 + "}"),  # a 400-digit number
            st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
        )
    )


def parse(name: str, text: str) -> list[Quote]:
    """What the client does with a body: load it, parse it, validate each quote."""
    body = load_json(text)
    if name.startswith("v2"):
        results: dict[str, Any] = {"_": parse_v2_single(body)}
    else:
        results, _ = parse_v3_snapshot(body)
    quotes = []
    for answer in results.values():
        if isinstance(answer, Quote):
            quotes.append(validate_quote(answer, now=NOW))
        else:
            assert isinstance(answer, OURS) and str(answer)  # a ticker's error, with a reason
    return quotes


def holds(name: str, text: str) -> None:
    try:
        quotes = parse(name, text)
    except OURS as exc:
        assert str(exc)  # every rejection says why
        return
    for quote in quotes:  # what is accepted is a quote the writer may store
        assert quote.last_price is not None and quote.last_price > 0
        assert (quote.bid is None) == (quote.ask is None)


@FUZZ
@given(st.sampled_from(sorted(BODIES)).flatmap(lambda n: mutated(n).map(lambda t: (n, t))))
def test_mutated_bodies_end_in_a_valid_quote_or_one_of_our_errors(case):
    holds(*case)


@FUZZ
@given(st.sampled_from(sorted(BODIES)).flatmap(lambda n: broken_text(n).map(lambda t: (n, t))))
def test_broken_text_ends_in_one_of_our_errors(case):
    holds(*case)


@FUZZ
@given(st.data())
def test_one_broken_ticker_in_a_batch_never_takes_the_others_with_it(data):
    body = copy.deepcopy(BODIES["v3 mixed"])
    good = {i["ticker"] for i in body["results"] if "error" not in i}
    victim = data.draw(st.sampled_from(range(len(body["results"]))))
    item = body["results"][victim]
    path = data.draw(st.sampled_from([p for p in paths(item)[1:] if p != ("ticker",)]))
    parent = item
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = data.draw(hostile_values)
    results, _ = parse_v3_snapshot(load_json(json.dumps(body)))
    survivors = {t for t, r in results.items() if isinstance(r, Quote)}
    assert good - {item["ticker"]} <= survivors  # every other ticker still has its quote
