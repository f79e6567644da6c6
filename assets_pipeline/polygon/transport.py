"""One HTTP GET with a bound on its whole time and on the size of its answer.

`requests`' timeouts bound each wait for bytes, not the answer: a server that sends a byte every
few seconds, or never stops, would hold a run for ever, and with one run of each kind at a time
it would hold every later refresh of that kind too. A 50 MB body would be read whole, and a small
gzip body can expand a thousandfold. So the body is read in chunks, counted as it is decoded,
and a timer shuts the connection down at the deadline, whatever the read is doing. Either limit
is a retryable error of that one request: the next attempt may well be fine.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests

from assets_pipeline.polygon.errors import RetryableError

#: Read (and decode) this much at a time: a gzip chunk expands to at most ~1000 times this.
CHUNK_BYTES = 16 * 1024


class AnswerTooSlow(RetryableError):
    """The whole answer did not arrive within the request's deadline."""


class AnswerTooLarge(RetryableError):
    """The answer, decoded, is larger than the request's size cap."""


def bounded_get(
    session: requests.Session,
    url: str,
    params: dict[str, Any] | None,
    timeouts: tuple[float, float],
    total_seconds: float,
    max_bytes: int,
) -> tuple[int, bytes]:
    """(status, decoded body) of one GET that takes at most `total_seconds` in all and whose
    body is at most `max_bytes`; else `AnswerTooSlow` or `AnswerTooLarge`."""
    started = time.monotonic()
    response = session.get(url, params=params, timeout=timeouts, stream=True)
    with response:
        remaining = total_seconds - (time.monotonic() - started)
        guard = _Deadline(response, remaining)
        try:
            body = _read_capped(response, max_bytes)
        except (requests.RequestException, OSError, ValueError) as exc:
            if guard.fired:
                raise AnswerTooSlow(f"the answer took longer than {total_seconds:g}s") from None
            raise RetryableError(f"the answer broke off ({exc.__class__.__name__})") from None
        finally:
            guard.cancel()
        if guard.fired:
            raise AnswerTooSlow(f"the answer took longer than {total_seconds:g}s")
        return response.status_code, body


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise AnswerTooLarge(f"the answer is larger than {max_bytes:,} bytes")
    return bytes(body)


class _Deadline:
    """Shuts the response's socket down when the deadline passes, so a read blocked on a
    trickling server returns at once."""

    def __init__(self, response: requests.Response, seconds: float) -> None:
        self.fired = False
        self._response = response
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(getattr(self._response.raw, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the read has ended anyway

    def cancel(self) -> None:
        self._timer.cancel()
