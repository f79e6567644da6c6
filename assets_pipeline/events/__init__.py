"""The contract of the events announced on Redis: the `price_update` event's JSON Schema.

The schema (`price_update.v3.schema.json`, beside this module, shipped as package data) is the
consumers' documentation and the tests' check of every event the package emits; docs/events.md
says where events go and how the version moves. This module only reads the file: validating
takes `jsonschema`, a development tool, so the package never validates at run time (the tests
validate every event they make, `assets_pipeline_tests/event_contract.py`).

It imports nothing else of the package: the lowest layer, so the outbox (persistence) can take
`SCHEMA_VERSION` from here.
"""

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
