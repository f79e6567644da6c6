"""The Polygon client over real HTTP against the simulator: modes, retries, error classes, the key."""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.redis_store import RedisBudgetStore
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import AssetType, SymbolSpec, Tier
from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    PermanentError,
    RateLimited,
    RetryableError,
    TickerNotFound,
)
from assets_pipeline.persistence.schema import api_refusals
from assets_pipeline.polygon.client import MULTI_TICKER_SNAPSHOT, FetchResult, PolygonClient
from assets_pipeline.rules.quotes import Timeframe
from assets_pipeline.simulator import Fault, PolygonSimulator
from assets_pipeline_tests.conftest import get_engine

SECRET = "sk-test-0123456789abcdef-SECRET"


@pytest.fixture
def budget(sqlite_url):
    return PolygonBudget(SqlBudgetStore(get_engine(sqlite_url)), limit=1000, window_seconds=60)


@pytest.fixture
def client(simulator, budget):
    client = PolygonClient(
        simulator.url, SECRET, budget, backoff_seconds=0.01, read_timeout=0.5, max_retries=2
    )
    yield client
    client.close()


def fetch_all(client, specs, mode):
    """A whole refresh's answers (the asset stores each as it comes; here they are collected)."""
    result = FetchResult(mode=mode)
    for _ in client.iter_fetch(specs, mode, result):
        pass
    return result


def spec(symbol, ticker, asset_type=AssetType.FOREX):
    return SymbolSpec(symbol, ticker, asset_type, Tier.CRITICAL, symbol, "A", "B", 5)


def api_requests(sim):
    return [r for r in sim.requests if not r.path.startswith("/_sim")]


def test_batch_mode_fetches_many_markets_in_one_call(client, simulator, registry):
    result = fetch_all(client, registry, "batch")
    assert sorted(result.quotes) == sorted(s.symbol for s in registry)
    assert result.errors == {} and result.api_calls == 1
    (request,) = api_requests(simulator)
    assert request.path == "/v3/snapshot" and request.query["limit"] == "250"
    btc, eur = result.quotes["BTCUSD"], result.quotes["EURUSD"]
    assert btc.bid is None and btc.ask is None and btc.last_price > 0
    assert eur.bid < eur.ask and eur.spread > 0


def test_per_ticker_mode_is_one_call_per_distinct_ticker(client, simulator, registry):
    result = fetch_all(client, registry, "per_ticker")
    assert len(result.quotes) == 9 and result.api_calls == 9
    paths = {r.path for r in api_requests(simulator)}
    assert "/v2/snapshot/locale/global/markets/crypto/tickers/X:ETHUSD" in paths
    assert "/v2/snapshot/locale/global/markets/forex/tickers/C:XAUUSD" in paths


