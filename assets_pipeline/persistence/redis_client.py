"""Every Redis client the project makes, with bounded waits: nothing waits on Redis for ever.

A Redis that accepts connections and never answers costs each command at most
`CONNECT_TIMEOUT_SECONDS` to connect plus `SOCKET_TIMEOUT_SECONDS` for the answer, with no retry,
then a `redis.TimeoutError`; TCP keepalives notice a server gone silent on an idle connection.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from assets_pipeline.persistence.outbox import PublishingBreaker

#: The longest wait for the TCP (and TLS) connection to be made.
CONNECT_TIMEOUT_SECONDS = 2.0
#: The longest wait for any answer on a connection made.
SOCKET_TIMEOUT_SECONDS = 5.0
#: How idle a pooled connection may be before it is checked with a PING on its next use.
HEALTH_CHECK_SECONDS = 30


class Client(redis.Redis):
    """A Redis client that carries the outbox's publishing breaker for its server: an outage
    seen by one of its owner's steps spares the others the timeout (`outbox.publishing_paused`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.breaker = PublishingBreaker()


def connect(url: str) -> Client:
    """A client for `url` (redis:// or rediss://), its waits bounded as above. No retry: a
    caller that would rather try again does so itself (the outbox's breaker, the relay)."""
    return Client.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )


def where(url: str) -> str:
    """The server as host:port (never the user or password the URL may hold)."""
    pool = redis.ConnectionPool.from_url(url)
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def describe_outage(exc: BaseException | None, url: str) -> str | None:
    """What went wrong with Redis at `url`, if `exc` (or what caused it) is a Redis outage."""
    while exc is not None:
        if isinstance(exc, redis.TimeoutError):
            return (
                f"Redis at {where(url)} did not answer within {CONNECT_TIMEOUT_SECONDS:g} s to"
                f" connect and {SOCKET_TIMEOUT_SECONDS:g} s to reply"
            )
        if isinstance(exc, redis.ConnectionError):
            return f"Redis at {where(url)} cannot be reached"
        exc = exc.__cause__ or exc.__context__
    return None
