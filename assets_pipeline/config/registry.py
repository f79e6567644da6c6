"""The symbol registry: which symbols we keep fresh, how they map to Polygon, and their tier.

It is the one place a symbol's configuration is read. The file is validated as a whole when it is
loaded, so a typo fails the code location with a message naming the file, the entry and the field,
instead of surfacing later as a confusing Polygon error in the middle of a run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from assets_pipeline.budget.fairness import Caller, secondary_caller
from assets_pipeline.config.settings import Settings
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import (
    BATCH_TICKERS,
    DEFAULT_TIERS,
    BudgetShape,
    CadenceError,
    QueuePolicy,
    Refresh,
    TierPolicy,
    calls_for,
    derive_stale_after,
    format_duration,
    parse_duration,
    parse_queue,
    parse_tiers,
)
from assets_pipeline.rules.end_of_day import (
    DEFAULT_PUBLICATION_DELAY,
    NewestBar,
    bar_due,
    newest_bar,
)
from assets_pipeline.rules.excerpts import clip, excerpt
from assets_pipeline.rules.fallback import (
    FallbackError,
    FallbackPolicy,
    parse_chain,
    parse_fallback,
)
from assets_pipeline.rules.feasibility import Feasibility, bars_cost, feasibility
from assets_pipeline.rules.market_hours import MarketHours, MarketHoursError, parse_market_hours
from assets_pipeline.rules.plans import Plan, configured_bars
from assets_pipeline.rules.quality import QualityPolicy, parse_quality
from assets_pipeline.rules.quotes import Quote, Timeframe
from assets_pipeline.rules.taxonomy import AssetType, Tier

__all__ = ["AssetType", "Registry", "RegistryError", "SymbolSpec", "Tier", "load_registry"]

DEFAULT_SYMBOLS_FILE = Path(__file__).with_name("symbols.yaml")
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")
DEFAULT_START_DATE = ""  # empty: the free plan's history depth, two years back from today
HISTORY_YEARS = 2
DEFAULT_HISTORY_BAR_SECONDS = 300
#: libyaml's safe loader when PyYAML was built with it (linear and fast), else the pure one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Far above any real symbols file (10,000 symbols are about 2 million characters).
MAX_FILE_CHARACTERS = 50_000_000
#: Symbols per multi-asset: what one `batch` snapshot call takes. Dagster's step execution pays
#: per yielded output for every output of the step, so a step's size is bounded, not the file's.
STEP_SYMBOLS = BATCH_TICKERS


class RegistryError(ValueError):
    """The symbols file is unusable; the message names the file, the entry and the field."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _StrictLoader(_LOADER):  # type: ignore[misc, valid-type]
    """The fast loader, refusing a key written twice in one mapping (where YAML loaders keep
    the last one silently: a second `tier:` would demote a symbol unseen). The common case
    costs one length comparison per mapping; only a mapping with fewer keys than entries is
    looked at again, to name the key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
        return mapping


@dataclass(frozen=True)
class SymbolSpec:
    """One configured symbol: the platform's name for it and the Polygon ticker that prices it."""

    symbol: str
    polygon_ticker: str
    asset_type: AssetType
    tier: Tier
    name: str
    base_asset: str
    quote_asset: str
    price_precision: int
    #: Its own providers in order (`providers:` in its entry); empty: its market's
    #: (`Registry.chain`).
    providers: tuple[str, ...] = ()

    def as_metadata(self) -> dict[str, str | int]:
        """The symbol's configuration as its asset shows it in the UI; `from_metadata` reads it
        back, so the IO manager needs no second look at the symbols file."""
        return {
            "polygon_ticker": self.polygon_ticker,
            "asset_type": self.asset_type.value,
            "tier": self.tier.value,
            "name": self.name,
            "base_asset": self.base_asset,
            "quote_asset": self.quote_asset,
            "price_precision": self.price_precision,
        }

    @classmethod
    def from_metadata(cls, symbol: str, metadata: Mapping[str, Any]) -> SymbolSpec:
        """The inverse of `as_metadata` (values may be wrapped, as Dagster hands them back)."""

        def raw(key: str) -> Any:
            value = metadata[key]
            return getattr(value, "value", value)

        return cls(
            symbol=symbol,
            polygon_ticker=raw("polygon_ticker"),
            asset_type=AssetType(raw("asset_type")),
            tier=Tier(raw("tier")),
            name=raw("name"),
            base_asset=raw("base_asset"),
            quote_asset=raw("quote_asset"),
            price_precision=int(raw("price_precision")),
        )