def test_more_than_250_tickers_are_split_and_pages_followed(budget):
    with PolygonSimulator(host="127.0.0.1", port=0, page_size_cap=100) as sim:
        client = PolygonClient(sim.url, SECRET, budget)
        codes = ["USD", "EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "NZD", "XAU", "XAG"]
        tickers = [f"C:{a}{b}" for a in codes for b in codes if a != b]
        tickers += [f"X:{c}USD" for c in ("BTC", "ETH", "SOL", "LTC", "XRP", "DOGE")]
        specs = [spec(f"S{i}", t) for i, t in enumerate(tickers)]
        many = specs + [spec(f"D{i}", f"C:ZZ{i:04d}") for i in range(300 - len(specs))]
        result = fetch_all(client, many, "batch")
        v3 = [r for r in sim.requests if r.path == "/v3/snapshot"]
    assert len(result.quotes) == len(tickers)
    assert all(isinstance(e, TickerNotFound) for e in result.errors.values())
    assert len(result.errors) == 300 - len(tickers)
    # 300 tickers: two chunks (250 + 50); pages of at most 100 -> 3 + 1 requests
    assert len(v3) == 4 and result.api_calls == 4
    assert all("cursor" in r.query for r in v3 if "ticker.any_of" not in r.query)


def test_server_errors_and_broken_bodies_are_retried(client, simulator):
    simulator.add_fault(Fault("http_503", ticker="C:EURUSD", count=1))
    assert client.snapshot("C:EURUSD", AssetType.FOREX).ticker == "C:EURUSD"
    simulator.add_fault(Fault("malformed", ticker="C:EURUSD", count=1))
    assert client.snapshot("C:EURUSD", AssetType.FOREX).ticker == "C:EURUSD"
    # 503 then a good answer; a truncated 200 body then a good answer
    assert [r.status for r in api_requests(simulator)] == [503, 200, 200, 200]
    assert client.calls == 4  # every attempt is paid for


def test_a_timeout_is_retryable_and_gives_up_after_the_retries(client, simulator):
    simulator.add_fault(Fault("timeout", ticker="C:EURUSD", delay=1.5))
    with pytest.raises(RetryableError, match="did not answer"):
        client.snapshot("C:EURUSD", AssetType.FOREX)
    assert client.calls == 3


def test_malformed_body_after_all_retries_is_a_retryable_error(client, simulator):
    simulator.add_fault(Fault("malformed"))
    with pytest.raises(MalformedResponse, match="not valid JSON"):
        client.snapshot("C:EURUSD", AssetType.FOREX)


@pytest.mark.parametrize(
    ("fault", "ticker", "error", "text"),
    [
        (Fault("forbidden", ticker="C:EURUSD"), "C:EURUSD", NotEntitled, "403 NOT_AUTHORIZED"),
        (None, "C:ZZZUSD", TickerNotFound, "404 NOT_FOUND"),
        (None, "X:ETHUSDT", TickerNotFound, "Ticker not found"),
    ],
)
def test_permanent_errors_are_never_retried(client, simulator, fault, ticker, error, text):
    if fault:
        simulator.add_fault(fault)
    market = AssetType.CRYPTO if ticker.startswith("X:") else AssetType.FOREX
    with pytest.raises(error, match=text) as info:
        client.snapshot(ticker, market)
    assert not info.value.retryable
    assert len(api_requests(simulator)) == 1


def test_a_bad_key_is_permanent(simulator, budget):
    with PolygonSimulator(host="127.0.0.1", port=0, api_keys={"right"}) as sim:
        client = PolygonClient(sim.url, SECRET, budget)
        with pytest.raises(PermanentError, match="401 ERROR for C:EURUSD: Unknown API Key"):
            client.snapshot("C:EURUSD", AssetType.FOREX)
        assert len(sim.requests) == 1


def test_a_429_pauses_the_shared_budget_and_is_retried(client, simulator, budget):
    simulator.add_fault(Fault("rate_limited", count=1))
    other = PolygonBudget(budget.store, budget.limit, window_seconds=0.5)
    client.budget = other  # a short window so the pause is short
    quote = client.snapshot("C:EURUSD", AssetType.FOREX)
    assert quote.ticker == "C:EURUSD"
    rate_limited, retried = api_requests(simulator)
    assert (rate_limited.status, retried.status) == (429, 200)
    assert other.waits == 1 and budget.stats().total_waits == 1
    # by the simulator's log: no call while the pause lasted (a window after the 429)
    assert retried.at - rate_limited.at >= other.window_seconds


def test_a_429_that_persists_fails_as_rate_limited(client, simulator):
    simulator.add_fault(Fault("rate_limited"))
    client.budget = PolygonBudget(client.budget.store, 1000, window_seconds=0.1)
    with pytest.raises(RateLimited):
        client.snapshot("C:EURUSD", AssetType.FOREX)


def test_bad_quotes_fail_only_their_own_symbol(client, simulator):
    simulator.add_fault(Fault("crossed", ticker="C:EURUSD"))
    simulator.add_fault(Fault("future", ticker="C:GBPUSD"))
    simulator.add_fault(Fault("negative_price", ticker="X:BTCUSD"))
    specs = [
        spec("EURUSD", "C:EURUSD"),
        spec("GBPUSD", "C:GBPUSD"),
        spec("BTCUSD", "X:BTCUSD", AssetType.CRYPTO),
        spec("USDJPY", "C:USDJPY"),
    ]
    for mode in ("batch", "per_ticker"):
        result = fetch_all(client, specs, mode)
        assert sorted(result.quotes) == ["USDJPY"], mode
        assert "crossed quote" in str(result.errors["EURUSD"])
        assert "in the future" in str(result.errors["GBPUSD"])
        assert "must be positive" in str(result.errors["BTCUSD"])


def test_batch_403_falls_back_to_one_call_per_ticker(budget):
    with PolygonSimulator(host="127.0.0.1", port=0, plan="starter_no_multi") as sim:
        client = PolygonClient(sim.url, SECRET, budget)
        result = fetch_all(
            client, [spec("EURUSD", "C:EURUSD"), spec("GBPUSD", "C:GBPUSD")], "batch"
        )
    assert sorted(result.quotes) == ["EURUSD", "GBPUSD"]
    assert result.mode == "per_ticker" and result.api_calls == 3
    assert "falling back to one call per ticker" in result.notes[0]


@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_plans_refusal_of_batch_snapshots_is_learnt_once_for_every_process(
    store, sqlite_url, redis_client, redis_namespace
):
    # A plan without multi-ticker snapshots answers 403 to /v3/snapshot. The first refresh
    # learns it (1 call wasted) and stores it where every process sees it; later refreshes,
    # by new clients as in new run processes, go straight to one call per ticker.
    def new_client(url):
        backend = (
            SqlBudgetStore(get_engine(sqlite_url))
            if store == "database"
            else RedisBudgetStore(redis_client, namespace=redis_namespace)
        )
        return PolygonClient(url, SECRET, PolygonBudget(backend, limit=1000, window_seconds=60))

    pair = [spec("EURUSD", "C:EURUSD"), spec("GBPUSD", "C:GBPUSD")]
    with PolygonSimulator(host="127.0.0.1", port=0, plan="starter_no_multi") as sim:
        first = fetch_all(new_client(sim.url), pair, "batch")
        second = fetch_all(new_client(sim.url), pair, "batch")
        refused = [r for r in api_requests(sim) if r.status == 403]
    assert first.api_calls == 3 and len(refused) == 1  # learnt once
    assert sorted(second.quotes) == ["EURUSD", "GBPUSD"] and second.api_calls == 2
    assert second.mode == "per_ticker" and "refused by this plan" in second.notes[0]


def test_a_learnt_refusal_is_asked_again_once_it_is_older_than_the_recheck(budget):
    pair = [spec("EURUSD", "C:EURUSD"), spec("GBPUSD", "C:GBPUSD")]
    with PolygonSimulator(host="127.0.0.1", port=0) as sim:  # a plan that now has batch
        budget.refuse(MULTI_TICKER_SNAPSHOT, "403 NOT_AUTHORIZED")
        fresh = PolygonClient(sim.url, SECRET, budget, recheck_seconds=3600)
        assert fetch_all(fresh, pair, "batch").api_calls == 2  # trusted: per ticker
        # the refusal was learnt 2 hours ago by the store's clock: past the recheck
        with budget.store._engine.begin() as conn:
            conn.execute(
                sa.update(api_refusals).values(refused_at=api_refusals.c.refused_at - 7200)
            )
        again = fetch_all(fresh, pair, "batch")
    assert again.api_calls == 1 and again.mode == "batch" and again.notes == []


def test_the_key_travels_only_in_the_authorization_header(client, simulator, caplog):
    caplog.set_level(logging.DEBUG)
    simulator.add_fault(Fault("http_500", count=1))
    simulator.add_fault(Fault("forbidden", ticker="C:GBPUSD"))
    client.snapshot("C:EURUSD", AssetType.FOREX)
    with pytest.raises(NotEntitled) as info:
        client.snapshot("C:GBPUSD", AssetType.FOREX)
    for request in simulator.requests:
        assert SECRET not in request.path and SECRET not in str(request.query)
        assert request.key_id  # the simulator saw a key, in the header
    assert SECRET not in caplog.text and SECRET not in str(info.value)


def test_a_key_echoed_back_by_a_server_is_redacted(budget):
    # A misbehaving proxy that echoes the key in its error page must not leak it further.
    import http.server
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"bad gateway for {self.headers['Authorization']}".encode()
            self.send_response(400)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PolygonClient(f"http://127.0.0.1:{server.server_port}", SECRET, budget)
        with pytest.raises(PermanentError) as info:
            client.snapshot("C:EURUSD", AssetType.FOREX)
    finally:
        server.shutdown()
    assert SECRET not in str(info.value) and "***" in str(info.value)


def reveals(text: str, key: str) -> bool:
    """Does `text` give away `key`, or 10 characters of it, read as it is or decoded the ways a
    server may have encoded it (URL, hex, base64 at any alignment)?"""
    import binascii
    from urllib.parse import unquote

    readings = {text, unquote(text)}
    for token in text.replace("***", " ").split():
        for drop in range(4):
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                chunk = token[drop:]
                try:
                    readings.add(decode(chunk + "=" * (-len(chunk) % 4)).decode("latin-1"))
                except (binascii.Error, ValueError):
                    pass
        try:
            readings.add(bytes.fromhex(token).decode("latin-1"))
        except ValueError:
            pass
    pieces = {key[i : i + 10].lower() for i in range(len(key) - 9)}
    return any(piece in reading.lower() for reading in readings for piece in pieces)


@pytest.mark.parametrize(
    "echo",
    [
        str.upper,
        str.lower,
        lambda key: key[:10],  # cut short
        lambda key: quote(key, safe=""),  # URL-encoded
        lambda key: quote(key.upper(), safe="").lower(),
        # encoded forms a hostile server echoed, found by an independent attacker
        lambda key: base64.b64encode(key.encode()).decode(),
        lambda key: "Basic " + base64.b64encode(f"user:{key}".encode()).decode(),
        lambda key: base64.urlsafe_b64encode(f"xy{key}".encode()).decode(),
        lambda key: "".join(f"%{b:02X}" for b in key.encode()),  # every character escaped
        lambda key: key.encode().hex(),
    ],
)
def test_a_key_echoed_back_changed_or_cut_is_redacted(budget, echo):
    import http.server
    import threading

    key = "pk/Live+7f3a9c2e41b8d6=="  # characters that URL-encoding changes

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            said = echo(self.headers["Authorization"].removeprefix("Bearer "))
            body = json.dumps({"status": "ERROR", "error": f"Unknown API Key {said}"}).encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PolygonClient(f"http://127.0.0.1:{server.server_port}", key, budget)
        with pytest.raises(PermanentError) as info:
            client.snapshot("C:EURUSD", AssetType.FOREX)
    finally:
        server.shutdown()
    text = str(info.value)
    # the echo is masked: neither the key nor its echoed form is left, nor a piece of either
    # long enough to matter (an encoded form may keep the few characters its neighbours set)
    assert "Unknown API Key " in text and "***" in text, text
    assert not reveals(text, key), text
    redacted = client.redact(f"x {echo(key)} y")
    assert redacted.startswith("x ") and "***" in redacted and echo(key) not in redacted


# --- answers that never end, or never stop growing ------------------------------------------


class Hostile:
    """A local HTTP server that answers every GET with `respond(handler)`, for at most
    `BOUND` seconds in all (so a client without limits fails the test instead of hanging it)."""

    BOUND = 20.0

    def __init__(self, respond):
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                try:
                    respond(self)
                except OSError:
                    pass  # the client hung up: what a bounded client does

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        outer.started = time.monotonic()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def trickle(handler):
    # headers at once, then one byte every 0.2 s: each wait is short, the answer never ends
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    deadline = time.monotonic() + Hostile.BOUND
    while time.monotonic() < deadline:
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.2)


