"""The one refresh: select -> fetch -> validate -> (the IO manager writes) -> settle -> report.

The asset, the CLI (through the asset's job) and the benchmarks share this code, so "a refresh"
means one thing everywhere. It knows nothing of Dagster: the asset turns what it yields into
outputs and checks, and what `settle` returns into run tags, metadata and a failure.

What happens to a symbol that is not stored depends on why:
- its market is closed (a cadence run only): not fetched, put back in its place in the queue;
- it is served end-of-day bars and holds the newest one published (a cadence run only): nothing
  new can exist until its next session closes, so no call is spent; it leaves the queue;
- no budget slot before the deadline: not the symbol's fault, so it goes back where it was in
  the queue and its sync status is left as it was;
- the budget store was unreachable (no call is made, failing closed): back in its place in the
  queue without an attempt, and its sync status `failed` says the store is down;
- anything else (a Polygon error, a rejected quote): sync status `failed` with the reason, and the
  queue's failure rules (demotion, retries, permanent errors) apply;
- no answer at all (the fetch broke off with an exception of its own): the same, as a retryable
  failure saying so, so no symbol is ever left `in_progress` by a refresh that settled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from assets_pipeline.budget.interface import BudgetCongested, BudgetError
from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.persistence.batches import BatchResult, record_batch
from assets_pipeline.persistence.quote_store import QuoteStore
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.polygon.errors import RetryableError
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.quotes import Quote
from assets_pipeline.rules.run_kinds import CRITICAL, QUEUE


@dataclass(frozen=True)
class RefreshPlan:
    """What one refresh run will fetch, in priority order, and what it leaves alone."""

    kind: str
    batch_id: str
    run_id: str | None
    symbols: list[SymbolSpec]
    closed: list[SymbolSpec]
    #: The stored quote of each selected symbol that has one, read before any write.
    stored: Mapping[str, Quote] = dataclasses.field(default_factory=dict)
    #: On end-of-day bars and holding the newest one published: nothing new to fetch.
    current: list[SymbolSpec] = dataclasses.field(default_factory=list)


def plan_refresh(
    registry: Registry,
    selected: Iterable[str],
    kind: str,
    batch_id: str,
    run_id: str | None = None,
    at: dt.datetime | None = None,
    stored: Mapping[str, Quote] | None = None,
) -> RefreshPlan:
    """Order the selected symbols by priority. Cadence runs (critical, queue) spend nothing on
    closed markets, nor on a day bar already stored; a person asking (manual, backfill) gets
    what they asked for."""
    at = at or clock.utcnow()
    stored = stored or {}
    ordered = registry.by_priority(registry.get(symbol) for symbol in selected)
    closed: list[SymbolSpec] = []
    current: list[SymbolSpec] = []
    if kind in (CRITICAL, QUEUE):
        trading = registry.trading(ordered, at)
        closed = [spec for spec in ordered if spec not in trading]
        current = [s for s in trading if not registry.due(s, stored.get(s.symbol), at)]
        ordered = [spec for spec in trading if spec not in current]
    return RefreshPlan(kind, batch_id, run_id, ordered, closed, stored, current)


class Refresh:
    """One run's refresh. Iterate `quotes()`, store each quote, then call `settle()`."""

    def __init__(
        self,
        plan: RefreshPlan,
        client: PolygonClient,
        store: QuoteStore,
        queue: RefreshQueue,
        mode: str,
        log: logging.Logger | Any | None = None,
        plan_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.store = store
        self.queue = queue
        self.mode = mode
        self.log = log or logging.getLogger(__name__)
        self.result = FetchResult(mode=mode)
        self.started_at = clock.utcnow()
        #: The sync statuses the symbols had before this refresh marked them `in_progress`.
        self.before: dict[str, str] = {}
        #: What each stored quote's metadata says of the plan, worked out once per refresh.
        self.plan_metadata: Mapping[str, Any] = plan_metadata or {}
        #: Why the fetch broke off before every symbol was answered, if it did.
        self.broken: str | None = None

    def quotes(self) -> Iterator[tuple[SymbolSpec, Quote, Quote | None]]:
        """Each validated quote as soon as its answer is in, with the quote stored before it
        (read before the write, for the quality check)."""
        self.before = self.store.start_refresh(self.plan.symbols)
        stored = self.plan.stored
        if self.plan.closed:
            names = ", ".join(spec.symbol for spec in self.plan.closed)
            self.log.info(f"market closed, not fetched: {names}")
            self.queue.release_symbols(spec.symbol for spec in self.plan.closed)
        if self.plan.current:
            names = ", ".join(spec.symbol for spec in self.plan.current)
            self.log.info(f"end-of-day plan, newest day bar already stored, not fetched: {names}")
            self.queue.complete(spec.symbol for spec in self.plan.current)
        answers = self.client.iter_fetch(self.plan.symbols, self.mode, self.result)  # type: ignore[arg-type]
        try:
            while (answered := self._next(answers)) is not None:
                spec, answer = answered
                if isinstance(answer, Quote):
                    yield spec, answer, stored.get(spec.symbol)
        finally:
            self.client.close()

    def _next(self, answers: Iterator[tuple[SymbolSpec, Any]]) -> tuple[SymbolSpec, Any] | None:
        """The next symbol's answer, or None when there are no more: the fetch ended, or broke
        off with an exception (logged; `settle` fails the symbols it had not answered)."""
        try:
            return next(answers)
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001 - whatever an upstream made it raise
            self.broken = f"{exc.__class__.__name__}: {clip(self.client.redact(str(exc)))}"
            self.log.error(f"the fetch broke off ({self.broken}); its unanswered symbols fail")
            return None

    def settle(self) -> BatchResult:
        """Record each failure by its cause, settle the queue and record the batch. A symbol
        planned that has neither a quote nor an error (the fetch broke off) fails, retryably,
        saying so: none is left `in_progress`. Error texts are redacted and made safe once."""
        self._fail_unanswered()
        errors = {s: clip(self.client.redact(str(e)), 2000) for s, e in self.result.errors.items()}
        deferred = [s for s, e in self.result.errors.items() if isinstance(e, BudgetCongested)]
        # Not the symbols' fault: back in their place in the queue, without an attempt.
        self.queue.release_symbols(
            s for s, e in self.result.errors.items() if isinstance(e, BudgetError)
        )
        for spec in self.plan.symbols:
            if spec.symbol in deferred:
                self.store.restore_status(spec, self.before.get(spec.symbol, "pending"))
        if deferred:
            self.log.warning(
                f"no budget slot for {', '.join(deferred)}: back in their place in the queue,"
                " sync status unchanged"
            )
        for spec in self.plan.symbols:
            error = self.result.errors.get(spec.symbol)
            if error is None or spec.symbol in deferred:
                continue
            if isinstance(error, BudgetError):  # the budget store is down: say so, blame no one
                self.store.record_failure(spec, errors[spec.symbol])
                continue
            self._fail(spec, errors[spec.symbol], getattr(error, "retryable", True))
        self.queue.complete(self.result.quotes)
        batch = BatchResult(
            batch_id=self.plan.batch_id,
            kind=self.plan.kind,
            run_id=self.plan.run_id,
            started_at=self.started_at,
            ended_at=clock.utcnow(),
            updated=[s.symbol for s in self.plan.symbols if s.symbol in self.result.quotes],
            failed={
                s.symbol: errors[s.symbol]
                for s in self.plan.symbols
                if s.symbol in errors and s.symbol not in deferred
            },
            deferred=deferred,
            queue_processed=len(self.plan.symbols) if self.plan.kind == QUEUE else 0,
            queue_remaining=self.queue.stats().waiting,
            api_calls=self.result.api_calls,
            budget_waits=self.result.budget_waits,
        )
        record_batch(self.store.engine, batch)
        return batch

    def _fail_unanswered(self) -> None:
        why = self.broken or "no answer was recorded"
        for spec in self.plan.symbols:
            if spec.symbol not in self.result.quotes and spec.symbol not in self.result.errors:
                self.result.errors[spec.symbol] = RetryableError(
                    f"the fetch broke off before {spec.symbol} was answered ({why})",
                    ticker=spec.polygon_ticker,
                )

    def _fail(self, spec: SymbolSpec, error: str, retryable: bool) -> None:
        self.store.record_failure(spec, error)
        item = self.queue.fail(spec.symbol, spec.tier, error, retryable=retryable)
        if item is not None:
            self.log.warning(
                f"{spec.symbol}: {item.status} in the queue at tier {item.tier.value}"
                f" after {item.attempts} attempt(s): {error}"
            )

    def notes(self) -> str:
        return f" ({'; '.join(self.result.notes)})" if self.result.notes else ""
