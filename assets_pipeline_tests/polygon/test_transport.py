"""What a hostile server cannot make the client do (issue 17): send the key to another host,
follow a redirect, page for ever, or hold a request past its deadline.

Origins: a recording server on loopback answers every request and records its Host and
Authorization headers; a second server, on another port, stands where an escaped request would
land and must receive nothing. Deadlines: raw-socket servers (a thread per connection, no HTTP
framework) misbehave at each stage of an answer. Every request there has `total_timeout` 1 s;
the bound asserted is 15 s (generous, for a loaded machine), and the server must see the
client close the connection.
"""

from __future__ import annotations

import http.server
import itertools
import json
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from assets_pipeline.budget.limiter import PolygonBudget
from assets_pipeline.budget.sql_store import SqlBudgetStore
from assets_pipeline.config.registry import AssetType
from assets_pipeline.http.errors import MalformedResponse, RedirectRefused
from assets_pipeline.http.transport import AnswerTooSlow, Origin, api_target, bounded_get
from assets_pipeline.polygon.client import PolygonClient
from assets_pipeline.polygon.ranges import range_bars
from assets_pipeline_tests.conftest import get_engine
from assets_pipeline_tests.polygon.test_client import SECRET, fetch_all, spec

#: How long a test server misbehaves at most, so a client without limits fails, not hangs.
BOUND = 20.0
#: The total timeout the deadline tests give, and the bound they assert (seconds).
TOTAL_TIMEOUT = 1.0
RETURNS_WITHIN = 15.0
PAIRS = ["C:EURUSD", "C:GBPUSD", "C:USDJPY"]


@pytest.fixture
def budget(sqlite_url):
    return PolygonBudget(SqlBudgetStore(get_engine(sqlite_url)), limit=1000, window_seconds=60)


# --- servers --------------------------------------------------------------------------------


