"""Hostile answers, fuzzed: whatever Polygon (or something in its place) sends, the parser ends in
a quote that passes every hard rule or in one of the project's own errors with its reason. Zero
escapes (no RecursionError, OverflowError, TypeError ... reaching the refresh), zero bad rows, and
in a batch one broken ticker never takes the others with it.

The bodies start from the recorded responses and are mutated: fields removed, nulls, strings for
numbers, NaN and infinities, huge and deeply nested values, ancient and future times, truncated
JSON, HTML pages. The runs are derandomized, so CI sees the same thousands of cases every time.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import gzip
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import quote as url_quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.config.registry import AssetType, SymbolSpec, Tier
from assets_pipeline.http import paid as paid_module
from assets_pipeline.http.errors import PolygonError
from assets_pipeline.http.transport import Answer
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.polygon.parsing import (
    error_from_response,
    load_json,
    parse_aggs,
    parse_grouped,
    parse_v2_single,
    parse_v3_snapshot,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.plans import Plan
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


# --- raw answers, end to end through the client ------------------------------------------------
#
# Any status, any bytes: what the server sends is chosen by the fuzzer and goes through the whole
# client (`iter_fetch`: retries, the error's classification, the v3 page's rules, the day-bar
# fallback on a 403). Every symbol ends in a valid quote or one of our errors, whose text is
# short and safe to store and print; no log line carries the key, however it was echoed. The
# bulk runs with the transport replaced by the fuzzed answer (`bounded_get`); fewer cases go over
# real HTTP to a raw socket server (`bench/fuzz_http.py` runs 50,000 of those by hand).

KEY = "pk_Fuzz0123/+456789abcdef"
SPECS = [
    SymbolSpec("EURUSD", "C:EURUSD", AssetType.FOREX, Tier.CRITICAL, "EURUSD", "EUR", "USD", 5),
    SymbolSpec("BTCUSD", "X:BTCUSD", AssetType.CRYPTO, Tier.CRITICAL, "BTCUSD", "BTC", "USD", 2),
    SymbolSpec("SPX", "I:SPX", AssetType.INDEX, Tier.HIGH, "S&P 500", "SPX", "USD", 2),
]
BULK = settings(FUZZ, max_examples=3000)
statuses = st.one_of(
    st.sampled_from([200, 200, 200, 400, 401, 403, 404, 408, 429, 500, 502, 503]),
    st.integers(100, 999),
)
echoes = st.sampled_from(
    [
        KEY,
        KEY.upper(),
        KEY.lower(),
        KEY[:10],
        url_quote(KEY, safe=""),
        url_quote(KEY, safe="").lower(),
    ]
)
nasty_text = st.one_of(
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),
    st.sampled_from(["nul \x00", "lone \ud800", "\udfff", "esc \x1b[31m", "bell\x07", "\r\n"]),
    st.integers(0, 300_000).map(lambda n: "x" * n),  # huge, within the cap
    echoes.map(lambda key: f"Unknown API Key {key}"),
)


@st.composite
def error_json(draw: st.DrawFn) -> str:
    """A Polygon-shaped error body, or one inside a 200, saying anything at all."""
    body = {"status": draw(st.one_of(nasty_text, hostile_values))}
    body[draw(st.sampled_from(["error", "message"]))] = draw(st.one_of(nasty_text, hostile_values))
    return json.dumps(body, ensure_ascii=draw(st.booleans()))


@st.composite
def v3_pages(draw: st.DrawFn) -> str:
    """A v3 page whose items lose their ticker, repeat it, change its case, or carry a message."""
    items = copy.deepcopy(BODIES["v3 mixed"]["results"])
    for item in draw(st.lists(st.sampled_from(items), max_size=4)):
        change = draw(st.sampled_from(["drop", "twice", "lower", "message", "ticker"]))
        if change == "drop":
            item.pop("ticker", None)
        elif change == "twice":
            items.append(copy.deepcopy(item))
        elif change == "lower":
            item["ticker"] = str(item.get("ticker", "")).lower()
        elif change == "message":
            item.update(error=draw(nasty_text), message=draw(nasty_text))
        else:
            item["ticker"] = draw(st.one_of(nasty_text, hostile_values))
    body = {"status": "OK", "results": draw(st.sampled_from([items, [], None]))}
    return json.dumps(body)


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes no decoder takes


raw_bodies = st.one_of(
    st.sampled_from(sorted(BODIES)).flatmap(mutated).map(_encoded),
    st.sampled_from(sorted(BODIES)).flatmap(broken_text).map(_encoded),
    error_json().map(_encoded),
    v3_pages().map(_encoded),
    nasty_text.map(_encoded),
    st.binary(max_size=256),
    st.integers(1, 200_000).map(lambda n: b'{"status": "OK", "results": ' + b"[" * n),
)


class _Lines:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, text: str) -> None:
        self.lines.append(text)

    def warning(self, text: str) -> None:
        self.lines.append(text)

    info = error = debug = warning


class _FreeBudget:
    """A budget store with every slot free and nothing remembered."""

    backend = "memory"

    def try_acquire(self, limit, window, caller):
        return 0.0

    def free_slots(self, limit, window, caller):
        return limit

    def pause(self, seconds):
        pass

    def record_wait(self):
        pass

    def refuse(self, feature, message):
        pass

    def refusal(self, feature, max_age):
        return None


def fuzz_client(base_url: str, **options: Any) -> tuple[PolygonClient, _Lines]:
    lines = _Lines()
    budget = PolygonBudget(_FreeBudget(), limit=10**9, window_seconds=60)  # type: ignore[arg-type]
    client = PolygonClient(
        base_url, KEY, budget, max_retries=1, sleep=lambda _: None, logger=lines, **options
    )
    return client, lines


def settles(client: PolygonClient, lines: _Lines, mode: str) -> None:
    """Every symbol ends in a valid quote or one of our errors, its text short and safe."""
    result = FetchResult(mode=mode)
    with clock.frozen_at(NOW):
        outcomes = list(client.iter_fetch(SPECS, mode, result))  # type: ignore[arg-type]
    assert sorted(spec.symbol for spec, _ in outcomes) == sorted(s.symbol for s in SPECS)
    for _, answer in outcomes:
        if isinstance(answer, Quote):
            assert answer.last_price is not None and answer.last_price > 0
            assert (answer.bid is None) == (answer.ask is None)
            continue
        assert isinstance(answer, OURS), repr(answer)
        assert _safe(client.redact(str(answer)))
    assert all(_safe(line, limit=1500) for line in lines.lines)
    assert not any(KEY[:8].lower() in line.lower() for line in lines.lines)


def _safe(text: str, limit: int = 1000) -> bool:
    text.encode("utf-8")  # no lone surrogate
    return (
        bool(text) and len(text) < limit and not any(ord(c) < 32 and c not in "\t\n" for c in text)
    )


@BULK
@given(statuses, raw_bodies, st.sampled_from(["batch", "per_ticker"]), st.sampled_from(list(Plan)))
def test_any_answer_through_the_client_ends_in_a_quote_or_one_of_our_errors(
    status, body, mode, plan
):
    client, lines = fuzz_client("http://polygon.invalid", plan=plan, backoff_seconds=0)
    answer = Answer(status, body, "https://elsewhere.invalid/x" if 300 <= status < 400 else "", "")
    with mock.patch.object(paid_module, "bounded_get", lambda *_: answer):
        settles(client, lines, mode)


#: The same, kept small (no huge strings, no deep nesting: the cases above have those), so the
#: bulk runs tens of thousands of cases in seconds.
light_text = st.one_of(
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
    st.sampled_from(["nul \x00", "lone \ud800", "\udfff", "esc \x1b[31m", "bell\x07", "\r\n"]),
)
light_bodies = st.one_of(
    st.tuples(st.sampled_from(["error", "message"]), light_text, light_text).map(
        lambda t: json.dumps({"status": t[2], t[0]: t[1]}, ensure_ascii=False)
    ),
    light_text.map(lambda t: json.dumps({"status": "OK", "results": [{"ticker": t}]})),
    light_text,
    st.sampled_from(sorted(BODIES)).map(lambda n: json.dumps(BODIES[n])),
).map(_encoded) | st.binary(max_size=64)


PARSERS = {
    "v2": lambda body: {"_": parse_v2_single(body)},
    "v3": lambda body: parse_v3_snapshot(body)[0],
    "aggs": lambda body: {"_": parse_aggs(body)},
    "grouped": lambda body: {"_": parse_grouped(body)},
}


@settings(FUZZ, max_examples=2000)
@given(statuses, raw_bodies, st.sampled_from(sorted(PARSERS)))
def test_any_status_and_body_ends_in_what_the_parsers_promise(status, body, parser):
    holds_raw(status, body, parser)


@settings(FUZZ, max_examples=20_000)
@given(statuses, light_bodies, st.sampled_from(sorted(PARSERS)))
def test_the_bulk_of_small_answers_ends_in_what_the_parsers_promise(status, body, parser):
    holds_raw(status, body, parser)


@settings(FUZZ, max_examples=20_000)
@given(st.integers(100, 999), light_bodies, st.sampled_from(sorted(PARSERS)))
def test_the_bulk_of_small_answers_with_any_status_ends_in_what_the_parsers_promise(
    status, body, parser
):
    holds_raw(status, body, parser)


def holds_raw(status: int, body: bytes, parser: str) -> None:
    """The bulk, without the client around it: a non-200 is always one of our errors, with a
    short safe text; a 200 parses to quotes or one of our errors (its text short and safe)."""
    if status != 200:
        error = error_from_response(status, body, "C:EURUSD")
        assert isinstance(error, PolygonError) and _safe(str(error), limit=400)
        return
    try:
        results = PARSERS[parser](load_json(body))
    except OURS as exc:
        assert _safe(str(exc))
        return
    for answer in results.values():
        if isinstance(answer, Quote):
            validate_or_reject(answer)
        elif isinstance(answer, Exception):
            assert isinstance(answer, OURS) and _safe(str(answer))


def validate_or_reject(quote: Quote) -> None:
    try:
        validate_quote(quote, now=NOW)
    except QuoteRejected as exc:
        assert _safe(str(exc))


class RawServer:
    """A loopback TCP server that answers each request with `reply`, whatever bytes it is:
    status line, headers and body as the fuzzer chose them, then closes the connection."""

    def __init__(self) -> None:
        self.reply = b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2.0)
                try:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    conn.sendall(self.reply)
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the client hung up

    def close(self) -> None:
        self.sock.close()


status_lines = st.one_of(
    statuses.map(lambda s: f"HTTP/1.1 {s} Whatever\r\n".encode()),
    st.sampled_from(
        [b"HTTP/1.1 200\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 abc OK\r\n", b"garbage\r\n", b""]
    ),
)
header_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Content-Type: application/json",
                b"Content-Type: text/html",
                b"Content-Length: 0",
                b"Content-Length: -1",
                b"Content-Length: abc",
                b"Content-Length: 99999999",
                b"Transfer-Encoding: chunked",
                b"Content-Encoding: gzip",
                b"Connection: keep-alive",
            ]
        ),
        st.binary(max_size=40),
    ),
    max_size=4,
)


@st.composite
def raw_answers(draw: st.DrawFn) -> bytes:
    """A whole HTTP answer: a status line, headers and a body, each as the fuzzer likes."""
    body = draw(raw_bodies)
    headers = draw(header_lines)
    if draw(st.booleans()):
        headers.append(b"Content-Length: %d" % len(body))
    if b"Content-Encoding: gzip" in headers and draw(st.booleans()):
        body = gzip.compress(body)
    if b"Transfer-Encoding: chunked" in headers and draw(st.booleans()):
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return draw(status_lines) + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@contextlib.contextmanager
def raw_client() -> Iterator[tuple[RawServer, PolygonClient, _Lines]]:
    server = RawServer()
    client, lines = fuzz_client(
        server.url, plan="auto", read_timeout=1.0, total_timeout=2.0, max_body_bytes=1_000_000
    )
    try:
        yield server, client, lines
    finally:
        client.close()
        server.close()


HTTP_CASES = 1000


def test_any_raw_http_answer_ends_in_a_quote_or_one_of_our_errors():
    with raw_client() as (server, client, lines):

        @settings(FUZZ, max_examples=HTTP_CASES)
        @given(raw_answers(), st.sampled_from(["batch", "per_ticker"]))
        def over_http(reply, mode):
            server.reply = reply
            lines.lines.clear()
            settles(client, lines, mode)

        over_http()
