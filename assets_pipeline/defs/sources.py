"""The providers beside Polygon as Dagster resources (`providers`: Kraken, OANDA and Bitstamp,
each with its own shared budget and critical reserve), and a refresh's `Sourcing` from them. In
production a provider is used once configured; the local set runs their simulators, started
when a run first asks and stopped when it ends. Secrets are `dg.EnvVar`."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from assets_pipeline.budget.fairness import CRITICAL_CALLER, Caller, secondary_caller
from assets_pipeline.budget.interface import BudgetError
from assets_pipeline.config.registry import Registry, SymbolSpec
from assets_pipeline.defs.resources import CallBudgetResource
from assets_pipeline.providers.bitstamp import BitstampProvider
from assets_pipeline.providers.kraken import KrakenProvider
from assets_pipeline.providers.oanda import OandaProvider
from assets_pipeline.rules.cadence import Refresh
from assets_pipeline.rules.excerpts import clip
from assets_pipeline.rules.fallback import CIRCUIT, Circuit
from assets_pipeline.rules.plans import Plan
from assets_pipeline.rules.providers import ProviderName
from assets_pipeline.rules.taxonomy import AssetType
from assets_pipeline.sourcing import Source

POLYGON = ProviderName.POLYGON.value
KRAKEN = ProviderName.KRAKEN.value
OANDA = ProviderName.OANDA.value
BITSTAMP = ProviderName.BITSTAMP.value
#: The token and account the local set's OANDA simulator accepts (nothing real).
SIMULATED_OANDA_TOKEN = "simulator-token"
SIMULATED_OANDA_ACCOUNT = "101-004-1234567-001"


class _ProviderResource(dg.ConfigurableResource):
    """What Kraken's and OANDA's resources share: where the provider is (or its simulator),
    its budget, its timeouts and retries."""

    base_url: str = Field(default="", description="Where it is; empty: not configured.")
    simulated: bool = Field(default=False, description="The local set: run its simulator.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_budget_wait_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a call may wait for a budget slot: briefly, the next provider can"
        " serve meanwhile.",
    )
    budget: CallBudgetResource
    _simulator: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def configured(self) -> bool:
        return bool(self.base_url) or self.simulated

    def where(self) -> str:
        """Its base URL (the simulator's, started now, in the local set)."""
        if self.base_url:
            return self.base_url
        with self._lock:
            if self._simulator is None:
                self._simulator = self._start_simulator()
            return self._simulator.url

    def _start_simulator(self) -> Any:
        raise NotImplementedError

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._lock:
            if self._simulator is not None:
                self._simulator.stop()
                self._simulator = None

    def calls_for(self, symbols: int) -> int:
        """Requests one refresh of `symbols` instruments takes."""
        raise NotImplementedError

    def caller(self, registry: Registry, name: str, critical: bool) -> Caller:
        """How a run asks this budget: a non-critical one leaves the calls a refresh of the
        critical symbols that list this provider would take (the same rule as Polygon's)."""
        if critical:
            return CRITICAL_CALLER
        direct = [s for s in registry.direct() if name in registry.chain(s)]
        cadences = [p.every_seconds for p in registry.tiers.values() if p.refresh is Refresh.DIRECT]
        # a budget too small for the whole reserve still leaves one call to the others
        reserve = min(self.calls_for(len(direct)) if direct else 0, self.budget.calls - 1)
        return secondary_caller(reserve, cadences)

    def _common(self, logger: Any) -> dict[str, Any]:
        return {
            "connect_timeout": self.connect_timeout_seconds,
            "read_timeout": self.read_timeout_seconds,
            "max_retries": self.max_retries,
            "max_budget_wait_seconds": self.max_budget_wait_seconds,
            "logger": logger,
        }


class KrakenResource(_ProviderResource):
    """Kraken's public market data (`KRAKEN_BASE_URL`; no key): live crypto quotes."""

    def _start_simulator(self) -> Any:
        from assets_pipeline.simulator.kraken import KrakenSimulator

        simulator = KrakenSimulator(host="127.0.0.1", port=0)
        simulator.start()
        return simulator

    def calls_for(self, symbols: int) -> int:
        """Kraken's clock, then one `Ticker` call, per 20 pairs."""
        return 2 * math.ceil(symbols / KrakenProvider.tickers_per_call)

    def provider(self, logger: Any, caller: Caller) -> KrakenProvider:
        return KrakenProvider(self.budget.budget(caller), self.where(), **self._common(logger))


class BitstampResource(_ProviderResource):
    """Bitstamp's public market data (`BITSTAMP_BASE_URL`; no key): live crypto quotes, the
    second crypto source after Kraken."""

    def _start_simulator(self) -> Any:
        from assets_pipeline.simulator.bitstamp import BitstampSimulator

        simulator = BitstampSimulator(host="127.0.0.1", port=0)
        simulator.start()
        return simulator

    def calls_for(self, symbols: int) -> int:
        """One `ticker` call per pair."""
        return symbols

    def provider(self, logger: Any, caller: Caller) -> BitstampProvider:
        return BitstampProvider(self.budget.budget(caller), self.where(), **self._common(logger))


class OandaResource(_ProviderResource):
    """OANDA v20 (`OANDA_BASE_URL`, `OANDA_API_TOKEN`, `OANDA_ACCOUNT_ID`): live forex and
    metals bid and ask on a free practice account. The token is a secret, never logged."""

    token: str = Field(default="", description="From OANDA_API_TOKEN; never logged.")
    account_id: str = Field(default="", description="OANDA_ACCOUNT_ID.")

    def _start_simulator(self) -> Any:
        from assets_pipeline.simulator.oanda import OandaSimulator

        simulator = OandaSimulator(
            host="127.0.0.1", port=0, token=self._token(), account_id=self._account()
        )
        simulator.start()
        return simulator

    def _token(self) -> str:
        return self.token or (SIMULATED_OANDA_TOKEN if self.simulated else "")

    def _account(self) -> str:
        return self.account_id or (SIMULATED_OANDA_ACCOUNT if self.simulated else "")

    def calls_for(self, symbols: int) -> int:
        return math.ceil(symbols / OandaProvider.tickers_per_call)

    def provider(self, logger: Any, caller: Caller) -> OandaProvider:
        url = self.where()
        return OandaProvider(
            url, self._account(), self._token(), self.budget.budget(caller), **self._common(logger)
        )


class ProvidersResource(dg.ConfigurableResource):
    """The providers beside Polygon. A refresh asks each symbol's providers in its order
    (`providers:` in the symbols file); one not configured is skipped."""

    kraken: KrakenResource
    oanda: OandaResource
    bitstamp: BitstampResource

    def configured(self) -> dict[str, _ProviderResource]:
        found = {KRAKEN: self.kraken, OANDA: self.oanda, BITSTAMP: self.bitstamp}
        return {name: resource for name, resource in found.items() if resource.configured()}

    def sources(
        self,
        registry: Registry,
        specs: list[SymbolSpec],
        logger: logging.Logger | Any,
        critical: bool,
    ) -> list[Source]:
        """A `Source` for each configured provider that some of `specs` list."""
        wanted = {name for spec in specs for name in registry.chain(spec)}
        found = []
        for name, resource in self.configured().items():
            if name not in wanted:
                continue
            try:
                provider = resource.provider(logger, resource.caller(registry, name, critical))
            except (ValueError, BudgetError) as exc:  # a bad account id, the store down
                logger.warning(f"{name}: not asked ({exc})")
                continue
            found.append(Source(name, provider.budget, frozenset(AssetType), provider))
        return found


def provider_report(
    registry: Registry,
    polygon: Any,
    providers: ProvidersResource,
    served: Mapping[str, str],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Each provider as `status` and `doctor` list it: configured or not, its plan and data
    timeframe, its budget left now, its health (the circuit) and the symbols it serves now
    (`served`: symbol -> provider of its stored quote). Reads only; nothing is asked of it."""
    retry = registry.fallback.retry_after_seconds
    rows: list[dict[str, Any]] = []
    learnt = _read(polygon.learnt)
    polygon_plan = learnt.describe() if not isinstance(learnt, str) else learnt
    live = "live"
    if isinstance(learnt, str) or learnt.plan == Plan.FREE:
        live = "end of day"
    elif learnt.bars:
        live = f"live; end of day for {', '.join(sorted(learnt.bars))}"
    entries: list[tuple[str, bool, str, str, Any]] = [
        (POLYGON, True, polygon_plan, live, polygon.budget),
        (KRAKEN, providers.kraken.configured(), "public market data (no key)", "live", None),
        (OANDA, providers.oanda.configured(), "practice account", "live", None),
        (BITSTAMP, providers.bitstamp.configured(), "public market data (no key)", "live", None),
    ]
    unreachable = ""  # once the budget store did not answer, it is not asked again
    resources = {KRAKEN: providers.kraken, OANDA: providers.oanda, BITSTAMP: providers.bitstamp}
    for name, configured, plan, timeframe, budget in entries:
        resource = resources.get(name)
        budget = budget or (resource.budget if resource else None)
        row: dict[str, Any] = {
            "provider": name,
            "configured": configured,
            "simulated": bool(resource.simulated and not resource.base_url) if resource else None,
            "plan": plan,
            "timeframe": timeframe,
            "serving": sorted(s for s, p in served.items() if p == name),
        }
        if configured and budget is not None and unreachable:
            row["budget"] = row["health"] = unreachable
        elif configured and budget is not None:
            row["budget"] = _read(lambda b=budget: _budget_left(b))
            row["health"] = _read(lambda b=budget: _health(b, now, retry))
            if str(row["budget"]).startswith("unknown"):
                unreachable = row["budget"]
        rows.append(row)
    return rows


def _budget_left(budget: Any) -> str:
    stats = budget.budget().stats()
    paused = f"; paused until {stats.paused_until}" if stats.paused_until else ""
    return f"{stats.remaining} of {stats.limit} calls left per {stats.window_seconds:g}s{paused}"


def _health(budget: Any, now: dt.datetime, retry_after: float) -> str:
    refusal = budget.budget().refusal(CIRCUIT, 7 * 86_400.0)
    circuit = Circuit.from_message(refusal.message) if refusal else Circuit()
    return f"circuit {circuit.describe(now, retry_after)}"


def _read(read: Any) -> Any:
    """What `read` returns, or what stopped it, as a text (a status line never raises)."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - the store down, the database unreachable
        return f"unknown ({exc.__class__.__name__}: {clip(str(exc), 200)})"
