"""The HTTP plumbing every vendor's simulator shares, written once (standard library only): a
threaded HTTP/1.1 server on loopback started and stopped at once, its URL, a request log,
injectable faults that count down, and replies written with a delay or a byte at a time. Each
simulator only answers its vendor's paths (`serve`)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar

from assets_pipeline.simulator.market import Clock


class _Fault(Protocol):
    @property
    def count(self) -> int | None:
        """For how many requests the fault applies (None: until cleared)."""
        ...


F = TypeVar("F", bound=_Fault)  # a simulator's fault
R = TypeVar("R")  # a simulator's logged request
#: How often a trickled reply writes its next byte.
TRICKLE_SECONDS = 0.2


@dataclass
class Reply:
    """One answer: its status, body and headers; `delay` holds it back that long, `trickle`
    writes the body a byte at a time until the simulator stops."""

    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    trickle: bool = False


def json_reply(status: int, payload: Any) -> Reply:
    """`payload` as compact JSON, as the vendors send it."""
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode())


@dataclass
class Armed(Generic[F]):
    """An armed fault and how many more requests it applies to (None: until cleared)."""

    fault: F
    remaining: int | None


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        simulator: LoopbackSimulator[Any, Any],
        handler: type[BaseHTTPRequestHandler],
    ) -> None:
        super().__init__(address, handler)
        self.simulator = simulator


class Handler(BaseHTTPRequestHandler):
    """Hands every GET to the simulator; quiet, keep-alive, like the real APIs' HTTP/1.1."""

    # Small JSON replies: without TCP_NODELAY each one stalls ~40 ms on loopback (delayed ACK).
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.simulator.serve(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr line per request; the simulator keeps its own log."""


class LoopbackSimulator(Generic[F, R]):
    """A vendor's stand-in on loopback: `start`/`stop` (or `with`), `url`, the `requests` log
    and the faults (`add_fault`, `clear_faults`). A subclass answers each request (`serve`)."""

    #: The name of its serving thread, before the port.
    thread_name = "simulator"
    #: What hands each request to `serve`: GET only, unless a simulator takes more methods.
    handler_class: type[BaseHTTPRequestHandler] = Handler
    #: The file each logged request is appended to, as a JSON line (None: none).
    log_file: str | None = None

    def __init__(self, host: str, port: int, clock: Clock) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self._lock = threading.Lock()
        self._log: list[R] = []
        self._faults: list[Armed[F]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # lifecycle

    def start(self) -> None:
        """Bind and serve in a daemon thread; returns once the socket is listening."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self, self.handler_class)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; wakes any request held by a fault."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        # shutdown() only takes effect when the accept loop next wakes; poking the socket wakes
        # it at once, so a test fixture's teardown costs milliseconds, not a poll interval.
        waiter = threading.Thread(target=server.shutdown, daemon=True)
        waiter.start()
        while waiter.is_alive():
            self._poke()
            waiter.join(0.01)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def _poke(self) -> None:
        """Open and close one connection to our own socket, to wake the accept loop."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        try:
            socket.create_connection((host, self.port), timeout=0.2).close()
        except OSError:
            pass

    def __enter__(self) -> Any:  # the subclass itself
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. http://127.0.0.1:54321."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # state

    @property
    def requests(self) -> list[R]:
        """A copy of the request log (a key or token appears only as a short hash)."""
        with self._lock:
            return list(self._log)

    def add_fault(self, fault: F) -> None:
        """Arm a fault; faults combine, and each counts down on its own."""
        with self._lock:
            self._faults.append(Armed(fault, fault.count))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def _take_faults(self, applies: Callable[[F], bool]) -> list[F]:
        """The faults that apply to this request; counted ones are spent by it."""
        taken: list[F] = []
        with self._lock:
            kept: list[Armed[F]] = []
            for armed in self._faults:
                if applies(armed.fault):
                    taken.append(armed.fault)
                    if armed.remaining is not None:
                        armed.remaining -= 1
                        if armed.remaining <= 0:
                            continue
                kept.append(armed)
            self._faults = kept
        return taken

    def _record(self, entry: R) -> None:
        with self._lock:
            self._log.append(entry)
            if self.log_file:
                with open(self.log_file, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(asdict(entry)) + "\n")  # type: ignore[call-overload]
                    handle.flush()

    # answering

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer one request (`handler`'s): log it, and write the reply (`_send`)."""
        raise NotImplementedError

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        """Write `reply`, after its delay; a client that hung up is let go."""
        if reply.delay > 0:
            self._stopping.wait(reply.delay)
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": reply.content_type, **reply.headers}
            headers["Content-Length"] = str(len(reply.body))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if not reply.trickle:
                handler.wfile.write(reply.body)
                return
            for index in range(len(reply.body)):  # a byte at a time, until stopped
                if self._stopping.wait(TRICKLE_SECONDS):
                    break
                handler.wfile.write(reply.body[index : index + 1])
                handler.wfile.flush()
        except OSError:  # the client gave up (a read timeout, a cap): nothing left to tell it
            handler.close_connection = True