def endless(handler):
    # 50 MB of a JSON document that never closes, as fast as the client reads
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(50_000_000))
    handler.end_headers()
    handler.wfile.write(b'{"status": "OK", "results": [')
    for _ in range(50_000):
        handler.wfile.write(b"1," * 500)


@functools.cache
def gzip_bomb_body() -> bytes:
    """~100 KB on the wire that expands to 100 MB (made once: compressing it takes seconds on a
    loaded machine, which must not count against the client's deadline)."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    return b"".join(packer.compress(b" " * 1_000_000) for _ in range(100)) + packer.flush()


def gzip_bomb(handler):
    body = gzip_bomb_body()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize(
    ("respond", "deadline", "error", "message"),
    [
        # a server that keeps the connection alive with a byte at a time: the deadline ends it
        (trickle, 1.0, "AnswerTooSlow", "took longer than 1s"),
        # a body far larger than any Polygon page: the size cap ends it (whatever the load, long
        # before a deadline that is not what this case is about)
        (endless, 15.0, "AnswerTooLarge", "larger than 1,000,000 bytes"),
        # a small gzip body that decompresses to 100 MB: counted as decoded
        (gzip_bomb, 15.0, "AnswerTooLarge", "larger than 1,000,000 bytes"),
    ],
)
def test_every_request_is_bounded_in_time_and_size_and_fails_as_retryable(
    budget, respond, deadline, error, message
):
    if respond is gzip_bomb:
        gzip_bomb_body()  # made before the client's clock starts
    server = Hostile(respond)
    try:
        client = PolygonClient(
            server.url,
            SECRET,
            budget,
            read_timeout=5,
            total_timeout=deadline,
            max_body_bytes=1_000_000,
            max_retries=0,
        )
        with pytest.raises(RetryableError) as info:
            client.snapshot("C:EURUSD", AssetType.FOREX)
    finally:
        server.close()
    assert type(info.value).__name__ == error and info.value.retryable
    assert message in str(info.value) and info.value.ticker == "C:EURUSD"


# --- one ticker's 403 is its own (issue 17, 6b) ---------------------------------------------


FOREX_TRIO = [spec("GBPUSD", "C:GBPUSD"), spec("EURUSD", "C:EURUSD"), spec("USDJPY", "C:USDJPY")]


def test_one_tickers_403_after_its_market_answered_is_that_tickers_error(client, simulator, budget):
    # The report: one 403 on C:EURUSD's own snapshot made the whole forex market take
    # yesterday's close for 6 hours, while its other snapshots worked. GBPUSD, asked before it,
    # was answered: the market is served, so the 403 is EURUSD's own.
    from assets_pipeline.polygon.client import snapshot_feature

    simulator.add_fault(Fault("forbidden", ticker="C:EURUSD"))
    first = fetch_all(client, FOREX_TRIO, "per_ticker")
    assert isinstance(first.errors["EURUSD"], NotEntitled)
    assert sorted(first.quotes) == ["GBPUSD", "USDJPY"] and first.api_calls == 3
    assert budget.refusal(snapshot_feature(AssetType.FOREX), 3600) is None  # nothing learnt
    assert not any("not available on this plan" in note for note in first.notes)
    # the next refresh asks every snapshot again: the market was not taken for refused
    again = fetch_all(client, FOREX_TRIO, "per_ticker")
    assert sorted(again.quotes) == ["GBPUSD", "USDJPY"] and again.api_calls == 3


def test_a_refused_item_inside_a_batch_answer_is_that_tickers_own(client, simulator, budget):
    # The batch endpoint answered; one item says NOT_AUTHORIZED: the ticker's, not the market's
    from assets_pipeline.polygon.client import snapshot_feature

    simulator.add_fault(Fault("forbidden", ticker="C:EURUSD"))
    result = fetch_all(client, FOREX_TRIO, "batch")
    assert budget.refusal(snapshot_feature(AssetType.FOREX), 3600) is None
    assert sorted(result.quotes) == ["GBPUSD", "USDJPY"]


def test_a_market_is_learnt_refused_only_when_its_own_endpoint_refuses_too(
    client, simulator, budget
):
    # The vendor's 403 is a plan's refusal, and a plan covers a market's snapshots whole; but
    # one ticker's 403 is only that ticker's. The market's own endpoint, asked for the tickers
    # not asked yet, settles it: refused too, so learnt for every process (two calls, once a
    # recheck period), and every ticker of it takes its day bar.
    from assets_pipeline.polygon.client import snapshot_feature

    for ticker in ("C:EURUSD", "C:GBPUSD", "C:USDJPY"):  # their snapshots refused, not bars
        simulator.add_fault(Fault("forbidden", ticker=ticker, path_prefix="/v2/snapshot"))
    result = fetch_all(client, FOREX_TRIO, "per_ticker")
    refusal = budget.refusal(snapshot_feature(AssetType.FOREX), 3600)
    assert refusal is not None and "C:GBPUSD" in refusal.message
    assert sorted(result.quotes) == ["EURUSD", "GBPUSD", "USDJPY"], result.errors
    assert all(q.timeframe is Timeframe.END_OF_DAY for q in result.quotes.values())
    snapshot_calls = [r for r in api_requests(simulator) if "/snapshot/" in r.path]
    assert [r.path.rsplit("/", 1)[-1] for r in snapshot_calls] == ["C:GBPUSD", "tickers"]
    assert snapshot_calls[1].query == {"tickers": "C:EURUSD,C:USDJPY"}
    assert any("remembering it for every process" in note for note in result.notes)


def test_a_markets_first_ticker_refused_alone_is_that_tickers_error(client, simulator, budget):
    # The report: a single 403 on C:EURUSD, the market's first ticker asked, made XAUUSD and
    # EURUSD take yesterday's close for 6 hours. The market's endpoint answers the others:
    # nothing is learnt, they are live, and they cost one call between them.
    from assets_pipeline.polygon.client import snapshot_feature

    simulator.add_fault(Fault("forbidden", ticker="C:EURUSD", path_prefix="/v2/snapshot"))
    trio = [FOREX_TRIO[1], FOREX_TRIO[0], FOREX_TRIO[2]]  # EURUSD asked first
    result = fetch_all(client, trio, "per_ticker")
    assert budget.refusal(snapshot_feature(AssetType.FOREX), 3600) is None
    assert isinstance(result.errors["EURUSD"], NotEntitled)
    assert sorted(result.quotes) == ["GBPUSD", "USDJPY"]
    assert all(q.timeframe is Timeframe.REAL_TIME for q in result.quotes.values())
    assert result.api_calls == 2  # EURUSD's own, then the market's for the other two
    assert not any("not available on this plan" in note for note in result.notes)


def test_a_lone_tickers_403_is_put_to_its_market_through_a_reference_ticker(
    client, simulator, budget
):
    # The attack: a tier refresh with one forex symbol, its own snapshot refused. No other
    # ticker of the market is at hand, so the market's endpoint is asked for one the vendor
    # documents (C:EURUSD): it answers, so nothing is learnt and the 403 is XAUUSD's own.
    from assets_pipeline.polygon.client import snapshot_feature

    single = "/v2/snapshot/locale/global/markets/forex/tickers/C:XAUUSD"
    simulator.add_fault(Fault("forbidden", ticker="C:XAUUSD", path_prefix=single))
    result = fetch_all(client, [spec("XAUUSD", "C:XAUUSD")], "per_ticker")
    assert budget.refusal(snapshot_feature(AssetType.FOREX), 3600) is None
    assert isinstance(result.errors["XAUUSD"], NotEntitled) and result.api_calls == 2
    market = api_requests(simulator)[-1]
    assert market.path.endswith("/forex/tickers") and market.query == {"tickers": "C:EURUSD"}


def test_two_tickers_refused_one_by_one_do_not_make_a_market_refused(client, simulator, budget):
    # The attack: the batch endpoint and XAUUSD's and EURUSD's own snapshots refused, the
    # market's endpoint serving. The market stays live: EURUSD and GBPUSD come from its
    # endpoint, one call between them; only XAUUSD fails.
    from assets_pipeline.polygon.client import snapshot_feature

    simulator.add_fault(Fault("forbidden", path_prefix="/v3/snapshot"))
    for ticker in ("C:XAUUSD", "C:EURUSD"):
        own = f"/v2/snapshot/locale/global/markets/forex/tickers/{ticker}"
        simulator.add_fault(Fault("forbidden", ticker=ticker, path_prefix=own))
    three = [spec("XAUUSD", "C:XAUUSD"), spec("EURUSD", "C:EURUSD"), spec("GBPUSD", "C:GBPUSD")]
    result = fetch_all(client, three, "batch")
    assert budget.refusal(snapshot_feature(AssetType.FOREX), 3600) is None
    assert sorted(result.quotes) == ["EURUSD", "GBPUSD"] and list(result.errors) == ["XAUUSD"]
    assert all(q.timeframe is Timeframe.REAL_TIME for q in result.quotes.values())
    assert result.api_calls == 3  # the batch, XAUUSD's own, the market's for the other two


# --- a refresh has a deadline of its own (the attack: 9 tickers x 93 s each) -------------------


def test_past_its_deadline_a_refresh_asks_nothing_and_every_symbol_says_why(client, simulator):
    from assets_pipeline.http.errors import OutOfTime

    client.deadline = time.monotonic() - 1  # `stop_by` ran out
    result = fetch_all(client, FOREX_TRIO, "per_ticker")
    assert result.api_calls == 0 and api_requests(simulator) == []
    assert sorted(result.errors) == ["EURUSD", "GBPUSD", "USDJPY"]
    assert all(isinstance(e, OutOfTime) and e.retryable for e in result.errors.values())
    assert "deadline passed" in str(result.errors["EURUSD"])


def test_a_server_that_never_answers_is_cut_off_at_the_refresh_deadline(budget):
    # per request the client would wait 30 s, with retries; the refresh's deadline cuts that
    # short, and the tickers after it are not asked at all
    def silent(handler):
        time.sleep(Hostile.BOUND)

    server = Hostile(silent)
    try:
        client = PolygonClient(server.url, SECRET, budget, read_timeout=30, max_retries=2)
        client.stop_by(0.5)
        result = fetch_all(client, FOREX_TRIO, "per_ticker")
    finally:
        server.close()
    assert result.api_calls <= 1 and not result.quotes
    assert sorted(result.errors) == ["EURUSD", "GBPUSD", "USDJPY"]
    assert all(e.retryable for e in result.errors.values())
