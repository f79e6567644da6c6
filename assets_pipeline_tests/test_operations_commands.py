"""The operator's commands, as typed, against the real PostgreSQL: list the queue, requeue or
clear a symbol (an unknown one is an error naming it, with nothing changed), and prune by age
with a dry run first. The commands run as subprocesses, on the wall clock."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.persistence.batches import BatchResult, recent_batches, record_batch
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.rules.taxonomy import Tier
from assets_pipeline_tests.conftest import get_engine

BIN = Path(sys.executable).parent


@pytest.fixture
def env(pg_url, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environ.update(TRADING_DATABASE_URL=pg_url, ASSETS_PIPELINE_HOME=str(tmp_path))
    return environ


def command(env, *args):
    return subprocess.run(
        [str(BIN / "assets-pipeline"), *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def queue(pg_url, registry):
    """GBPUSD failed for good with a 404; AUDUSD and USDJPY waiting."""
    queue = RefreshQueue(get_engine(pg_url), registry.queue)
    queue.enqueue([("GBPUSD", Tier.HIGH), ("USDJPY", Tier.HIGH), ("AUDUSD", Tier.MEDIUM)])
    queue.fail("GBPUSD", Tier.HIGH, "404 NOT_FOUND: Ticker not found.", retryable=False)
    return queue


def test_queue_list_shows_the_drain_order_then_the_failed_with_their_error(env, queue):
    done = command(env, "queue", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "#", "SYMBOL", "TIER", "BASE", "TIER", "STATE", "ATTEMPTS", "ENQUEUED", "(UTC)", "BATCH"
    ]  # fmt: skip
    rows = [line.split()[:6] for line in lines[1:4]]
    assert rows == [
        ["1", "USDJPY", "high", "high", "queued", "0"],
        ["2", "AUDUSD", "medium", "medium", "queued", "0"],
        ["-", "GBPUSD", "high", "high", "failed", "1"],
    ]
    assert "GBPUSD: last error: 404 NOT_FOUND: Ticker not found." in done.stdout
    as_json = json.loads(command(env, "queue", "list", "--json").stdout)
    assert [(i["symbol"], i["state"]) for i in as_json] == [
        ("USDJPY", "queued"),
        ("AUDUSD", "queued"),
        ("GBPUSD", "failed"),
    ]


def test_requeue_and_clear_change_the_queue_and_an_unknown_symbol_changes_nothing(env, queue):
    before = queue.items()
    refused = command(env, "queue", "requeue", "GBPUSD", "GPBUSD")
    assert refused.returncode == 1
    assert "error: not on the queue: GPBUSD; nothing was changed" in refused.stderr
    assert queue.items() == before

    requeued = command(env, "queue", "requeue", "GBPUSD")
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout == "requeued GBPUSD: waiting at high, attempts reset\n"
    cleared = command(env, "queue", "clear", "AUDUSD")
    assert cleared.stdout == "cleared AUDUSD (was queued)\n"
    assert {i.symbol: (i.status, i.attempts) for i in queue.items()} == {
        "GBPUSD": ("queued", 0),
        "USDJPY": ("queued", 0),
    }


def test_prune_dry_run_counts_per_table_then_prune_deletes_those_rows(env, pg_url):
    engine = get_engine(pg_url)
    now = dt.datetime.now(dt.UTC)
    for batch_id, age in [("c-old", 40), ("c-older", 50), ("c-new", 1)]:
        ended = now - dt.timedelta(days=age)
        record_batch(engine, BatchResult(batch_id, "critical", None, ended, ended))

    dry = command(env, "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("rows older than 30d (before ")
    assert ", would delete:" in dry.stdout.splitlines()[0]
    counts = dict(line.split() for line in dry.stdout.splitlines()[2:])
    assert counts == {
        "data_sources.event_outbox": "0",
        "data_sources.refresh_batches": "2",
        "trading.quote_history": "0",
    }
    assert len(recent_batches(engine, 10)) == 3

    done = command(env, "prune", "--older-than", "30d")
    assert done.returncode == 0 and ", deleted:" in done.stdout
    assert [b.batch_id for b in recent_batches(engine, 10)] == ["c-new"]


def test_prune_refuses_an_age_without_a_unit(env):
    done = command(env, "prune", "--older-than", "30")
    assert done.returncode == 2
    assert "error: --older-than: '30' is not an age such as 30d or 36h" in done.stderr


@pytest.mark.parametrize(
    "retention_days, args, message",
    [
        # issue 17: a retention of centuries overflowed the cutoff and crashed with a traceback
        (
            "1e10",
            ["--dry-run"],
            "ASSETS_RETENTION_DAYS='1e10': must be above 0 and at most 36500",
        ),
        (
            "",
            ["--older-than", "99999999999d", "--dry-run"],
            "error: --older-than: '99999999999d' must be longer than zero and at most 36,500d",
        ),
        ("", ["--older-than", "876001h"], "at most 36,500d"),
    ],
)
def test_prune_refuses_a_retention_of_centuries_naming_where_it_came_from(
    tmp_path, retention_days, args, message
):
    environ = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    environ.update(ASSETS_PIPELINE_HOME=str(tmp_path), ASSETS_RETENTION_DAYS=retention_days)
    done = command(environ, "prune", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
