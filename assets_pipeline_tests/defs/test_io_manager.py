"""The IO manager is a thin adapter: it hands each output's value to the service that stores it,
and writes nothing of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg

import assets_pipeline.defs.io_manager as io_manager
from assets_pipeline.defs.io_manager import QuoteIOManager
from assets_pipeline.defs.resources import TradingDatabase
from assets_pipeline.refresh import Fetched
from assets_pipeline_tests.conftest import quote

#: What writes a symbol's state, its history or its events, or publishes them.
WRITERS = {
    "write_quote",
    "write_bars",
    "record_failure",
    "start_refresh",
    "restore_status",
    "mark_stale",
    "register_symbols",
    "relay_pending",
    "publishing_paused",
    "announce",
    "begin",
    "execute",
}


def test_the_io_manager_holds_no_state_writing_code_of_its_own():
    tree = ast.parse(Path(io_manager.__file__).read_text())
    called = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for alias in n.names
    }
    assert not (called | imported) & WRITERS
    fields = QuoteIOManager.model_fields
    assert set(fields) == {"database"}  # no Redis: it publishes nothing


def test_handle_output_hands_the_quote_to_the_refresh_that_fetched_it(registry):
    handed = []

    class Service:  # stands in for the `Refresh` that fetched the quote
        def store(self, spec, value, run_id):
            handed.append((spec.symbol, value.symbol, run_id))
            return {"written": True, "write_result": "written"}

    # a database that does not exist: the IO manager never touches it to store
    manager = QuoteIOManager(database=TradingDatabase(url="postgresql://nobody@127.0.0.1:9/none"))
    context = dg.build_output_context(asset_key=dg.AssetKey(["quotes", "EURUSD"]), run_id="run-1")
    manager.handle_output(context, Fetched(Service(), registry.get("EURUSD"), quote()))  # type: ignore[arg-type]
    assert handed == [("EURUSD", "EURUSD", "run-1")]
    logged = {key: value.value for key, value in context.get_logged_metadata().items()}
    assert logged == {"written": True, "write_result": "written"}
