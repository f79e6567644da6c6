"""The budget's store in the trading database (the embedded default, or PostgreSQL without
Redis): the same log in two tables, the state row locked for each step, the database's clock the
only clock, and `fairness.decide` deciding."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from assets_pipeline.budget.fairness import Caller, decide, free_slots
from assets_pipeline.budget.interface import Refusal
from assets_pipeline.budget.limiter import (
    WINDOW_MARGIN_SECONDS,
    BudgetStats,
    as_datetime,
    window_stats,
)
from assets_pipeline.persistence.database import db_epoch_seconds, dialect_insert, insert_ignore
from assets_pipeline.persistence.schema import api_budget_calls, api_budget_state, api_refusals


class SqlBudgetStore:
    """The same log in two tables; the state row is locked for the length of each step."""

    backend = "database"

    def __init__(
        self,
        engine: sa.Engine,
        name: str = "polygon",
        clock: Callable[[sa.Connection], float] = db_epoch_seconds,
    ) -> None:
        self._engine = engine
        self._name = name
        self._now = clock  # the database's own clock (tests fix it)
        self.backend = f"database ({engine.dialect.name})"

    def _locked(self, conn: sa.Connection) -> sa.Row:
        conn.execute(insert_ignore(conn, api_budget_state, {"name": self._name}))
        query = sa.select(api_budget_state).where(api_budget_state.c.name == self._name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).one()

    def _window(self, conn: sa.Connection, now: float, window: float) -> list[float]:
        calls = api_budget_calls.c
        conn.execute(
            sa.delete(api_budget_calls).where(calls.name == self._name, calls.at <= now - window)
        )
        query = sa.select(calls.at).where(calls.name == self._name).order_by(calls.at)
        return list(conn.execute(query).scalars())

    def try_acquire(self, limit: int, window: float, caller: Caller) -> float:
        window += WINDOW_MARGIN_SECONDS
        with self._engine.begin() as conn:
            state = self._locked(conn)
            now = self._now(conn)
            if state.paused_until > now:
                return state.paused_until - now
            times = self._window(conn, now, window)
            wait = decide(now, times, limit, window, caller, state.last_critical_at)
            if wait > 0:
                return wait
            conn.execute(sa.insert(api_budget_calls).values(name=self._name, at=now))
            conn.execute(self._bump("total_calls"))
            if caller.critical:
                conn.execute(
                    sa.update(api_budget_state)
                    .where(api_budget_state.c.name == self._name)
                    .values(last_critical_at=now)
                )
            return 0.0

    def _read(self, conn: sa.Connection) -> tuple[float, float, int, int]:
        """(paused_until, last_critical_at, total_calls, total_waits), read without a write:
        a missing state row reads as the row `_locked` would insert."""
        query = sa.select(
            api_budget_state.c.paused_until,
            api_budget_state.c.last_critical_at,
            api_budget_state.c.total_calls,
            api_budget_state.c.total_waits,
        ).where(api_budget_state.c.name == self._name)
        row = conn.execute(query).one_or_none()
        return tuple(row) if row is not None else (0.0, 0.0, 0, 0)  # type: ignore[return-value]

    def free_slots(self, limit: int, window: float, caller: Caller) -> int:
        """A peek: reads the window's calls without pruning the expired ones."""
        window += WINDOW_MARGIN_SECONDS
        calls = api_budget_calls.c
        with self._engine.connect() as conn:
            paused_until, last_critical, _, _ = self._read(conn)
            now = self._now(conn)
            if paused_until > now:
                return 0
            query = sa.select(calls.at).where(calls.name == self._name, calls.at > now - window)
            times = list(conn.execute(query.order_by(calls.at)).scalars())
        return free_slots(now, times, limit, window, caller, last_critical)

    def pause(self, seconds: float) -> None:
        with self._engine.begin() as conn:
            state = self._locked(conn)
            until = self._now(conn) + seconds
            if until > state.paused_until:
                conn.execute(
                    sa.update(api_budget_state)
                    .where(api_budget_state.c.name == self._name)
                    .values(paused_until=until)
                )

    def record_wait(self) -> None:
        with self._engine.begin() as conn:
            self._locked(conn)
            conn.execute(self._bump("total_waits"))

    def stats(self, limit: int, window: float) -> BudgetStats:
        with self._engine.connect() as conn:
            paused_until, _, total_calls, total_waits = self._read(conn)
            now = self._now(conn)
            calls = api_budget_calls.c
            used, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(calls.at)).where(
                    calls.name == self._name,
                    calls.at > now - window - WINDOW_MARGIN_SECONDS,
                )
            ).one()
        return window_stats(
            limit,
            window,
            now,
            used,
            oldest or 0.0,
            paused_until,
            total_calls,
            total_waits,
            self.backend,
        )

    def refuse(self, feature: str, message: str) -> None:
        with self._engine.begin() as conn:
            values = {"refused_at": self._now(conn), "message": message}
            conn.execute(
                dialect_insert(conn, api_refusals)
                .values(name=self._name, feature=feature, **values)
                .on_conflict_do_update(index_elements=["name", "feature"], set_=values)
            )

    def refusal(self, feature: str, max_age: float) -> Refusal | None:
        with self._engine.connect() as conn:
            now = self._now(conn)
            row = conn.execute(
                sa.select(api_refusals.c.refused_at, api_refusals.c.message).where(
                    api_refusals.c.name == self._name, api_refusals.c.feature == feature
                )
            ).one_or_none()
        if row is None or now - row.refused_at > max_age:
            return None
        return Refusal(feature, as_datetime(row.refused_at), row.message or "")  # type: ignore[arg-type]

    def _bump(self, column: str) -> sa.Update:
        col = api_budget_state.c[column]
        return (
            sa.update(api_budget_state)
            .where(api_budget_state.c.name == self._name)
            .values({column: col + 1})
        )
