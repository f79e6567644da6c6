"""The `price_update` event's contract: `SCHEMA_VERSION` and its JSON Schema, read from the file
beside this module (`price_update.v3.schema.json`, package data; docs/events.md).

The package never validates at run time (`jsonschema` is a development tool): the tests validate
every event they make. It imports nothing else of the package, the lowest layer, so the outbox
can take `SCHEMA_VERSION` from here."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: The version of the `price_update` event this schema describes (`schema_version` in the event).
SCHEMA_VERSION = 3
#: The schema's file name inside this package.
PRICE_UPDATE_SCHEMA_FILE = f"price_update.v{SCHEMA_VERSION}.schema.json"


def price_update_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the `price_update` event, as a new dict each call (a
    caller may change its copy), read from the installed package."""
    text = resources.files(__name__).joinpath(PRICE_UPDATE_SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


__all__ = ["PRICE_UPDATE_SCHEMA_FILE", "SCHEMA_VERSION", "price_update_schema"]
