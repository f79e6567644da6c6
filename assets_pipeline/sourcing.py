"""Each symbol's quote from the first of its providers that can serve it now, falling back
within the run: outages, spent retries, refusals and open circuits pass a symbol to the next
provider, and so does an answer older than the next could give (end of day, or stale while the
market trades). An outage opens the provider's circuit for every process (retried on a
schedule); a provider that failed a symbol lately is asked after the others (hysteresis)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.http.errors import (
    NotEntitled,
    OutOfTime,
    RetryableError,
    TickerNotFound,
)
from assets_pipeline.polygon.client import FetchResult, PolygonClient
from assets_pipeline.providers.contract import Provider
from assets_pipeline.rules import clock
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.fallback import (
    CIRCUIT,
    Candidate,
    Circuit,
    FallbackPolicy,
    order,
    primary,
)
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.quotes import Quote, QuoteRejected, Timeframe
from assets_pipeline.rules.taxonomy import AssetType

POLYGON = ProviderName.POLYGON.value
#: Errors of one instrument, not of the provider: they never open its circuit.
_OWN_ERRORS = (TickerNotFound, NotEntitled, QuoteRejected, BudgetError, OutOfTime)
#: A circuit's memory in the budget store: far longer than any `retry_after`.
_CIRCUIT_MEMORY_SECONDS = 7 * 86_400.0


@dataclass
class Source:
    """One provider as a refresh sees it: how it is asked (Polygon through its client, the
    others through the provider contract), its shared budget and the markets it serves live."""

    name: str
    budget: Any
    live: Set[AssetType]
    provider: Provider | None = None

    def instrument(self, spec: SymbolSpec) -> str | None:
        return spec.polygon_ticker if self.provider is None else self.provider.instrument(spec)

    def circuit(self) -> Circuit:
        """Its circuit as every process sees it (closed when the store cannot say)."""
        try:
            refusal = self.budget.refusal(CIRCUIT, _CIRCUIT_MEMORY_SECONDS)
        except BudgetError:
            return Circuit()
        return Circuit() if refusal is None else Circuit.from_message(refusal.message)

    def open_circuit(self, why: str) -> None:
        try:
            self.budget.refuse(CIRCUIT, Circuit(clock.utcnow(), clip(why, 300)).as_message())
        except BudgetError:
            pass  # the store is down: every call fails closed anyway

    def has_slot(self) -> bool:
        try:
            return self.budget.free_slots() > 0
        except BudgetError:
            return False


@dataclass
class Outcome:
    """What the providers did for one symbol: the quote chosen, or the last error; each
    provider that did not serve it, and why; the weaker answers kept in case none does better."""

    tried: list[tuple[str, str]] = field(default_factory=list)
    weak: list[Quote] = field(default_factory=list)
    error: Exception | None = None
    #: Providers passed over for want of a budget slot of ours: not their failure.
    congested: set[str] = field(default_factory=set)


class Sourcing:
    """A refresh's providers, asked in each symbol's order (see the module docstring). It
    stands where the refresh's Polygon client stood: `iter_fetch`, `redact`, `close`."""

    def __init__(
        self,
        polygon: PolygonClient,
        others: Sequence[Source],
        polygon_source: Source,
        registry: Registry,
        held: Mapping[str, Set[str]] | None = None,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.client = polygon
        self.sources = {s.name: s for s in (polygon_source, *others)}
        self.registry = registry
        self.policy: FallbackPolicy = registry.fallback
        #: Per symbol, the providers that failed it within `return_after`.
        self.held = held or {}
        self.log = log or logging.getLogger(__name__)
        #: Per symbol, what happened with each provider (for the sync statuses and metadata).
        self.outcomes: dict[str, Outcome] = {}
        #: Circuits found open as the refresh started, and those it opened.
        self.open: dict[str, Circuit] = {}
        self._circuits_read = False

    # --- the contract the refresh uses -------------------------------------------------------

    def redact(self, text: str) -> str:
        for source in self.sources.values():
            redact = getattr(source.provider, "redact", None)
            text = redact(text) if redact else text
        return self.client.redact(text)

    def close(self) -> None:
        for source in self.sources.values():
            if source.provider is not None:
                source.provider.close()
        self.client.close()

    def candidates(self, spec: SymbolSpec, busy: Set[str] = frozenset()) -> list[str]:
        """The providers to ask for the symbol, in order (`rules/fallback.order`). One whose
        circuit is open is left out while another can be asked: alone, it is still asked."""
        held = self.held.get(spec.symbol, set())
        found = []
        for name in self.registry.chain(spec):
            source = self.sources.get(name)
            if source is None or source.instrument(spec) is None:
                continue
            live = spec.asset_type in source.live
            found.append(Candidate(name, live, name in held, name in busy))
        closed = [c for c in found if c.name not in self.open]
        return order(closed or found)

    def primary(self, spec: SymbolSpec) -> str | None:
        """The provider that serves the symbol when all are healthy (`rules/fallback.primary`):
        any other serving it is a fallback."""
        usable = {n for n, s in self.sources.items() if s.instrument(spec) is not None}
        live = {n for n, s in self.sources.items() if spec.asset_type in s.live}
        return primary(self.registry.chain(spec), usable, live)

    def first_choice(self, spec: SymbolSpec) -> str:
        """The provider the symbol is asked of first (its sync row goes `in_progress`)."""
        self._read_circuits()
        return next(iter(self.candidates(spec)), POLYGON)

    def iter_fetch(
        self, specs: Sequence[SymbolSpec], mode: Any, result: FetchResult
    ) -> Iterator[tuple[SymbolSpec, Quote | Exception]]:
        """Each symbol's final answer as soon as it is known, recorded in `result` like the
        client's: the quote chosen, or the last provider's error."""
        self._read_circuits()
        busy = self._busy()
        queue = {spec.symbol: self.candidates(spec, busy) for spec in specs}
        pending = list(specs)
        while pending:
            later: dict[str, SymbolSpec] = {}
            for name, group in self._groups(pending, queue).items():
                for spec, answer in self._ask(name, group, mode, result):
                    final = self._judge(spec, name, answer, queue)
                    if final is None:
                        later[spec.symbol] = spec
                    else:
                        yield self._record(spec, final, result)
            for spec in pending:  # nobody left to ask (every circuit open)
                if spec.symbol not in later and self._unsettled(spec, result):
                    yield self._record(spec, self._last_resort(spec), result)
            pending = list(later.values())

    def _busy(self) -> set[str]:
        """The providers without a budget slot free now (one read each; none when Polygon is
        the only one: it is asked anyway)."""
        if len(self.sources) == 1:
            return set()
        return {name for name, source in self.sources.items() if not source.has_slot()}

    # --- asking ------------------------------------------------------------------------------

    def _read_circuits(self) -> None:
        """Each provider's circuit, read once a refresh (one read of its budget store)."""
        if self._circuits_read:
            return
        self._circuits_read = True
        if len(self.sources) == 1:
            return  # nobody to fall back to: the one provider is asked whatever its circuit
        now, retry = clock.utcnow(), self.policy.retry_after_seconds
        for name, source in self.sources.items():
            circuit = source.circuit()
            if circuit.is_open(now, retry):
                self.open[name] = circuit
                self.log.info(f"{name}: circuit {circuit.describe(now, retry)}; not asked")

    def _groups(
        self, pending: Sequence[SymbolSpec], queue: Mapping[str, list[str]]
    ) -> dict[str, list[SymbolSpec]]:
        """The symbols by the provider they are asked of next (open circuits skipped)."""
        groups: dict[str, list[SymbolSpec]] = {}
        for spec in pending:
            names = queue[spec.symbol]
            while len(names) > 1 and names[0] in self.open:  # the last is asked all the same
                self._outcome(spec).tried.append((names.pop(0), "circuit open"))
            if names:
                groups.setdefault(names[0], []).append(spec)
        return groups

    def _ask(
        self, name: str, group: list[SymbolSpec], mode: Any, result: FetchResult
    ) -> Iterator[tuple[SymbolSpec, Quote | Exception]]:
        """The group's answers from one provider; what it broke off without answering fails
        retryably; an outage (no quote, no error of a symbol's own) opens its circuit."""
        answered: dict[str, Quote | Exception] = {}
        try:
            if self._past_deadline():
                raise OutOfTime(f"the refresh's deadline passed before {name} was asked")
            for spec, answer in self._answers(name, group, mode, result):
                answered[spec.symbol] = answer
                yield spec, answer
        except Exception as exc:  # noqa: BLE001 - whatever the provider raised
            why = f"{exc.__class__.__name__}: {clip(self.redact(str(exc)), 300)}"
            for spec in group:
                if spec.symbol not in answered:
                    error = exc if isinstance(exc, OutOfTime) else RetryableError(why)
                    answered[spec.symbol] = error
                    yield spec, error
        self._judge_health(name, answered)

    def _answers(
        self, name: str, group: list[SymbolSpec], mode: Any, result: FetchResult
    ) -> Iterator[tuple[SymbolSpec, Quote | Exception]]:
        source = self.sources[name]
        if source.provider is None:  # Polygon: its client's own refresh path
            own, spent = FetchResult(mode=mode), _Cost.of(result)
            try:
                for answered in self.client.iter_fetch(group, mode, own):
                    spent.add(result, own)  # kept current: each output's metadata reads it
                    yield answered
            finally:
                spent.add(result, own)
                result.notes.extend(own.notes)
                result.mode = own.mode or result.mode
            return
        instruments = {spec.symbol: source.instrument(spec) or "" for spec in group}
        before = getattr(source.provider, "calls", 0)
        try:
            answers = source.provider.fetch_quotes(list(dict.fromkeys(instruments.values())))
        finally:
            result.api_calls += getattr(source.provider, "calls", 0) - before
        for spec in group:
            answer = answers.get(instruments[spec.symbol])
            if answer is None:
                answer = TickerNotFound(f"{name} returned nothing for {instruments[spec.symbol]}")
            if isinstance(answer, Quote):
                answer = answer.for_symbol(spec.symbol, spec.price_precision)
            yield spec, answer

    def _past_deadline(self) -> bool:
        deadline = getattr(self.client, "deadline", None)
        return deadline is not None and time.monotonic() >= deadline

    def _judge_health(self, name: str, answered: Mapping[str, Quote | Exception]) -> None:
        """An outage: answers for every symbol asked, none a quote, none an error of a symbol's
        own. The circuit opens for every process; this refresh asks the provider no more."""
        errors = [a for a in answered.values() if not isinstance(a, Quote)]
        if (
            not answered
            or len(errors) < len(answered)
            or any(isinstance(e, _OWN_ERRORS) for e in errors)
        ):
            return
        why = f"{errors[0].__class__.__name__}: {clip(self.redact(str(errors[0])), 200)}"
        self.sources[name].open_circuit(why)
        self.open[name] = Circuit(clock.utcnow(), why)
        retry = math.ceil(self.policy.retry_after_seconds)
        self.log.warning(f"{name}: outage ({why}); circuit open, asked again in {retry}s")

    # --- judging -----------------------------------------------------------------------------

    def _judge(
        self,
        spec: SymbolSpec,
        name: str,
        answer: Quote | Exception,
        queue: Mapping[str, list[str]],
    ) -> Quote | Exception | None:
        """The symbol's final answer, or None: ask the next provider. A quote is final unless
        a later provider may give newer data (it is end of day, or stale while its market
        trades); an error passes the symbol on while another provider is left."""
        names = queue[spec.symbol]
        if names and names[0] == name:
            names.pop(0)
        outcome = self._outcome(spec)
        if isinstance(answer, Quote):
            weak = self._weakness(spec, answer, names)
            if weak is None:
                return answer
            outcome.weak.append(answer)
            outcome.tried.append((name, weak))
        else:
            outcome.error = answer
            outcome.tried.append((name, f"{answer.__class__.__name__}: {answer}"))
            if isinstance(answer, BudgetError):
                outcome.congested.add(name)
        if names:
            return None
        return self._last_resort(spec)

    def _weakness(self, spec: SymbolSpec, quote: Quote, left: Sequence[str]) -> str | None:
        """Why a later provider may do better than this quote, or None."""
        later_live = any(spec.asset_type in self.sources[n].live for n in left)
        if not later_live:
            return None
        if quote.timeframe is Timeframe.END_OF_DAY:
            return "end-of-day data only"
        now = clock.utcnow()
        stale_after = dt.timedelta(seconds=self.registry.stale_after(spec.tier))
        if quote.age(now) > stale_after and self.registry.market_hours.is_open(
            spec.asset_type, now
        ):
            return f"stale data ({int(quote.age(now).total_seconds())}s old)"
        return None

    def _last_resort(self, spec: SymbolSpec) -> Quote | Exception:
        """The newest of the weaker answers, else the last error."""
        outcome = self._outcome(spec)
        if outcome.weak:
            return max(outcome.weak, key=lambda q: q.data_time)
        if outcome.error is not None:
            return outcome.error
        why = "; ".join(f"{name}: {reason}" for name, reason in outcome.tried) or "none serves it"
        return RetryableError(f"no provider could be asked for {spec.symbol} ({why})")

    def _outcome(self, spec: SymbolSpec) -> Outcome:
        return self.outcomes.setdefault(spec.symbol, Outcome())

    def _unsettled(self, spec: SymbolSpec, result: FetchResult) -> bool:
        return spec.symbol not in result.quotes and spec.symbol not in result.errors

    def _record(
        self, spec: SymbolSpec, final: Quote | Exception, result: FetchResult
    ) -> tuple[SymbolSpec, Quote | Exception]:
        if isinstance(final, Quote):
            result.quotes[spec.symbol] = final
            result.errors.pop(spec.symbol, None)
        else:
            result.errors[spec.symbol] = final
        return spec, final

    def fell_back(self, symbol: str) -> list[tuple[str, str]]:
        """The providers that did not serve the symbol in this refresh, and why."""
        outcome = self.outcomes.get(symbol)
        return list(outcome.tried) if outcome else []

    def congested(self, symbol: str) -> set[str]:
        """The providers only our own budget kept from answering the symbol."""
        outcome = self.outcomes.get(symbol)
        return set(outcome.congested) if outcome else set()

    def failed(self, symbol: str) -> list[tuple[str, str]]:
        """Those of them that failed it: not the ones only our own budget kept from asking
        (waiting on a slot is not the provider's fault, and must not hold it back)."""
        outcome = self.outcomes.get(symbol)
        if outcome is None:
            return []
        return [(name, why) for name, why in outcome.tried if name not in outcome.congested]


@dataclass(frozen=True)
class _Cost:
    """What a refresh had spent before one provider was asked."""

    calls: int
    waits: int
    wait_seconds: float

    @classmethod
    def of(cls, result: FetchResult) -> _Cost:
        return cls(result.api_calls, result.budget_waits, result.budget_wait_seconds)

    def add(self, result: FetchResult, own: FetchResult) -> None:
        """`result`'s cost: what it had, and what `own` has spent so far."""
        result.api_calls = self.calls + own.api_calls
        result.budget_waits = self.waits + own.budget_waits
        result.budget_wait_seconds = self.wait_seconds + own.budget_wait_seconds


def polygon_live(plan_free: bool, bars: Set[AssetType]) -> frozenset[AssetType]:
    """The markets Polygon serves live: none on the free plan, else those not on day bars."""
    return frozenset() if plan_free else frozenset(set(AssetType) - set(bars))
