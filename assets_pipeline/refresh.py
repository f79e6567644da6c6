"""The live refresh: the one owner of a symbol's state, from start to settle. `Refresh` marks the
symbols `in_progress`, fetches and validates, writes each quote with its history row, sync status
and event in one transaction (`store`), then settles (failures, one outbox relay per step, the
queue, the batch). `mark_stale` records the freshness verdicts. It knows no Dagster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from assets_pipeline.budget.interface import BudgetCongested, BudgetError
from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.http.errors import RetryableError
from assets_pipeline.persistence.batches import BatchResult, record_batch
from assets_pipeline.persistence.outbox import RelayResult, publishing_paused, relay_pending
from assets_pipeline.persistence.quote_store import QuoteStore, WriteOutcome
from assets_pipeline.persistence.refresh_queue import RefreshQueue
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, iso_utc
from assets_pipeline.rules.run_kinds import CRITICAL, QUEUE
from assets_pipeline.sourcing import Sourcing


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
    """One step's refresh. Iterate `quotes()`, `store` each quote, then call `settle()`.

    A symbol that is not stored ends by why:
    - market closed (a cadence run only): not fetched, put back in its place in the queue;
    - on end-of-day bars and holding the newest one (a cadence run only): no call, out of the queue;
    - no budget slot before the deadline: back in its place, its sync status as it was;
    - the budget store unreachable (no call, failing closed): back in its place, sync status
      `failed` saying the store is down;
    - anything else (a Polygon error, a rejected quote): `failed` with the reason, and the queue's
      failure rules (demotion, retries, permanent errors) apply;
    - no answer at all (the fetch broke off): the same, retryably, saying so; none is left
      `in_progress` by a refresh that settled.
    """

    def __init__(
        self,
        plan: RefreshPlan,
        client: PolygonClient | Sourcing,
        store: QuoteStore,
        queue: RefreshQueue,
        mode: str,
        log: logging.Logger | Any | None = None,
        plan_metadata: Mapping[str, Any] | None = None,
        redis: Any | None = None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.quote_store = store
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
        #: Where the step's events are announced (None: no Redis, they wait for the relay).
        self.redis = redis
        #: What each `store` did, by symbol.
        self.outcomes: dict[str, WriteOutcome] = {}
        #: The step's one relay, once `settle` has run it (None: nothing to announce, or no Redis).
        self.relayed: RelayResult | None = None
        #: The provider each symbol was asked of first (its sync row went `in_progress`).
        self.first: dict[str, str] = {}

    def quotes(self) -> Iterator[tuple[SymbolSpec, Quote, Quote | None]]:
        """Each validated quote as soon as its answer is in, with the quote stored before it
        (read before the write, for the quality check)."""
        self.before = self._start(self.plan.symbols)
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

    def _start(self, specs: list[SymbolSpec]) -> dict[str, str]:
        """Sync status `in_progress` on each symbol's first provider's row; the statuses those
        rows had."""
        groups: dict[str, list[SymbolSpec]] = {}
        for spec in specs:
            groups.setdefault(self._first(spec), []).append(spec)
        before: dict[str, str] = {}
        for provider, group in groups.items():
            before.update(self.quote_store.start_refresh(group, provider))
        return before

    def _first(self, spec: SymbolSpec) -> str:
        first = self.first.get(spec.symbol)
        if first is None:
            chooser = getattr(self.client, "first_choice", None)
            first = self.first[spec.symbol] = chooser(spec) if chooser else ProviderName.POLYGON
        return first

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

    def store(self, spec: SymbolSpec, quote: Quote, run_id: str | None = None) -> dict[str, Any]:
        """Write a validated quote: `metadata.last_update`, the history row, sync status `success`
        and the outbox event, in one transaction (`QuoteStore.write_quote`). What it did, as the
        output's metadata. Its event is announced by `settle`, once for the whole step."""
        primary = getattr(self.client, "primary", None)
        chosen = primary(spec) if primary else None
        outcome = self.quote_store.write_quote(spec, quote, run_id=run_id, primary=chosen)
        self.outcomes[spec.symbol] = outcome
        metadata: dict[str, Any] = {"written": outcome.written, "write_result": outcome.reason}
        if outcome.stored_data_time is not None:
            metadata["previous_data_time"] = iso_utc(outcome.stored_data_time)
        if outcome.event_id is not None:
            metadata["event_id"] = outcome.event_id
        return metadata

    def settle(self) -> BatchResult:
        """Record each failure by its cause, settle the queue and record the batch. A symbol
        planned that has neither a quote nor an error (the fetch broke off) fails, retryably,
        saying so: none is left `in_progress`. Error texts are redacted and made safe once. The
        step's events are announced here, in one relay after every write."""
        self._announce()
        self._fail_unanswered()
        errors = {s: clip(self.client.redact(str(e)), 2000) for s, e in self.result.errors.items()}
        deferred = [s for s, e in self.result.errors.items() if isinstance(e, BudgetCongested)]
        # Not the symbols' fault: back in their place in the queue, without an attempt.
        self.queue.release_symbols(
            s for s, e in self.result.errors.items() if isinstance(e, BudgetError)
        )
        self._record_fallbacks()
        self._restore(deferred)
        for spec in self.plan.symbols:
            error = self.result.errors.get(spec.symbol)
            if error is None or spec.symbol in deferred:
                continue
            provider = self._last_asked(spec)
            if isinstance(error, BudgetError):  # the budget store is down: say so, blame no one
                self.quote_store.record_failure(spec, errors[spec.symbol], provider)
                continue
            self._fail(spec, errors[spec.symbol], getattr(error, "retryable", True), provider)
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
        record_batch(self.quote_store.engine, batch)
        return batch

    def _restore(self, deferred: list[str]) -> None:
        """The symbols that got no budget slot: their first provider's sync status as it was."""
        for spec in self.plan.symbols:
            if spec.symbol in deferred:
                before = self.before.get(spec.symbol, "pending")
                self.quote_store.restore_status(spec, before, self._first(spec))
        if deferred:
            self.log.warning(
                f"no budget slot for {', '.join(deferred)}: back in their place in the queue,"
                " sync status unchanged"
            )

    def _announce(self) -> None:
        """The step's one relay of the outbox, oldest first, when it wrote an event. Redis unset,
        down a moment ago, or down now: the events wait for the relay sensor; the writes stand."""
        written = sum(outcome.written for outcome in self.outcomes.values())
        if not written or self.redis is None:
            return
        if publishing_paused(self.redis):
            self.log.info(f"{written} stored; Redis was down a moment ago: the relay sends")
            return
        self.relayed = relay_pending(self.quote_store.engine, self.redis)
        if self.relayed.error:
            self.log.warning(
                f"{written} quote(s) stored; events wait in the outbox: Redis said"
                f" {self.relayed.error}"
            )

    def _fail_unanswered(self) -> None:
        why = self.broken or "no answer was recorded"
        for spec in self.plan.symbols:
            if spec.symbol not in self.result.quotes and spec.symbol not in self.result.errors:
                self.result.errors[spec.symbol] = RetryableError(
                    f"the fetch broke off before {spec.symbol} was answered ({why})",
                    ticker=spec.polygon_ticker,
                )

    def _tried(self, spec: SymbolSpec) -> list[tuple[str, str]]:
        fell_back = getattr(self.client, "fell_back", None)
        return fell_back(spec.symbol) if fell_back else []

    def _last_asked(self, spec: SymbolSpec) -> str:
        """The provider whose error is the symbol's: the last one asked, else its first."""
        tried = self._tried(spec)
        return tried[-1][0] if tried else self._first(spec)

    def _record_fallbacks(self) -> None:
        """Each provider that did not serve a symbol gets its sync status `failed` with why
        (the refresh's hysteresis reads them); the one whose error is the symbol's is recorded
        with the symbol's failure, and one that served it is not failed."""
        failed = getattr(self.client, "failed", None)
        for spec in self.plan.symbols:
            tried = failed(spec.symbol) if failed else []
            quote = self.result.quotes.get(spec.symbol)
            if quote is None and tried and tried[-1] == self._tried(spec)[-1]:
                tried = tried[:-1]  # the symbol's own error: recorded with its failure
            for provider, why in tried:
                if quote is None or provider != quote.provider:
                    text = clip(self.client.redact(why), 2000)
                    self.quote_store.record_failure(spec, text, provider)
            self._restore_congested(spec)

    def _restore_congested(self, spec: SymbolSpec) -> None:
        """The first provider, if only our budget kept it from answering: its sync status as
        it was, neither `failed` nor left `in_progress` (restoring leaves a status set since)."""
        congested = getattr(self.client, "congested", None)
        first = self._first(spec)
        if congested and first in congested(spec.symbol):
            self.quote_store.restore_status(spec, self.before.get(spec.symbol, "pending"), first)

    def _fail(self, spec: SymbolSpec, error: str, retryable: bool, provider: str) -> None:
        self.quote_store.record_failure(spec, error, provider)
        item = self.queue.fail(spec.symbol, spec.tier, error, retryable=retryable)
        if item is not None:
            self.log.warning(
                f"{spec.symbol}: {item.status} in the queue at tier {item.tier.value}"
                f" after {item.attempts} attempt(s): {error}"
            )

    def notes(self) -> str:
        notes = list(self.result.notes)
        if self.relayed is not None:
            notes.append(f"events: {self.relayed.summary()}")
        return f" ({'; '.join(notes)})" if notes else ""


@dataclass(frozen=True)
class Fetched:
    """A symbol's validated quote on its way to the store: the value its output carries. The IO
    manager hands it back to the refresh that fetched it (`store`), which writes it."""

    refresh: Refresh
    spec: SymbolSpec
    quote: Quote

    def store(self, run_id: str | None) -> dict[str, Any]:
        return self.refresh.store(self.spec, self.quote, run_id)


def mark_stale(
    store: QuoteStore,
    judged: Iterable[SymbolSpec],
    stale: Mapping[SymbolSpec, dt.datetime | None],
    log: logging.Logger | Any,
) -> int:
    """The freshness checks' verdicts, recorded (the checks only read): every judged symbol gets
    its sync status row, so one never refreshed can show `stale`; each judged stale turns `stale`
    where its last sync is still the one judged (a quote committed meanwhile stays `success`)."""
    store.register_symbols(judged)
    marked = store.mark_stale(stale)
    if stale:
        log.warning(
            f"stale: {', '.join(s.symbol for s in stale)};"
            f" sync status set to 'stale' for {marked} of them"
        )
    return marked