@dataclass(frozen=True)
class Registry:
    """All configured symbols, in file order, plus the settings that apply to all of them."""

    source: str
    symbols: tuple[SymbolSpec, ...]
    owners: tuple[str, ...] = ()
    start_date: str = DEFAULT_START_DATE
    #: The size of a history partition's bars (`history: {bar: 5m}`).
    history_bar_seconds: int = DEFAULT_HISTORY_BAR_SECONDS
    tiers: Mapping[Tier, TierPolicy] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_TIERS)
    )
    queue: QueuePolicy = dataclasses.field(default_factory=QueuePolicy)
    market_hours: MarketHours = dataclasses.field(default_factory=MarketHours)
    quality: QualityPolicy = dataclasses.field(default_factory=QualityPolicy)
    #: What the tiers need of the budget, against what it allows (checked at load).
    feasibility: Feasibility | None = None
    #: The Polygon plan configured (`POLYGON_PLAN`): `auto` learns it per market.
    plan: str = Plan.AUTO
    #: How long after a session's close its day bar is published (`end_of_day:` in the file).
    publication_delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY
    #: Each market's providers in order, and the circuit and hysteresis times (`providers:`).
    fallback: FallbackPolicy = dataclasses.field(default_factory=FallbackPolicy)
    #: The live providers besides Polygon that the deployment has (configured, or simulated).
    live_providers: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[SymbolSpec]:
        return iter(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {spec.symbol: index for index, spec in enumerate(self.symbols)}

    def get(self, symbol: str) -> SymbolSpec:
        position = self._positions.get(symbol)
        if position is None:
            raise KeyError(f"symbol {excerpt(symbol)} is not configured in {self.source}")
        return self.symbols[position]

    def chain(self, spec: SymbolSpec) -> tuple[str, ...]:
        """The symbol's providers in order: its own, else its market's (`providers:`)."""
        return self.fallback.chain(spec.asset_type, spec.providers)

    def in_tier(self, tier: Tier) -> list[SymbolSpec]:
        return [s for s in self.symbols if s.tier == tier]

    def by_priority(self, specs: Iterable[SymbolSpec]) -> list[SymbolSpec]:
        """Tier first, then the order of the symbols file."""
        return sorted(specs, key=lambda s: (s.tier.rank, self._positions[s.symbol]))

    @functools.cached_property
    def steps(self) -> list[list[SymbolSpec]]:
        """The symbols in priority order, cut into groups of at most `STEP_SYMBOLS`: each group
        is one multi-asset, so one step and at most one `batch` call (see `defs/assets.py`)."""
        ordered = self.by_priority(self.symbols)
        return [ordered[i : i + STEP_SYMBOLS] for i in range(0, len(ordered), STEP_SYMBOLS)]

    @functools.cached_property
    def _steps_of(self) -> dict[str, int]:
        return {spec.symbol: n for n, group in enumerate(self.steps) for spec in group}

    def step_of(self, symbol: str) -> int:
        """Which of `steps` holds the symbol (-1 for one no longer configured)."""
        return self._steps_of.get(symbol, -1)

    def trading(self, specs: Iterable[SymbolSpec], at: dt.datetime) -> list[SymbolSpec]:
        """The symbols whose market is open at `at`, in their order: the one place that
        decides which symbols a cadence may spend calls on."""
        return [s for s in specs if self.market_hours.is_open(s.asset_type, at)]

    def served_live(self, spec: SymbolSpec) -> bool:
        """Does a live provider besides Polygon (configured, or simulated in the local set)
        stand in the symbol's list? Then Polygon's plan does not decide what it is served."""
        return any(name in self.live_providers for name in self.chain(spec))

    def on_day_bars(self, stored: Quote | None, spec: SymbolSpec | None = None) -> bool:
        """Is the symbol served end-of-day bars? Never when a live provider serves it (`spec`
        given); else always on Polygon's free plan, never on a paid one, and on `auto` when its
        last price was a day bar (the plan refused its market's snapshots)."""
        if spec is not None and self.served_live(spec):
            return False
        if self.plan != Plan.AUTO:
            return self.plan == Plan.FREE
        return stored is not None and stored.timeframe is Timeframe.END_OF_DAY

    def newest_bar(self, spec: SymbolSpec, at: dt.datetime) -> NewestBar:
        """The newest day bar an end-of-day plan serves for the symbol's market at `at`."""
        return newest_bar(self.market_hours, spec.asset_type, at, self.publication_delay)

    def due(self, spec: SymbolSpec, stored: Quote | None, at: dt.datetime) -> bool:
        """Can a refresh bring the symbol anything new? On day bars, only once a newer bar than
        the stored one is published; on snapshots or a live provider, always."""
        if not self.on_day_bars(stored, spec):
            return True
        return bar_due(
            self.market_hours,
            spec.asset_type,
            stored.data_time if stored else None,
            at,
            self.publication_delay,
        )

    def allowance(self, tier: Tier) -> str:
        """How old the tier's data may be, on the plan configured (both ways on `auto`)."""
        live = f"data at most {format_duration(self.stale_after(tier))} old in open-market time"
        delay = format_duration(self.publication_delay.total_seconds() or 1)
        eod = f"the newest session close, fetched once published ({delay} after the close)"
        return self._on_plan(live, eod)

    def cadence(self, tier: Tier) -> str:
        """When the tier spends calls, and why, on the plan configured (both ways on `auto`)."""
        policy = self.tiers[tier]
        how = "its own schedule" if policy.refresh is Refresh.DIRECT else "the queue"
        live = f"every {format_duration(policy.every_seconds)} through {how}"
        eod = "one call per market once a session's bar is published, none in between"
        return self._on_plan(live, eod)

    def _on_plan(self, live: str, eod: str) -> str:
        """What holds on the plan configured: both, on `auto`, which learns it per market."""
        if self.plan == Plan.FREE:
            return f"end-of-day plan: {eod}"
        if self.plan == Plan.PAID:
            return f"live plan: {live}"
        return f"with snapshots, {live}; on end-of-day bars, {eod}"

    def stale_after(self, tier: Tier) -> float:
        """Seconds of open-market time after which the tier's symbols are stale."""
        seconds = self.tiers[tier].stale_after_seconds
        assert seconds is not None, "parse_registry derives every tier's stale_after"
        return seconds

    def direct(self) -> list[SymbolSpec]:
        """The symbols of tiers refreshed by their own schedule (the critical tier)."""
        return [s for s in self.symbols if self.tiers[s.tier].refresh is Refresh.DIRECT]

    def critical_reserve(
        self, mode: str, bars: Set[AssetType] = frozenset(), idle: Set[str] = frozenset()
    ) -> int:
        """Calls every non-critical caller leaves free for the next critical refresh: what one
        refresh of the direct tiers costs in `mode`, its `bars` markets on day bars, less the
        `idle` symbols (on day bars, no call due within the budget's window: `idle_direct`)."""
        return refresh_cost([s for s in self.direct() if s.symbol not in idle], mode, bars)

    def secondary_caller(
        self, mode: str, bars: Set[AssetType] = frozenset(), idle: Set[str] = frozenset()
    ) -> Caller:
        """How non-critical runs ask the budget (see `budget/fairness.py`)."""
        cadences = [p.every_seconds for p in self.tiers.values() if p.refresh is Refresh.DIRECT]
        return secondary_caller(self.critical_reserve(mode, bars, idle), cadences)

    def idle_direct(
        self,
        bars: Set[AssetType],
        stored: Mapping[str, Quote],
        at: dt.datetime,
        window: dt.timedelta,
    ) -> set[str]:
        """The direct tiers' symbols on day bars that will spend no call within `window`: they
        hold the newest published close and the next is published later. A calls reserve for
        them would only make other runs wait for slots nobody needs."""
        return {
            s.symbol
            for s in self.direct()
            if s.asset_type in bars
            and not self.due(s, stored.get(s.symbol), at)
            and self.newest_bar(s, at).next_due > at + window
        }

    def queued(self) -> list[SymbolSpec]:
        """The symbols of tiers refreshed through the queue."""
        return [s for s in self.symbols if self.tiers[s.tier].refresh is Refresh.QUEUED]


def refresh_cost(specs: Iterable[SymbolSpec], mode: str, bars: Set[AssetType] = frozenset()) -> int:
    """API calls one refresh of these symbols takes (without retries): snapshots in `mode`, and
    for the `bars` markets their day bars (one grouped call per market, one per index)."""
    specs = list(specs)
    snapshots = {s.polygon_ticker for s in specs if s.asset_type not in bars}
    on_bars = {s.polygon_ticker: s.asset_type for s in specs if s.asset_type in bars}
    return calls_for(len(snapshots), mode) + bars_cost(on_bars)


_REQUIRED = (
    "symbol",
    "polygon_ticker",
    "asset_type",
    "tier",
    "name",
    "base_asset",
    "quote_asset",
    "price_precision",
)
_TOP_LEVEL = {
    "symbols",
    "owners",
    "start_date",
    "history",
    "tiers",
    "queue",
    "market_hours",
    "quality",
    "end_of_day",
    "providers",
}
#: Fields a symbol may leave out.
_OPTIONAL = ("providers",)
_MAX_PRECISION = 10
_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def load_registry(
    path: str | os.PathLike[str] | None = None, settings: Settings | None = None
) -> Registry:
    """Read and validate a symbols file (default: `ASSETS_CONFIG`, else the packaged one).
    The settings' budget and snapshot mode size the staleness defaults."""
    settings = settings or Settings.from_env()
    if path is None:
        path = Path(settings.assets_config).expanduser() if settings.assets_config else None
    file = Path(path) if path is not None else DEFAULT_SYMBOLS_FILE
    text = _read_text(file)
    registry = parse_registry(
        _yaml(text, file),
        source=str(file),
        budget=settings.budget_shape,
        plan=settings.polygon_plan,
        live_providers=settings.live_providers,
    )
    return _checked(registry, settings.budget_check)


def _checked(registry: Registry, check: str) -> Registry:
    """Refuse (or, with POLYGON_BUDGET_CHECK=warn, log) a configuration the budget cannot serve."""
    found = registry.feasibility
    if found is None or found.feasible:
        return registry
    message = (
        f"{registry.source}: the budget cannot serve this configuration: {found.explain()}."
        " Raise POLYGON_RATE_LIMIT_CALLS (a paid plan), lengthen the tiers' `every`, use"
        " batch mode, or set POLYGON_BUDGET_CHECK=warn to load it anyway."
    )
    if check == "fail":
        raise RegistryError(message)
    logging.getLogger(__name__).warning(message)
    return registry


def _read_text(file: Path) -> str:
    """The file as UTF-8 text; unreadable or not UTF-8 is a `RegistryError` saying where."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{file}: cannot read the symbols file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RegistryError(
            f"{file}: line {line}, column {column} (byte offset {exc.start}): not UTF-8"
            f" ({exc.reason}: {data[exc.start : exc.end]!r}); save the file as UTF-8"
        ) from None


def _yaml(text: str, file: Path) -> Any:
    """The file's document, parsed by libyaml (C) where installed. Bounded: a symbols file has
    no use for aliases, and one that uses them could expand a few lines into gigabytes (an
    alias bomb), so they are refused before anything is built."""
    if len(text) > MAX_FILE_CHARACTERS:
        raise RegistryError(f"{file}: larger than {MAX_FILE_CHARACTERS:,} characters")
    try:
        # an alias is written `*name`: a file without a `*` has none, and skips the scan
        for event in yaml.parse(text, Loader=_LOADER) if "*" in text else ():
            if isinstance(event, yaml.AliasEvent):
                raise RegistryError(
                    f"{file}: line {event.start_mark.line + 1}: an alias (*{event.anchor}):"
                    " aliases are not allowed in a symbols file; write the value out"
                )
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as exc:
        raise RegistryError(
            f"{file}: line {exc.line}: the key {excerpt(exc.key)} is written twice in one"
            f" mapping (first on line {exc.first_line}); YAML would keep the last silently,"
            " so write it once"
        ) from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's problem and its line, e.g. `line 3: expected ',' or ']', but got '<stream
    end>' (in the flow sequence started on line 2)`; the whole message for any other error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return clip(" ".join(str(exc).split()), 200)
    found = f"line {mark.line + 1}: {clip(problem, 200)}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        found += f" ({clip(context, 100)}, line {start.line + 1})"
    return found


def parse_registry(
    document: Any,
    source: str = "<symbols>",
    budget: BudgetShape | None = None,
    plan: str = Plan.AUTO,
    live_providers: frozenset[str] = frozenset(),
) -> Registry:
    """Validate an already-parsed symbols document; pure, so tests need no files."""
    plan = Plan.parse(plan, "POLYGON_PLAN")
    entries = _symbol_entries(document, source)
    owners = _owners(document, source)
    start_date = _start_date(document, source)
    bar_seconds = _history_bar_seconds(document, source)
    specs = _parse_entries(entries, source)
    try:
        tiers = parse_tiers(document.get("tiers"), source)
        queue = parse_queue(document.get("queue"), source)
        market_hours = parse_market_hours(document.get("market_hours"), source)
        quality = parse_quality(document.get("quality"), source)
        delay = _publication_delay(document.get("end_of_day"), source)
        fallback = parse_fallback(document.get("providers"), source)
    except (CadenceError, MarketHoursError, FallbackError) as exc:
        raise RegistryError(str(exc)) from None
    tickers: dict[Tier, set[str]] = {}
    for spec in specs:
        tickers.setdefault(spec.tier, set()).add(spec.polygon_ticker)
    budget = budget or BudgetShape()
    tiers = derive_stale_after(tiers, tickers, queue, budget)
    kinds: dict[Tier, dict[str, AssetType]] = {}
    for spec in specs:
        kinds.setdefault(spec.tier, {})[spec.polygon_ticker] = spec.asset_type
    return Registry(
        source=source,
        symbols=tuple(specs),
        owners=tuple(owners),
        start_date=start_date,
        history_bar_seconds=bar_seconds,
        tiers=tiers,
        queue=queue,
        market_hours=market_hours,
        quality=quality,
        feasibility=feasibility(tiers, kinds, budget, configured_bars(plan)),
        plan=plan,
        publication_delay=delay,
        fallback=fallback,
        live_providers=live_providers,
    )


def _publication_delay(document: Any, source: str) -> dt.timedelta:
    """`end_of_day: {publication_delay: 30m}`: how long after a close its day bar is fetched."""
    if document is None:
        return DEFAULT_PUBLICATION_DELAY
    if not isinstance(document, Mapping) or set(document) - {"publication_delay"}:
        raise CadenceError(f"{source}: end_of_day: only 'publication_delay' is allowed")
    value = document.get("publication_delay", DEFAULT_PUBLICATION_DELAY.total_seconds())
    if value in (0, "0", "0s"):
        return dt.timedelta(0)
    try:
        return dt.timedelta(seconds=parse_duration(value))
    except CadenceError as exc:
        raise CadenceError(f"{source}: end_of_day.publication_delay: {exc}") from None


def _symbol_entries(document: Any, source: str) -> list[Any]:
    """The document's `symbols` list, once the top level holds only known keys."""
    if not isinstance(document, Mapping):
        raise RegistryError(f"{source}: expected a mapping with a 'symbols' list at the top level")
    unknown = sorted(set(document) - _TOP_LEVEL)
    if unknown:
        raise RegistryError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}"
            f" (allowed: {', '.join(sorted(_TOP_LEVEL))})"
        )
    entries = document.get("symbols")
    if not isinstance(entries, list) or not entries:
        raise RegistryError(f"{source}: 'symbols' must be a non-empty list")
    return entries


