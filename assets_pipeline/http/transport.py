"""One HTTP GET to the configured origin only, with one deadline on all of it and a size cap.

`api_target` checks the path (no other host; a `next_url` gives only its path and query), and a
3xx is handed back, never followed. `bounded_get` owns the connection from host lookup to close,
so the whole exchange ends by `total_seconds`, its body capped as decoded; too slow, too large or
broken off is a retryable error of that request. Why: docs/design/polygon-transport.md."""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from assets_pipeline.http.errors import MalformedResponse, RetryableError

#: Read (and decode) this much at a time: a gzip chunk expands to at most ~1000 times this.
CHUNK_BYTES = 16 * 1024
#: Polygon's API paths all start with one of these (another vendor's client names its own).
API_PREFIXES = ("/v1/", "/v2/", "/v3/")
#: RFC 3986 path characters, without `@`; and query characters (no `#`, space or backslash).
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/%]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/?@%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class AnswerTooSlow(RetryableError):
    """The whole answer did not arrive within the request's deadline."""


class AnswerTooLarge(RetryableError):
    """The answer, decoded, is larger than the request's size cap."""


class NoAnswer(RetryableError):
    """One wait for bytes (connect or read) outlasted its own timeout."""


@dataclass(frozen=True)
class Origin:
    """Where every request goes: a scheme, host and port, and the base URL's path, if any."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """The origin of an `http(s)://host[:port][/path]` base URL; else ValueError."""
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the base URL must be http(s)://host[:port], got {base_url!r}")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError("the base URL must carry no user, query or fragment")
        prefix = parts.path.rstrip("/")
        if prefix and not _clean_path(prefix):
            raise ValueError(f"the base URL's path is not a plain path: {prefix!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, prefix)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str, default: Origin) -> str:
    """The `scheme://host:port` a URL (a redirect's Location) points at, for a message."""
    try:
        parts = urlsplit(url)
        if not parts.netloc:
            return str(default)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme or default.scheme}://{parts.hostname}:{port}"
    except ValueError:
        return "an unreadable location"


def api_target(
    path: str,
    params: Mapping[str, Any] | None = None,
    prefixes: tuple[str, ...] = API_PREFIXES,
) -> str:
    """`path` (with its query, if any) and `params` as a request target, if the path is one of
    the API's: starts with one of `prefixes` (Polygon's by default), no `@`, backslash, control
    character, `.`/`..` segment or bad escape, and a plain query. Else a `MalformedResponse`."""
    base, _, query = path.partition("?")
    if not base.startswith(prefixes) or not _clean_path(base):
        raise MalformedResponse(f"refused to request a path outside the API: {path[:120]!r}")
    if not _QUERY_CHARS.fullmatch(query) or _BAD_ESCAPE.search(query) or "\\" in unquote(query):
        raise MalformedResponse(f"refused to request a malformed query: {query[:120]!r}")
    extra = urlencode(params or {})
    query = "&".join(q for q in (query, extra) if q)
    return base + (f"?{query}" if query else "")


def _clean_path(path: str) -> bool:
    if not path.startswith("/") or path.startswith("//") or not _PATH_CHARS.fullmatch(path):
        return False
    if _BAD_ESCAPE.search(path):
        return False
    decoded = unquote(path)
    if _CONTROL.search(decoded) or "\\" in decoded or "@" in decoded:
        return False
    return not any(segment and not segment.strip(".") for segment in decoded.split("/"))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, decoded body (empty for a redirect), a redirect's Location,
    and the origin it came from."""

    status: int
    body: bytes
    location: str
    origin: str


def bounded_get(
    origin: Origin,
    target: str,
    headers: Mapping[str, str],
    timeouts: tuple[float, float],
    total_seconds: float,
    max_bytes: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Answer:
    """One GET of `target` at `origin` that ends within `total_seconds` in all, with a body of at
    most `max_bytes` decoded; else `AnswerTooSlow`, `AnswerTooLarge`, `NoAnswer` (one wait timed
    out) or `RetryableError` (refused, reset, broken off). A 3xx is returned, not followed."""
    deadline = Deadline(total_seconds, timeouts[1], clock)
    conn = _Connection(origin, deadline, timeouts[0], ssl_context)
    try:
        conn.request("GET", origin.prefix + target, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        location = response.getheader("Location") or ""
        is_redirect = 300 <= response.status < 400
        body = b"" if is_redirect else _read_capped(response, max_bytes)
        deadline.check()
        return Answer(response.status, body, location, str(origin))
    except (AnswerTooLarge, AnswerTooSlow):
        raise
    except (OSError, http.client.HTTPException, zlib.error, ValueError) as exc:
        if deadline.passed():
            raise AnswerTooSlow(f"the answer took longer than {total_seconds:g}s") from None
        if isinstance(exc, TimeoutError):
            raise NoAnswer(f"did not answer in time ({exc.__class__.__name__})") from None
        raise RetryableError(f"the answer broke off ({exc.__class__.__name__})") from None
    finally:
        deadline.cancel()
        conn.close()


def _read_capped(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, decoded, failing as soon as it is larger than `max_bytes`."""
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise RetryableError(f"the answer is encoded as {encoding[:40]!r}, which is not asked for")
    decoder = None if encoding == "identity" else zlib.decompressobj(zlib.MAX_WBITS | 32)
    body = bytearray()
    while chunk := response.read(CHUNK_BYTES):
        if decoder is not None:  # never expand beyond one byte over the cap
            chunk = decoder.decompress(chunk, max_bytes - len(body) + 1)
        body += chunk
        if len(body) > max_bytes:
            raise AnswerTooLarge(f"the answer is larger than {max_bytes:,} bytes")
    if decoder is not None:
        body += decoder.flush()
    return bytes(body)


