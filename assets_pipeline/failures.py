"""Why a command failed, in one short paragraph: the operation, the root cause, the fix.

The root cause is found by walking an exception's `__cause__`/`__context__` (and Dagster's
`user_exception`), or the serialized error a failed run's event holds, the only form in which a
step's exception reaches the CLI. No message shows a password or the API key: causes name
host:port, and any other message is redacted of the settings' secrets."""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from assets_pipeline.config.settings import Settings
from assets_pipeline.persistence import redis_client

#: Class names of a database that did not answer (ours, SQLAlchemy's and psycopg's).
DATABASE_DOWN = {"DatabaseUnavailable", "OperationalError"}
#: Class names of a Redis that did not answer (redis-py's).
REDIS_DOWN = {"ConnectionError", "TimeoutError", "BudgetError"}
#: The most of an unrecognized message shown (the rest is under `--verbose`).
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Link:
    """One exception of a chain: its class names (the class and its bases) and message."""

    name: str
    names: frozenset[str]
    message: str
    module: str = ""


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    fix: str


def exception_chain(exc: BaseException | None) -> list[Link]:
    """`exc`, then what caused it, outermost first (Dagster's `user_exception` included)."""
    links: list[Link] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = frozenset(k.__name__ for k in type(exc).__mro__)
        links.append(Link(type(exc).__name__, names, str(exc), type(exc).__module__))
        user = getattr(exc, "user_exception", None)
        exc = user if isinstance(user, BaseException) else (exc.__cause__ or exc.__context__)
    return links


def info_chain(info: Any) -> list[Link]:
    """The same walk over Dagster's `SerializableErrorInfo` (a run's failure event)."""
    links: list[Link] = []
    while info is not None:
        message = str(info.message).strip()
        prefix = f"{info.cls_name}: " if info.cls_name else ""
        message = message.split(prefix, 1)[-1] if prefix and prefix in message else message
        name = info.cls_name or ""
        links.append(Link(name, frozenset({name}), message.rstrip(":").strip()))
        info = info.cause or info.context
    return links


def _database_where(settings: Settings) -> str:
    if not settings.trading_database_url:
        return "the embedded database"
    url = make_url(settings.trading_database_url)
    return f"database {url.host or 'localhost'}:{url.port or 5432}"


def diagnose(links: list[Link], settings: Settings) -> Diagnosis | None:
    """The cause and fix of the first link (outermost first) that names a known one."""
    for link in links:
        found = _known(link, settings)
        if found:
            return found
    return None


def _known(link: Link, settings: Settings) -> Diagnosis | None:
    names, message = link.names, link.message
    if "SchemaError" in names:
        return Diagnosis(
            message.split(": run `", 1)[0],
            "run `assets-pipeline migrate` with TRADING_DATABASE_URL set to it, as the tables'"
            " owner",
        )
    if "RegistryError" in names:
        return Diagnosis(message, "correct the symbols file (ASSETS_CONFIG names it)")
    if "SettingsError" in names:
        return Diagnosis(message, "set the variable named to a valid value, or unset it")
    if names & DATABASE_DOWN and ("database" in message or "connection" in message):
        return _database_down(message, settings)
    if names & REDIS_DOWN and ("Redis" in message or "redis" in link.module):
        where = redis_client.where(settings.redis_url) if settings.redis_url else "REDIS_URL"
        late = "TimeoutError" in names or "did not answer" in message
        return Diagnosis(
            f"Redis at {where} " + ("did not answer in time" if late else "is unreachable"),
            "start Redis there, or set REDIS_URL to one that answers",
        )
    return _polygon(message)


def _database_down(message: str, settings: Settings) -> Diagnosis:
    where = _database_where(settings)
    if "did not answer within" in message:  # ours: names host:port, the bound and its variable
        cause = _short(message, settings, 300)
    elif "refused" in message.lower():
        cause = f"{where} refused the connection"
    elif "timeout" in message.lower() or "did not answer" in message:
        cause = f"{where} did not answer in time"
    else:
        cause = f"{where} cannot be used: {_short(message, settings, 200)}"
    return Diagnosis(
        cause, "start PostgreSQL there, or set TRADING_DATABASE_URL to a database that answers"
    )


def _polygon(message: str) -> Diagnosis | None:
    if re.search(r"Polygon answered 401\b", message):
        return Diagnosis(
            "Polygon refused the API key (HTTP 401: unknown or wrong key)",
            "set POLYGON_API_KEY to your key from polygon.io (Dashboard, API Keys)",
        )
    if re.search(r"Polygon answered 403\b", message):
        return Diagnosis(
            "Polygon refused the request: the plan does not include this data (HTTP 403)",
            "take the markets your plan lacks out of the symbols file, set POLYGON_PLAN to"
            " the plan you have, or upgrade the plan",
        )
    return None


def redact(text: str, settings: Settings) -> str:
    """`text` without the API key, OANDA's token or any password of the settings' URLs."""
    secrets = [settings.polygon_api_key, settings.oanda.token]
    for url in (settings.trading_database_url, settings.redis_url, settings.alert_webhook_url):
        secrets.extend(_url_secrets(url))
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _url_secrets(url: str) -> Iterator[str]:
    if not url:
        return
    try:
        yield from filter(None, [make_url(url).password])
    except ArgumentError:  # not a database URL (a webhook): its query may hold a token
        yield from re.findall(r"[?&](?:token|key|secret)=([^&]+)", url)
    yield from re.findall(r"://[^:/@]*:([^@/]+)@", url)


def _short(message: str, settings: Settings, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(redact(message, settings).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def paragraph(
    operation: str, diagnosis: Diagnosis | None, links: list[Link], settings: Settings
) -> str:
    """The lines a failed command ends with: the operation, the cause, the fix."""
    diagnosis = diagnosis or unknown(links, settings)
    return f"error: {operation} failed\n  cause: {diagnosis.cause}\n  fix:   {diagnosis.fix}"


def unknown(links: list[Link], settings: Settings) -> Diagnosis:
    """A cause no rule names: the innermost error, short and redacted; the fix is the trace."""
    root = links[-1] if links else Link("", frozenset(), "no error was recorded")
    return Diagnosis(
        _short(f"{root.name}: {root.message}" if root.name else root.message, settings),
        "run it again with --verbose for the full trace",
    )


def report(operation: str, exc: BaseException, settings: Settings, verbose: bool) -> str:
    """The paragraph for `exc`, after its traceback when `verbose` (redacted)."""
    links = exception_chain(exc)
    text = paragraph(operation, diagnose(links, settings), links, settings)
    if verbose:
        trace = "".join(traceback.format_exception(exc))
        text = redact(trace, settings) + "\n" + text
    return text