def _owners(document: Mapping[str, Any], source: str) -> list[str]:
    owners = document.get("owners", [])
    if not isinstance(owners, list) or not all(isinstance(o, str) and o for o in owners):
        raise RegistryError(f"{source}: 'owners' must be a list of strings")
    return owners


def _start_date(document: Mapping[str, Any], source: str) -> str:
    """The first daily partition: the file's `start_date`, else as far back as the free plan
    serves history (two years)."""
    if "start_date" not in document:
        today = clock.today()
        return today.replace(year=today.year - HISTORY_YEARS, day=min(today.day, 28)).isoformat()
    start_date = str(document["start_date"])
    try:
        dt.date.fromisoformat(start_date)
    except ValueError:
        raise RegistryError(
            f"{source}: 'start_date' must be a date as YYYY-MM-DD, got {excerpt(start_date)}"
        ) from None
    return start_date


def _history_bar_seconds(document: Mapping[str, Any], source: str) -> int:
    history = document.get("history") or {}
    if not isinstance(history, Mapping) or set(history) - {"bar"}:
        raise RegistryError(f"{source}: 'history' must be a mapping with 'bar' (such as 5m)")
    try:
        seconds = parse_duration(history.get("bar", DEFAULT_HISTORY_BAR_SECONDS))
    except CadenceError as exc:
        raise RegistryError(f"{source}: history.bar: {exc}") from None
    if seconds % 60:
        raise RegistryError(f"{source}: history.bar: bars are whole minutes, hours or days")
    return int(seconds)


