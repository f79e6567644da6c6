"""The `price_update` event's contract, version 3: what a consumer may rely on.

The published schema (`assets_pipeline/events/price_update.v3.schema.json`, docs/events.md) is
checked as a consumer uses it; `event_contract` is the tests' stricter check of what the package
itself emits (run on every event a test leaves behind, conftest.py).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import tomllib
from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from assets_pipeline import events
from assets_pipeline_tests import event_contract
from assets_pipeline_tests.conftest import REPO

VALID = {
    "type": "price_update",
    "schema_version": 3,
    "symbol": "EURUSD",
    "event_id": "0b7e6f5c-3c1a-4d2b-9e8f-1a2b3c4d5e6f",
    "sequence": 7,
    "data": {
        "bid": 1.0841,
        "ask": 1.0843,
        "spread": 0.0002,
        "last_price": 1.0842,
        "timestamp": "2026-11-30T22:00:00.000000Z",
        "data_time": "2026-11-30T22:00:00.000000Z",
        "fetched_at": "2026-12-01T02:04:14.123456Z",
        "source": "polygon:v2-aggs-grouped-daily",
        "provider": "polygon",
        "plan": "free",
        "timeframe": "END-OF-DAY",
    },
}


def event(**changes) -> dict:
    """The valid event with changes: `data__bid=None` sets `data.bid`, `data__bid=DROP` drops it."""
    out = copy.deepcopy(VALID)
    for key, value in changes.items():
        where, _, key = key.rpartition("__")
        target = out[where] if where else out
        if value is DROP:
            del target[key]
        else:
            target[key] = value
    return out


DROP = object()


@pytest.fixture(scope="module")
def consumer() -> Draft202012Validator:
    """The published schema, as a consumer validates with it."""
    return Draft202012Validator(events.price_update_schema())


def errors(validator, document) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


# --- what passes ---------------------------------------------------------------------------------


def test_a_valid_v3_event_passes(consumer):
    assert errors(consumer, VALID) == []
    assert event_contract.violations(VALID) == (3, [])


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {"data__bid": None, "data__ask": None, "data__spread": None}, id="trades-only"
        ),
        pytest.param({"data__last_price": None}, id="quote-sides-only"),
        pytest.param({"data__spread": 0}, id="locked-market-spread-0"),
        pytest.param({"data__plan": "paid", "data__timeframe": "REAL-TIME"}, id="paid-real-time"),
        pytest.param({"data__timeframe": "DELAYED"}, id="delayed"),
        pytest.param({"symbol": "BRK.B"}, id="symbol-with-a-dot"),
        pytest.param({"sequence": 1}, id="a-symbols-first-event"),
    ],
)
def test_these_valid_variations_pass(consumer, changes):
    document = event(**changes)
    assert errors(consumer, document) == []
    assert event_contract.violations(document) == (3, [])


def test_consumers_must_tolerate_keys_they_do_not_know(consumer):
    # Forward compatibility: a new optional key is not a breaking change, so the published
    # schema lets it through, at the top level and in `data`...
    document = event(trace_id="abc", data__venue="XNAS")
    assert errors(consumer, document) == []
    # ...while the package's own events carry only documented keys (document a key first).
    _, problems = event_contract.violations(document)
    assert len(problems) == 2 and all("Additional properties" in p for p in problems)


# --- what fails ----------------------------------------------------------------------------------

WRONG = {
    "missing data_time": {"data__data_time": DROP},
    "a naive time (no Z)": {"data__data_time": "2026-11-30T22:00:00.000000"},
    "a time with an offset instead of Z": {"data__fetched_at": "2026-12-01T03:04:14.123456+01:00"},
    "a time without microseconds": {"data__fetched_at": "2026-12-01T02:04:14Z"},
    "a negative price": {"data__bid": -1.0841},
    "a zero price": {"data__last_price": 0},
    "a negative spread": {"data__spread": -0.0002},
    "a price as a string": {"data__ask": "1.0843"},
    "an unknown timeframe": {"data__timeframe": "INTRADAY"},
    "an unknown plan": {"data__plan": "enterprise"},
    "a wrong schema_version": {"schema_version": 2},
    "schema_version as a string": {"schema_version": "3"},
    "a missing symbol": {"symbol": DROP},
    "a lower-case symbol": {"symbol": "eurusd"},
    "a provider's ticker as symbol": {"symbol": "C:EURUSD"},
    "a missing event_id": {"event_id": DROP},
    "an event_id that is no uuid4": {"event_id": "42"},
    "sequence 0": {"sequence": 0},
    "another type": {"type": "trade"},
    "no price at all": {
        "data__bid": None,
        "data__ask": None,
        "data__spread": None,
        "data__last_price": None,
    },
    "one side of a quote": {"data__ask": None, "data__spread": None, "data__last_price": None},
    "a bid without an ask": {"data__ask": None, "data__spread": None},
    "a spread without sides": {"data__bid": None, "data__ask": None},
    "source without an endpoint": {"data__source": "polygon"},
    "missing provider": {"data__provider": DROP},
    "missing data": {"data": DROP},
}


@pytest.mark.parametrize("changes", WRONG.values(), ids=WRONG.keys())
def test_each_kind_of_wrong_event_fails(consumer, changes):
    document = event(**changes)
    assert errors(consumer, document) != []
    assert event_contract.violations(document)[1] != []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data__timestamp": "2026-11-30T21:00:00.000000Z"}, "differs from data_time"),
        ({"data__source": "massive:v2-aggs"}, "not $.data.provider"),
        ({"data__data_time": "2026-13-30T22:00:00.000000Z", "data__timestamp": DROP}, "real time"),
    ],
    ids=["timestamp-is-not-data_time", "source-of-another-provider", "month-13"],
)
def test_what_json_schema_cannot_say_is_checked_for_our_own_events(changes, message):
    _, problems = event_contract.violations(event(**changes))
    assert any(message in problem for problem in problems), problems


def test_a_price_that_is_not_a_finite_number_is_not_json():
    text = json.dumps(VALID).replace("1.0841", "NaN", 1)
    _, failure = event_contract.check_text(text, "here")
    assert failure is not None and "NaN is not JSON" in failure


# --- the schema file -----------------------------------------------------------------------------


def test_the_schema_is_valid_json_schema_2020_12():
    schema = events.price_update_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]


def test_the_schema_is_the_version_the_package_names():
    schema = events.price_update_schema()
    assert schema["properties"]["schema_version"]["const"] == events.SCHEMA_VERSION == 3
    assert events.PRICE_UPDATE_SCHEMA_FILE == "price_update.v3.schema.json"


def test_every_field_is_described_for_consumers():
    schema = events.price_update_schema()
    undescribed = [
        f"{where}.{name}"
        for where, properties in [
            ("$", schema["properties"]),
            ("$.data", schema["properties"]["data"]["properties"]),
        ]
        for name, spec in properties.items()
        if not spec.get("description")
    ]
    assert undescribed == []
    assert schema["description"] and schema["properties"]["data"]["description"]


def test_the_installed_package_carries_the_schema():
    resource = resources.files("assets_pipeline.events") / events.PRICE_UPDATE_SCHEMA_FILE
    assert resource.is_file()
    assert json.loads(resource.read_text("utf-8")) == events.price_update_schema()
    # and a wheel built from this tree carries it: the package data names it
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["assets_pipeline.events"]
    assert any(fnmatch.fnmatch(events.PRICE_UPDATE_SCHEMA_FILE, p) for p in patterns)


def test_each_call_gives_a_copy_of_its_own():
    first = events.price_update_schema()
    first["properties"].clear()
    assert events.price_update_schema()["properties"]
