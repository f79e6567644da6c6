"""The tests' check of the events the package emits, against the published contract.

`conftest.py` runs it on everything a test leaves behind: every entry of its Redis namespace's
event stream(s) (`redis_namespace`), and every outbox row of its database (`pg_url`,
`sqlite_url`), including the events that never reached Redis. Events published by subprocesses
(Dagster runs, the CLI) land in the same stream, so they are checked too.

The check is the published schema (`assets_pipeline.events`) held a little tighter, as a
producer should be: the package emits exactly the documented keys (consumers must tolerate
unknown ones, but an undocumented key is a change to document first), and what JSON Schema
cannot say is checked here: no NaN or Infinity token, real calendar times, `timestamp` equal to
`data_time`, `provider` the first part of `source`, and a stream entry's `symbol` and `sequence`
fields equal to its event's.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from typing import Any

from jsonschema import Draft202012Validator

from assets_pipeline.events import price_update_schema

#: What a test marked with this may leave behind unchecked (it plants a broken event on purpose).
MARKER = "allow_invalid_events"
_TIMES = ("timestamp", "data_time", "fetched_at")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with no key beyond the documented ones, at the top level and in `data`."""
    schema = copy.deepcopy(schema)
    schema["additionalProperties"] = False
    schema["properties"]["data"]["additionalProperties"] = False
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    """The schema held strict, built once per process."""
    return Draft202012Validator(_strict(price_update_schema()))


def _no_constant(token: str) -> float:
    raise ValueError(f"{token} is not JSON: prices are finite numbers")


def parse_event(text: str | bytes) -> Any:
    """The event's JSON as a strict consumer parses it: NaN and Infinity are refused."""
    return json.loads(text, parse_constant=_no_constant)


def _beyond_the_schema(event: dict[str, Any]) -> list[str]:
    """What JSON Schema cannot say about a v3 event's data."""
    data = event.get("data")
    if not isinstance(data, dict):
        return []
    problems = []
    for key in _TIMES:
        try:
            dt.datetime.fromisoformat(str(data.get(key)).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"$.data.{key}: {data.get(key)!r} is not a real time")
    if data.get("timestamp") != data.get("data_time"):
        problems.append("$.data.timestamp: differs from data_time (it is kept equal to it)")
    if str(data.get("source", "")).split(":", 1)[0] != data.get("provider"):
        problems.append("$.data.source: its provider part is not $.data.provider")
    return problems


def violations(event: Any) -> tuple[int | None, list[str]]:
    """(the version the event was checked as, what is wrong with it: empty when it is valid)."""
    version = event.get("schema_version") if isinstance(event, dict) else None
    extra = _beyond_the_schema(event)
    errors = sorted(_validator().iter_errors(event), key=lambda e: list(e.absolute_path))
    found = [f"{error.json_path}: {error.message}" for error in errors] + extra
    return (version if isinstance(version, int) else None), found


def check_text(text: str | bytes, where: str) -> tuple[int | None, str | None]:
    """(the version checked as, a failure message naming `where`, the event and the errors)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        event = parse_event(text)
    except ValueError as exc:
        return None, f"{where}: not valid JSON ({exc}):\n  {text!r}"
    version, problems = violations(event)
    if not problems:
        return version, None
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return version, f"{where}: an invalid price_update event\n  {text}\n{listed}"


def check_stream_entry(
    entry_id: bytes, fields: dict[bytes, bytes], stream: str
) -> tuple[int | None, str | None]:
    """`check_text` for one stream entry: its event, and its fields against its event."""
    where = f"stream {stream} entry {entry_id.decode()}"
    text = fields.get(b"event", b"")
    version, failure = check_text(text, where)
    if failure:
        return version, failure
    event = parse_event(text)
    symbol, sequence = fields.get(b"symbol", b"").decode(), fields.get(b"sequence", b"").decode()
    if (symbol, sequence) != (event["symbol"], str(event["sequence"])):
        return version, (
            f"{where}: its fields symbol={symbol!r} sequence={sequence!r} differ from its"
            f" event's\n  {text.decode('utf-8', errors='replace')}"
        )
    return version, None


@functools.cache
def _relay_version() -> int:
    from assets_pipeline.persistence.outbox import SCHEMA_VERSION

    return SCHEMA_VERSION


def as_announced(payload: str) -> str:
    """An outbox payload as the relay would announce it: with the relay's `schema_version` and a
    `sequence` (1 here: the relay numbers it when it announces it)."""
    try:
        event = parse_event(payload)
    except ValueError:
        return payload
    if not isinstance(event, dict):
        return payload
    return json.dumps({**event, "schema_version": _relay_version(), "sequence": 1})