def _parse_entries(entries: list[Any], source: str) -> list[SymbolSpec]:
    """Each entry as a `SymbolSpec`, in file order; a symbol may appear only once, and two
    symbols may not differ only by `.`, `-` and `_` (Dagster names a symbol's output after its
    asset key with those made `_`, so `BRK.B` and `BRK_B` would be one output)."""
    specs: list[SymbolSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        spec = _parse_entry(entry, f"{source}: symbols[{index}]")
        name = identifier_of(spec.symbol)
        if name in seen:
            first = specs[seen[name]].symbol
            problem = "duplicate of" if first == spec.symbol else f"same Dagster name as {first},"
            raise RegistryError(
                f"{source}: symbols[{index}] ({spec.symbol}): field 'symbol': {problem}"
                f" symbols[{seen[name]}]"
            )
        seen[name] = index
        specs.append(spec)
    return specs


def identifier_of(symbol: str) -> str:
    """The symbol as Dagster spells it in output names: `.` and `-` become `_`."""
    return symbol.replace(".", "_").replace("-", "_")


#: Makes the error for one field of the entry being parsed: `fail(field, problem)`.
_Fail = Callable[[str, str], RegistryError]


def _parse_entry(entry: Any, where: str) -> SymbolSpec:
    if not isinstance(entry, Mapping):
        raise RegistryError(f"{where}: expected a mapping of fields, got {type(entry).__name__}")
    symbol = entry.get("symbol", "?")
    label = (
        f"{where} ({symbol if isinstance(symbol, str) and len(symbol) <= 20 else excerpt(symbol)})"
    )

    def fail(field: str, problem: str) -> RegistryError:
        return RegistryError(f"{label}: field {field!r}: {problem}")

    _check_field_names(entry, fail)
    symbol = entry["symbol"]
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise fail("symbol", f"{excerpt(symbol)} does not match {SYMBOL_PATTERN.pattern}")
    tier = _choice(Tier, entry["tier"], "tier", "tier", fail)
    asset_type = _choice(AssetType, entry["asset_type"], "asset_type", "type", fail)
    ticker = _polygon_ticker(entry["polygon_ticker"], asset_type, fail)
    precision = _price_precision(entry["price_precision"], fail)
    for field in ("name", "base_asset", "quote_asset"):
        if not isinstance(entry[field], str):
            raise fail(field, f"{excerpt(entry[field])} is not a string")
    providers: tuple[str, ...] = ()
    if "providers" in entry:
        try:
            providers = parse_chain(entry["providers"], "the providers in order")
        except FallbackError as exc:
            raise fail("providers", str(exc)) from None

    return SymbolSpec(
        symbol=symbol,
        polygon_ticker=ticker,
        asset_type=asset_type,
        tier=tier,
        name=entry["name"],
        base_asset=entry["base_asset"],
        quote_asset=entry["quote_asset"],
        price_precision=precision,
        providers=providers,
    )


def _check_field_names(entry: Mapping[str, Any], fail: _Fail) -> None:
    """Every field is known, and every one is given."""
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        allowed = ", ".join((*_REQUIRED, *_OPTIONAL))
        raise fail(unknown[0], f"unknown field (allowed: {allowed})")
    for field in _REQUIRED:
        if field not in entry or entry[field] is None or entry[field] == "":
            raise fail(field, "missing")


def _choice(kind: type[_Choice], value: Any, field: str, noun: str, fail: _Fail) -> _Choice:
    """The member of `kind` whose value is `value`."""
    try:
        return kind(value)
    except ValueError:
        raise fail(
            field, f"unknown {noun} {excerpt(value)} (expected one of {', '.join(kind)})"
        ) from None


def _polygon_ticker(ticker: Any, asset_type: AssetType, fail: _Fail) -> str:
    """A Polygon ticker with the prefix of its asset type, such as 'C:EURUSD'."""
    if not isinstance(ticker, str) or not ticker.startswith(asset_type.ticker_prefix):
        raise fail(
            "polygon_ticker",
            f"{excerpt(ticker)} does not fit asset_type {asset_type.value!r}:"
            f" expected the prefix {asset_type.ticker_prefix!r}",
        )
    if len(ticker) <= 2 or not re.fullmatch(r"[A-Z]:[A-Z0-9.]+", ticker):
        raise fail(
            "polygon_ticker", f"{excerpt(ticker)} is not a Polygon ticker such as 'C:EURUSD'"
        )
    return ticker


def _price_precision(precision: Any, fail: _Fail) -> int:
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise fail("price_precision", f"{excerpt(precision)} is not an integer")
    if not 0 <= precision <= _MAX_PRECISION:
        raise fail("price_precision", f"{precision} is outside 0..{_MAX_PRECISION}")
    return precision