class Deadline:
    """One request's deadline: the time left for each wait, and a timer that shuts the
    request's socket down when the time is up, so no read can outlast it."""

    def __init__(self, seconds: float, read_timeout: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._end = clock() + seconds
        self._read_timeout = read_timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self._end - self._clock()

    def passed(self) -> bool:
        return self._fired or self.left() <= 0

    def check(self) -> None:
        if self.passed():
            raise TimeoutError("deadline")

    def wait(self, timeout: float) -> float:
        """The timeout for the next wait: `timeout`, or the time left if that is shorter."""
        self.check()
        return max(min(timeout, self.left()), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down at the deadline (at once if it has already passed)."""
        with self._lock:
            self._sock = sock
            fired = self._fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def read_wait(self) -> float:
        return self.wait(self._read_timeout)


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also for TLS: wakes a read blocked in either
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the read has ended anyway


class _Connection(http.client.HTTPConnection):
    """A connection whose socket the deadline watches from the moment it exists, whose every
    read waits at most the time left, and which speaks TLS when the origin is https."""

    def __init__(
        self,
        origin: Origin,
        deadline: Deadline,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(origin.host, origin.port, timeout=connect_timeout)
        self._origin = origin
        self._deadline = deadline
        self._ssl = ssl_context or (
            ssl.create_default_context() if origin.scheme == "https" else None
        )
        self.response_class = self._response  # type: ignore[assignment]

    def connect(self) -> None:
        """Connect (and shake hands) within the time left; `close` closes the socket from the
        moment it exists, whatever fails after."""
        self.sock = sock = self._connect_any(_resolve(self.host, self.port, self._deadline))
        self._deadline.watch(sock)
        if self._ssl is not None:
            sock.settimeout(self._deadline.read_wait())
            self.sock = sock = self._ssl.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            self._deadline.watch(sock)
            sock.do_handshake()
        sock.settimeout(self._deadline.read_wait())

    def _connect_any(self, addresses: list[tuple[str, int]]) -> socket.socket:
        """A connection to the first of `addresses` that takes one, each within the time left."""
        error: OSError = OSError(f"no address for {self.host}")
        for address in addresses:
            try:
                return socket.create_connection(address, self._deadline.wait(self.timeout or 30))
            except OSError as exc:
                error = exc
        raise error

    def _response(self, sock: socket.socket, **kwargs: Any) -> http.client.HTTPResponse:
        return http.client.HTTPResponse(_DeadlineSocket(sock, self._deadline), **kwargs)  # type: ignore[arg-type]


def _resolve(host: str, port: int, deadline: Deadline) -> list[tuple[str, int]]:
    """The addresses of `host`, looked up within the time left (a lookup cannot be
    interrupted: a slow one is left to finish in its own daemon thread)."""
    found: list[Any] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.append([(info[4][0], info[4][1]) for info in infos])
        except OSError as exc:
            found.append(exc)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(deadline.wait(deadline.left()))
    if not found:
        raise TimeoutError(f"looking up {host} took too long")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


class _DeadlineSocket:
    """What `HTTPResponse` reads from: the socket, each read waiting at most the time left."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        raw = self._sock.makefile("rb", buffering=0)  # holds the socket open until closed
        return io.BufferedReader(_DeadlineReader(self._sock, raw, self._deadline), CHUNK_BYTES)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, raw: Any, deadline: Deadline) -> None:
        self._sock = sock
        self._raw = raw
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.read_wait())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()
