"""Migrating a fresh database from many processes at once, on PostgreSQL: they take turns."""

from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa

from assets_pipeline.persistence.schema import VERSION_TABLE, metadata

PROCESSES = 8


def _start(url: str, barrier, errors) -> None:
    """One process running `assets-pipeline migrate`'s upgrade, then starting as the writer."""
    from assets_pipeline.persistence.database import migrate_database
    from assets_pipeline_tests.conftest import get_engine

    barrier.wait(timeout=60)
    try:
        migrate_database(url)
        get_engine(url).dispose()
    except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
        errors.put(f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}")


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))  # a fresh empty database each round
def test_processes_migrating_an_empty_database_together_create_it_once(empty_pg_url, attempt):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)  # released together, once every process is ready
    errors = ctx.Queue()
    workers = [
        ctx.Process(target=_start, args=(empty_pg_url, barrier, errors)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [w.exitcode for w in workers] == [0] * PROCESSES

    raw = sa.create_engine(empty_pg_url, poolclass=sa.NullPool)
    with raw.connect() as conn:
        tables = conn.exec_driver_sql(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).all()
        versions = conn.exec_driver_sql(f"SELECT * FROM data_sources.{VERSION_TABLE}").all()
    raw.dispose()
    expected = sorted(
        [*((t.schema, t.name) for t in metadata.sorted_tables), ("data_sources", VERSION_TABLE)]
    )
    assert sorted(tuple(row) for row in tables) == expected  # each once, none elsewhere
    assert len(versions) == 1  # one revision recorded, not one per process