class Recorder:
    """An HTTP server on loopback that records (path with query, Host, Authorization) of every
    request and answers each with `answer(path_with_query) -> (status, headers, body)`."""

    def __init__(self, answer: Callable[[str], tuple[int, dict, bytes]], port: int = 0):
        self.requests: list[tuple[str, str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append(
                    (self.path, self.headers["Host"], self.headers["Authorization"])
                )
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere():
    """The server where an escaped request would land: it must receive nothing."""
    server = Recorder(lambda path: (200, {}, b"{}"))
    yield server
    server.close()
    assert server.requests == [], "a request left the configured origin"


@pytest.fixture(scope="module")
def items():
    """Real `/v3/snapshot` items for `PAIRS`, from the project's simulator."""
    from assets_pipeline.simulator import PolygonSimulator

    with PolygonSimulator(host="127.0.0.1", port=0) as sim:
        url = f"{sim.url}/v3/snapshot?ticker.any_of={','.join(PAIRS)}&limit=250"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {SECRET}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.load(answer)
    return {item["ticker"]: item for item in body["results"]}


def paged(items, next_urls: Callable[[str], str | None], endless: bool = False):
    """A `/v3/snapshot` answer of one pair a page: page n is the one whose cursor holds n `x`
    (page 0: no cursor); each page but the last (any page, if `endless`) has the `next_url`
    `next_urls(path)`."""

    def answer(path):
        page = path.count("x")
        tickers = list(items)
        results = [items[tickers[page]]] if page < len(tickers) else []
        body = {"status": "OK", "results": results}
        if (endless or page < len(tickers) - 1) and (url := next_urls(path)) is not None:
            body["next_url"] = url
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return answer


def client_for(url, budget, **options):
    return PolygonClient(url, SECRET, budget, backoff_seconds=0.01, **options)


def batch(client):
    return fetch_all(client, [spec(t[2:], t) for t in PAIRS], "batch")


# --- 1. the key never leaves the configured origin ---------------------------------------------


@pytest.mark.parametrize(
    "next_url",
    [
        # glued to "http://127.0.0.1:PORT" it named another port (the report: 1884 -> 18845)
        "{digit}/v3/snapshot?cursor=x",
        # glued to the real host it named a host of the attacker's
        ".attacker.example/v3/snapshot?cursor=x",
        # glued, it made the base URL a user name and the request went to the host after @
        "@127.0.0.1:{other}/v3/snapshot?cursor=x",
        # a dot segment climbs out of the API's paths
        "/v3/{up}/{up}/admin?cursor=x",
        # an encoded dot segment, a backslash, a control character, a path off the API
        "/v3/%2e%2e/admin?cursor=x",
        "/v3/snapshot\\@127.0.0.1?cursor=x",
        "/v3/snap%0Ashot?cursor=x",
        "/admin/v3/snapshot?cursor=x",
        # a next page on another endpoint (another ticker's data stored as these)
        "/v2/snapshot/locale/global/markets/forex/tickers/C:GBPUSD?cursor=x",
    ],
)
def test_a_next_url_that_would_leave_the_api_is_refused_and_nothing_else_is_asked(
    items, budget, elsewhere, next_url
):
    url = next_url.format(digit=str(elsewhere.port)[-1], other=elsewhere.port, up="." * 2)
    server = Recorder(paged(items, lambda path: url))
    try:
        result = batch(client_for(server.url, budget))
    finally:
        server.close()
    assert len(server.requests) == 1  # page 1 only; the bad next_url was never requested
    assert {"GBPUSD", "USDJPY"} <= set(result.errors)
    assert all(isinstance(e, MalformedResponse) for e in result.errors.values())
    # page 1's own answer still counts: only the walk ends
    assert set(result.quotes) == {PAIRS[0][2:]}


def test_the_report_case_a_port_glued_from_next_url_receives_nothing(items, budget):
    # The report: base URL on port 1884, next_url "5/v3/snapshot?cursor=2", key sent to 18845.
    # Here: a base port P and a server on port 10 * P + 5, bound for the occasion.
    for _ in range(50):
        port = random.randint(1025, 6552)
        try:
            elsewhere = Recorder(lambda path: (200, {}, b"{}"), port=port * 10 + 5)
            server = Recorder(paged(items, lambda p: "5/v3/snapshot?cursor=2"), port=port)
            break
        except OSError:
            continue
    else:
        pytest.skip("no free pair of ports P and 10P+5 on this machine")
    try:
        result = batch(client_for(f"http://127.0.0.1:{port}", budget))
    finally:
        server.close()
        elsewhere.close()
    assert elsewhere.requests == [] and len(server.requests) == 1
    assert "outside the API" in str(result.errors["GBPUSD"])


@pytest.mark.parametrize(
    "host",
    [
        # a next_url naming another host: the vendor says its host can be ignored, so its path
        # and query go to the configured origin, and nothing goes to that host
        "http://127.0.0.1:{other}",
        "//127.0.0.1:{other}",
        "https://api.polygon.io.attacker.example",
    ],
)
def test_a_next_url_on_another_host_is_asked_of_the_configured_origin(
    items, budget, elsewhere, host
):
    base = host.format(other=elsewhere.port)
    server = Recorder(
        paged(items, lambda path: f"{base}/v3/snapshot?cursor={'x' * (path.count('x') + 1)}")
    )
    client = client_for(server.url, budget)
    try:
        result = batch(client)
    finally:
        server.close()
    assert sorted(result.quotes) == ["EURUSD", "GBPUSD", "USDJPY"]
    # every page went to the recording server, with its own Host, and the key only there
    assert len(server.requests) == 3  # 3 pages of one pair
    assert {host for _, host, _ in server.requests} == {f"127.0.0.1:{server.port}"}
    assert {key for _, _, key in server.requests} == {f"Bearer {SECRET}"}
    assert client.answered_by == f"http://127.0.0.1:{server.port}"


def test_request_targets_are_only_the_apis_paths():
    # what get_json and every next_url go through: a path, never a URL
    assert api_target("/v3/snapshot", {"limit": 250}) == "/v3/snapshot?limit=250"
    assert api_target("/v2/aggs/ticker/C:EURUSD/prev") == "/v2/aggs/ticker/C:EURUSD/prev"
    for bad in ["v3/x", "//evil/v3/x", "/v3/a@b", "/v3/a\\b", "/v3/./x", "/v3/%2E%2E/x", "/v3/%zz"]:
        with pytest.raises(MalformedResponse):
            api_target(bad)
    with pytest.raises(MalformedResponse):
        api_target("/v3/x?a=b#frag")
    assert str(Origin.parse("https://api.polygon.io/")) == "https://api.polygon.io:443"
    for bad in ["ftp://h", "http://user@h", "http://h/?q=1", "http:///x"]:
        with pytest.raises(ValueError):
            Origin.parse(bad)


# --- 2. redirects are refused, never followed ------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_nothing_is_stored(budget, elsewhere, status):
    # the report: a 301/302 to another host was followed and its prices stored
    target = f"http://127.0.0.1:{elsewhere.port}/v3/snapshot"
    server = Recorder(lambda path: (status, {"Location": target}, b""))
    try:
        result = batch(client_for(server.url, budget, max_retries=2))
    finally:
        server.close()
    assert result.quotes == {} and len(server.requests) == 1  # not retried, not followed
    error = result.errors["EURUSD"]
    assert isinstance(error, RedirectRefused) and not error.retryable
    assert f"redirect to http://127.0.0.1:{elsewhere.port}: refused" in str(error)


def test_a_redirect_loop_costs_one_request(budget):
    # the report: a redirect to itself made 93 HTTP requests for 3 budget slots
    server = Recorder(lambda path: (302, {"Location": path}, b""))
    client = client_for(server.url, budget, max_retries=2)
    try:
        with pytest.raises(RedirectRefused, match="refused"):
            client.snapshot("C:EURUSD", AssetType.FOREX)
    finally:
        server.close()
    assert len(server.requests) == 1 and client.calls == 1


# --- 3. pagination is bounded ----------------------------------------------------------------


def test_a_next_url_pointing_back_at_itself_ends_the_walk(items, budget):
    # the report: a next_url pointing back at itself was followed for ever (92 requests)
    server = Recorder(paged(items, lambda path: "/v3/snapshot?cursor=x"))
    try:
        result = batch(client_for(server.url, budget))
    finally:
        server.close()
    assert len(server.requests) == 2  # page 1, the cursor once; its repeat is never asked
    assert sorted(result.quotes) == ["EURUSD", "GBPUSD"]  # what the two pages brought
    assert "points back at a page already read" in str(result.errors["USDJPY"])


def test_snapshot_pages_are_bounded_by_what_the_tickers_can_need(items, budget):
    # ever-new cursors, then empty pages: 3 tickers need 1 page at limit 250, and
    # 1 + V3_PAGE_MARGIN (2) pages are allowed; the 4th is never asked
    server = Recorder(
        paged(items, lambda path: f"/v3/snapshot?cursor={'x' * (path.count('x') + 1)}y", True)
    )
    try:
        result = batch(client_for(server.url, budget))
    finally:
        server.close()
    assert len(server.requests) == 3 and len(result.quotes) == 3  # the 3 pages brought them
    server = Recorder(lambda path: (200, {}, json.dumps(endless_empty(path)).encode()))
    try:
        result = batch(client_for(server.url, budget))
    finally:
        server.close()
    assert len(server.requests) == 3 and result.quotes == {}
    assert all("more than 3 pages" in str(e) for e in result.errors.values()), result.errors


def endless_empty(path):
    """A page with nothing on it and a new cursor every time."""
    return {
        "status": "OK",
        "results": [],
        "next_url": f"/v3/snapshot?cursor={'x' * (path.count('x') + 1)}",
    }


def test_range_bar_pages_are_bounded_by_max_pages(budget, elsewhere):
    import datetime as dt

    def answer(path):
        n = path.count("x")
        body = {"status": "OK", "ticker": "C:EURUSD", "results": [], "resultsCount": 0}
        body["next_url"] = f"/v2/aggs/ticker/C:EURUSD/range/1/day/1/2?cursor={'x' * (n + 1)}"
        return 200, {}, json.dumps(body).encode()

    server = Recorder(answer)
    client = client_for(server.url, budget, max_pages=4)
    try:
        with pytest.raises(MalformedResponse, match="more than 4 pages") as info:
            range_bars(client, "C:EURUSD", dt.date(2024, 1, 1), dt.date(2024, 1, 2), 86400)
    finally:
        server.close()
    assert len(server.requests) == 4 and info.value.ticker == "C:EURUSD"


def test_range_bars_never_follow_a_next_url_to_another_tickers_range(budget):
    import datetime as dt

    body = {"status": "OK", "ticker": "C:EURUSD", "results": []}
    body["next_url"] = "/v2/aggs/ticker/C:GBPUSD/range/1/day/1/2?cursor=1"
    server = Recorder(lambda path: (200, {}, json.dumps(body).encode()))
    try:
        with pytest.raises(MalformedResponse, match="leaves the endpoint"):
            range_bars(
                client_for(server.url, budget),
                "C:EURUSD",
                dt.date(2024, 1, 1),
                dt.date(2024, 1, 2),
                86400,
            )
    finally:
        server.close()
    assert len(server.requests) == 1


# --- 4. one deadline for the whole exchange -------------------------------------------------


class RawServer:
    """A TCP server on loopback: each connection (TLS, given a context) reads the request
    head, if `read_request`, then runs `behave(peer)`. `closed` is set once a client hangs up."""

    def __init__(self, behave, tls: ssl.SSLContext | None = None, read_request: bool = True):
        self.closed = threading.Event()
        self._behave, self._tls, self._read = behave, tls, read_request
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        peer = Peer(conn, self.closed)
        try:
            if self._tls is not None:
                conn.settimeout(BOUND)
                peer.conn = self._tls.wrap_socket(conn, server_side=True)
            if self._read:
                peer.read_head()
            self._behave(peer)
        except OSError:
            self.closed.set()  # the client hung up mid-handshake or mid-request
        finally:
            peer.conn.close()

    def close(self):
        self._listener.close()


class Peer:
    def __init__(self, conn, closed):
        self.conn, self.closed = conn, closed

    def read_head(self):
        data = b""
        self.conn.settimeout(BOUND)
        while b"\r\n\r\n" not in data:
            chunk = self.conn.recv(4096)
            if not chunk:
                raise ConnectionAbortedError
            data += chunk

    def hung_up(self, seconds: float) -> bool:
        """Wait up to `seconds` for the client to close the connection."""
        self.conn.settimeout(seconds)
        try:
            if self.conn.recv(1024) == b"":
                self.closed.set()
        except TimeoutError:
            return False
        except OSError:
            self.closed.set()
        return self.closed.is_set()

    def trickle(self, head: bytes, pieces: Iterator[bytes], every: float):
        """Send `head`, then a piece every `every` seconds, until the client hangs up."""
        self.conn.sendall(head)
        deadline = time.monotonic() + BOUND
        for piece in pieces:
            if time.monotonic() > deadline or self.hung_up(every):
                return
            self.conn.sendall(piece)

    def silent(self):
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not self.hung_up(0.5):
            pass


JSON_HEAD = b"Content-Type: application/json\r\n"
BEHAVIOURS = {
    # the status line, a byte every second
    "slow status line": lambda p: p.trickle(b"", itertools.cycle([b"H", b"T"]), 1.0),
    # the status line at once, then header lines that never end
    "slow headers": lambda p: p.trickle(
        b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Pad: a\r\n"[i : i + 1] for i in range(10)), 0.2
    ),
    # HTTP/1.0, no Content-Length: the body ends when the server closes, which it never does
    "close-delimited body trickled": lambda p: p.trickle(
        b"HTTP/1.0 200 OK\r\n" + JSON_HEAD + b"\r\n", itertools.repeat(b" "), 0.2
    ),
    # chunked: a one-byte chunk at a time, never the last chunk
    "chunked body trickled": lambda p: p.trickle(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + JSON_HEAD + b"\r\n",
        itertools.repeat(b"1\r\n \r\n"),
        0.2,
    ),
    # keep-alive, Content-Length larger than what is sent, then silence on an open connection
    "keep-alive body shorter than its length": lambda p: (
        p.trickle(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: keep-alive\r\n\r\n{",
            iter([]),
            0.2,
        )
        or p.silent()
    ),
    # accepts the connection, reads the request, never answers
    "never answers": lambda p: p.silent(),
}


def assert_ends_in_time(origin, context=None):
    started = time.monotonic()
    with pytest.raises(AnswerTooSlow, match="took longer than 1s"):
        bounded_get(
            origin, "/v3/snapshot", {}, (5.0, 10.0), TOTAL_TIMEOUT, 10**6, ssl_context=context
        )
    assert time.monotonic() - started < RETURNS_WITHIN


@pytest.mark.parametrize("case", list(BEHAVIOURS))
def test_every_stage_of_an_answer_ends_at_the_deadline(case):
    server = RawServer(BEHAVIOURS[case])
    try:
        assert_ends_in_time(Origin.parse(f"http://127.0.0.1:{server.port}"))
        assert server.closed.wait(5), "the server never saw the connection closed"
    finally:
        server.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(server context, client context) for a self-signed certificate of 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS cases need the openssl CLI (the cryptography package is not installed)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    subprocess.run(
        [
            *command.split(),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


@pytest.mark.parametrize("case", ["slow headers", "close-delimited body trickled", "never answers"])
def test_over_tls_too_every_stage_ends_at_the_deadline(tls, case):
    server = RawServer(BEHAVIOURS[case], tls=tls[0])
    try:
        assert_ends_in_time(Origin.parse(f"https://127.0.0.1:{server.port}"), tls[1])
        assert server.closed.wait(5), "the server never saw the connection closed"
    finally:
        server.close()


def test_a_tls_handshake_that_never_comes_ends_at_the_deadline(tls):
    # accepts TCP, never says a word of TLS: the handshake itself is inside the deadline
    server = RawServer(lambda p: p.silent(), read_request=False)
    try:
        assert_ends_in_time(Origin.parse(f"https://127.0.0.1:{server.port}"), tls[1])
        assert server.closed.wait(5), "the server never saw the connection closed"
    finally:
        server.close()


def test_a_good_answer_over_tls_is_read(tls):
    body = b'{"status": "OK"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    server = RawServer(lambda p: p.conn.sendall(head + body), tls=tls[0])
    try:
        origin = Origin.parse(f"https://127.0.0.1:{server.port}")
        answer = bounded_get(origin, "/v3/x", {}, (5.0, 5.0), 5.0, 10**6, ssl_context=tls[1])
    finally:
        server.close()
    assert (answer.status, answer.body) == (200, body)


def test_the_deadline_is_read_on_the_injected_clock():
    # a clock that says 100 s passed between the start and the end: the answer is too slow,
    # however fast it really was
    body = b"{}"
    server = RawServer(lambda p: p.conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body))
    ticks = itertools.chain([0.0], itertools.repeat(100.0))
    try:
        with pytest.raises(AnswerTooSlow):
            bounded_get(
                Origin.parse(f"http://127.0.0.1:{server.port}"),
                "/v3/x",
                {},
                (5.0, 5.0),
                30.0,
                10**6,
                clock=lambda: next(ticks),
            )
    finally:
        server.close()
