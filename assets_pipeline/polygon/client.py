"""The Polygon (Massive) REST client: quotes and bars, every attempt paid from the budget.

Each request goes through `http/paid.py`: a slot per attempt, retries (429, 5xx, timeouts,
broken bodies; never 400/401/403/404), a 429 pausing every caller, one `bounded_get` to the base
URL's origin. Every paginated walk is bounded. A plan's missing snapshots are learnt from its 403s.
The key goes only in the `Authorization` header; every message passes through `redact`."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from assets_pipeline.budget.interface import BudgetError, CallBudget, Refusal
from assets_pipeline.config.registry import AssetType, SymbolSpec
from assets_pipeline.http.errors import (
    MalformedResponse,
    NotEntitled,
    PolygonError,
    TickerNotFound,
)
from assets_pipeline.http.paid import PaidClient
from assets_pipeline.http.transport import api_target
from assets_pipeline.polygon.bars import latest_bar_quotes
from assets_pipeline.polygon.parsing import (
    answers_for,
    error_from_response,
    load_json,
    merge_page,
    parse_v2_market,
    parse_v2_single,
    parse_v3_snapshot,
)
from assets_pipeline.rules import clock
from assets_pipeline.rules.cadence import BATCH_TICKERS
from assets_pipeline.rules.end_of_day import DEFAULT_PUBLICATION_DELAY
from assets_pipeline.rules.excerpts import excerpt, without_secret
from assets_pipeline.rules.market_hours import MarketHours
from assets_pipeline.rules.plans import Plan, SnapshotMode
from assets_pipeline.rules.quotes import Quote, QuoteRejected, iso_utc, validate_quote

#: `/v3/snapshot` takes at most 250 tickers in `ticker.any_of`, and `limit` at most 250.
V3_MAX_TICKERS = BATCH_TICKERS
#: The feature a 403 on `/v3/snapshot` refuses; remembered in the budget store (see `refusal`).
MULTI_TICKER_SNAPSHOT = "multi_ticker_snapshot"
#: Every request's whole answer must arrive within this, and be at most this large (decoded).
DEFAULT_TOTAL_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 20_000_000
#: A paginated walk ends with an error after this many pages (range bars; see `pages`).
DEFAULT_MAX_PAGES = 20
#: `/v3/snapshot` for N tickers needs ceil(N / 250) pages: this many more are allowed (a server
#: may page below the `limit` asked for), no more.
V3_PAGE_MARGIN = 2
#: Tickers the vendor's documentation shows for each market: a market's endpoint is asked for
#: one of them when a ticker's own 403 must be told from the market's and no other is at hand.
REFERENCE_TICKERS = {
    AssetType.FOREX: ("C:EURUSD", "C:USDJPY"),
    AssetType.CRYPTO: ("X:BTCUSD", "X:ETHUSD"),
    AssetType.INDEX: ("I:SPX", "I:NDX"),
}
#: How long a learnt refusal is trusted before a refresh asks again (the plan may be upgraded).
DEFAULT_RECHECK_SECONDS = 6 * 3600.0

log = logging.getLogger(__name__)


@dataclass
class FetchResult:
    """What one refresh got: a validated quote or the error, per symbol, and what it cost."""

    quotes: dict[str, Quote] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    api_calls: int = 0
    budget_waits: int = 0
    budget_wait_seconds: float = 0.0
    mode: str = ""
    notes: list[str] = field(default_factory=list)


class PolygonClient(PaidClient):
    """Talks to Polygon (or the simulator) within the shared budget."""

    vendor = "Polygon"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        budget: CallBudget,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        max_retries: int = 2,
        backoff_seconds: float = 1.0,
        max_budget_wait_seconds: float = 180.0,
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_pages: int = DEFAULT_MAX_PAGES,
        plan: str = Plan.AUTO,
        hours: MarketHours | None = None,
        publication_delay: dt.timedelta = DEFAULT_PUBLICATION_DELAY,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any | None = None,
    ) -> None:
        super().__init__(
            base_url,
            budget,
            total_timeout=total_timeout,
            max_body_bytes=max_body_bytes,
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_budget_wait_seconds=max_budget_wait_seconds,
            sleep=sleep,
            logger=logger or log,
        )
        self._key = api_key
        self.timeout = (connect_timeout, read_timeout)
        self.max_pages = max_pages
        #: What the key is entitled to: `auto` learns it from the 403s it gets; `free` asks for
        #: no snapshot at all (bars only); `paid` never takes a 403 for a plan's refusal.
        self.plan = Plan.parse(plan, "PolygonClient plan")
        #: The markets' calendars and the day bars' publication delay: what an end-of-day plan
        #: serves, and when (see `bars.py`).
        self.hours = hours or MarketHours()
        self.publication_delay = publication_delay
        self.recheck_seconds = recheck_seconds
        self._headers = _request_headers(api_key)

    def close(self) -> None:
        """Nothing to release: every request has its own connection, closed after it."""

    def redact(self, text: str) -> str:
        """Remove the key from any text before it leaves this module, however a server echoed
        it: in any case, URL-encoded, or cut down to 8 of its characters."""
        return without_secret(text, self._key)

    # --- one request -------------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any] | None = None, ticker: str | None = None):  # noqa: ANN201
        """GET an API path at the base URL's origin and return its JSON, retrying what is
        retryable. A path outside the API is a `MalformedResponse`, before any call."""
        try:
            target = api_target(path, params)
        except MalformedResponse as exc:
            exc.ticker = ticker
            raise self._redacted(exc) from None
        return self._retrying(path, ticker, lambda: self._attempt(target, ticker))

    def _attempt(self, target: str, ticker: str | None) -> Any:
        """One paid request of `target` at the origin: its JSON, or the error it ended in."""
        answer = self._paid_get(target, ticker, self._headers, self.timeout)
        if answer.status != 200:  # only the body's start is read, under the same guards as a 200's
            raise self._redacted(error_from_response(answer.status, answer.body, ticker))
        try:
            return load_json(answer.body)
        except MalformedResponse as exc:
            exc.ticker = ticker
            raise

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot(self, ticker: str, asset_type: AssetType) -> Quote:
        """One ticker, one call: the free-plan way."""
        if asset_type is AssetType.INDEX:
            body = self.get_json("/v3/snapshot/indices", {"ticker.any_of": ticker}, ticker)
            results, _ = parse_v3_snapshot(body)
            return _pick(results, ticker)
        market = "forex" if asset_type is AssetType.FOREX else "crypto"
        path = f"/v2/snapshot/locale/global/markets/{market}/tickers/{ticker}"
        quote = parse_v2_single(self.get_json(path, None, ticker))
        if quote.ticker != ticker:
            raise MalformedResponse(f"asked for {ticker}, Polygon answered {excerpt(quote.ticker)}")
        return quote

    def market_snapshots(
        self, asset_type: AssetType, tickers: Sequence[str]
    ) -> dict[str, Quote | PolygonError]:
        """Up to 250 tickers of one market in one call, through the market's own endpoint."""
        joined = ",".join(tickers)
        if asset_type is AssetType.INDEX:
            params = {"ticker.any_of": joined, "limit": V3_MAX_TICKERS}
            results, _ = parse_v3_snapshot(self.get_json("/v3/snapshot/indices", params))
            return results
        market = "forex" if asset_type is AssetType.FOREX else "crypto"
        path = f"/v2/snapshot/locale/global/markets/{market}/tickers"
        return parse_v2_market(self.get_json(path, {"tickers": joined}))

    def snapshots(self, tickers: Sequence[str]) -> dict[str, Quote | PolygonError]:
        """Many tickers of any market: one `/v3/snapshot` call per 250, following `next_url` for
        at most ceil(N / 250) + `V3_PAGE_MARGIN` pages. A failure of the first page raises; a
        later one (a broken page, a loop, too many pages) is the error of each ticker of that
        chunk without an answer yet."""
        out: dict[str, Quote | PolygonError] = {}
        for start in range(0, len(tickers), V3_MAX_TICKERS):
            chunk = list(tickers[start : start + V3_MAX_TICKERS])
            params = {"ticker.any_of": ",".join(chunk), "limit": V3_MAX_TICKERS}
            pages = self.pages(
                "/v3/snapshot",
                params,
                parse_v3_snapshot,
                max_pages=math.ceil(len(chunk) / V3_MAX_TICKERS) + V3_PAGE_MARGIN,
                same_endpoint=lambda path: path == "/v3/snapshot",
            )
            read = 0
            try:
                for results in pages:
                    read += 1
                    merge_page(out, results)  # a ticker on two pages is listed twice
            except (PolygonError, BudgetError) as exc:
                if not read:
                    raise
                out.update({ticker: exc for ticker in chunk if ticker not in out})
        return out

    def pages(
        self,
        path: str,
        params: dict[str, Any] | None,
        parse: Callable[[Any], tuple[Any, str | None]],
        *,
        max_pages: int,
        same_endpoint: Callable[[str], bool],
        ticker: str | None = None,
    ) -> Iterator[Any]:
        """Each page of a paginated answer, parsed, following `next_url` (every page paid from
        the budget). The walk ends with a `MalformedResponse` when a next page is one already
        read (a loop), is another endpoint's, or would be page `max_pages + 1`."""
        seen: set[str] = set()
        count = 0
        while path:
            target = api_target(path, params)
            if target in seen:
                raise MalformedResponse(f"next_url points back at a page already read ({path})")
            if count >= max_pages:
                raise MalformedResponse(f"more than {max_pages} pages for one request ({path})")
            seen.add(target)
            count += 1
            page, next_path = parse(self.get_json(path, params, ticker))
            yield page
            if isinstance(next_path, MalformedResponse):  # this page counts; the walk ends
                raise next_path
            if next_path and not same_endpoint(next_path.partition("?")[0]):
                raise MalformedResponse(f"next_url leaves the endpoint: {next_path[:120]!r}")
            path, params = next_path or "", None

    # --- a refresh ---------------------------------------------------------------------------

    def iter_fetch(
        self,
        specs: Iterable[SymbolSpec],
        mode: SnapshotMode,
        result: FetchResult,
        now_fn: Callable[[], Any] | None = None,
    ) -> Iterator[tuple[SymbolSpec, Quote | Exception]]:
        """Fetch and validate quotes for symbols in as few calls as `mode` allows, yielding each
        symbol as soon as its answer is in (a per-ticker refresh that waits on the budget can
        store its first quotes while later ones wait). Every symbol ends in `result.quotes` or
        `result.errors`; one symbol's failure never stops another's. `result` is kept up to
        date as it goes.

        In `batch` mode a 403 on the multi-ticker endpoint falls back to one call per ticker,
        with a note. On `auto`, an HTTP 403 on a ticker's own snapshot is that ticker's error;
        its market is learnt refused only when the market's endpoint refuses too
        (`_market_refuses`). A refusal inside a 200 (a v3 item) is always the ticker's own.
        """
        since = self._spent()
        by_ticker = _group_by_ticker(specs)
        bars_markets = self._bars_markets({g[0].asset_type for g in by_ticker.values()}, result)
        snapshots = {t: g for t, g in by_ticker.items() if g[0].asset_type not in bars_markets}
        bars = {t: g for t, g in by_ticker.items() if g[0].asset_type in bars_markets}

        def settle(ticker: str, answer: Quote | Exception | None) -> Iterator[Any]:
            self._count_cost(result, since)
            yield from _settle(by_ticker[ticker], ticker, answer, result, now_fn)

        served: set[AssetType] = set()  # markets with a snapshot answered in this refresh
        early: dict[str, Quote | Exception] = {}  # answers a market's endpoint brought early
        asked: list[str] = []
        for ticker, answer in self._snapshot_answers(snapshots, mode, result, bars_markets, early):
            asked.append(ticker)
            kind = by_ticker[ticker][0].asset_type
            if kind not in served and self._plan_refusal(ticker, answer):
                others = [t for t in snapshots if t not in asked and _asset_type_of(t) is kind]
                answer, refused = self._judge_refusal(kind, ticker, answer, others, early, result)
                (bars_markets if refused else served).add(kind)  # judged once a refresh
            if isinstance(answer, Quote):
                served.add(kind)
            if kind in bars_markets and not isinstance(answer, Quote):
                bars[ticker] = by_ticker[ticker]
                continue  # refused, or skipped: its newest bar instead
            yield from settle(ticker, answer)
        if bars:
            kinds = {ticker: group[0].asset_type for ticker, group in bars.items()}
            answers = latest_bar_quotes(self, kinds, self.hours, self.publication_delay)
            for ticker, answer in answers.items():
                yield from settle(ticker, answer)

    def _judge_refusal(
        self,
        kind: AssetType,
        ticker: str,
        refusal: Quote | Exception,
        others: list[str],
        early: dict[str, Quote | Exception],
        result: FetchResult,
    ) -> tuple[Quote | Exception, bool]:
        """`ticker`'s answer once its 403 is judged, and whether it was the market's refusal
        (then learnt); else the 403 is the ticker's own error (or its quote, when the market's
        endpoint answered it after all)."""
        if self._market_refuses(kind, ticker, others, early):
            self._learn_no_snapshots(kind, ticker, refusal, result)
            return refusal, True
        return early.pop(ticker, refusal), False

    def _market_refuses(
        self,
        kind: AssetType,
        ticker: str,
        others: list[str],
        early: dict[str, Quote | Exception],
    ) -> bool:
        """Whether `ticker`'s 403 is its market's: asked of the market's own multi-ticker
        endpoint, for the market's tickers not asked yet (their answers go to `early`), or, with
        none left, for a reference ticker of the market. The vendor's plans include every
        snapshot endpoint or none, so that endpoint's 403 is the market's refusal, and its
        answer shows the market served."""
        probe = others[:V3_MAX_TICKERS] or [t for t in REFERENCE_TICKERS[kind] if t != ticker][:1]
        try:
            answers = answers_for(self.market_snapshots(kind, probe), probe)
        except NotEntitled as exc:
            return exc.status == 403
        except (PolygonError, BudgetError):
            return False  # not a refusal: the other tickers are asked one by one as usual
        early.update({t: answer for t, answer in answers.items() if t in others})
        return False

    def _snapshot_answers(
        self,
        by_ticker: dict[str, list[SymbolSpec]],
        mode: str,
        result: FetchResult,
        refused: set[AssetType],
        early: dict[str, Quote | Exception],
    ) -> Iterator[tuple[str, Quote | Exception]]:
        """Each ticker's snapshot answer: one multi-ticker call per 250 in `batch` mode, else
        (or when the plan refuses that) one call per ticker. In `batch` mode a 403 on the
        multi-ticker endpoint falls back to one call per ticker, with a note saying so. A
        ticker of a market in `refused` (the caller adds to it as it learns), or answered in
        `early` (by its market's endpoint), is not asked again."""
        per_ticker = mode == SnapshotMode.PER_TICKER or self._batch_refused(result)
        if not per_ticker and by_ticker:
            answers = self._batch_answers(list(by_ticker), result)
            if answers is not None:
                for ticker in by_ticker:
                    yield ticker, answers.get(ticker)  # type: ignore[misc]
                return
        for ticker, group in by_ticker.items():
            kind = group[0].asset_type
            if kind in refused:  # the plan refused this market's snapshots a moment ago
                yield ticker, NotEntitled(f"no snapshots of {kind.value} on this plan")
                continue
            if ticker in early:
                yield ticker, early.pop(ticker)
                continue
            yield ticker, self._single_answer(ticker, kind)

    def _bars_markets(self, kinds: set[AssetType], result: FetchResult) -> set[AssetType]:
        """The markets whose quotes come from bars: every one on the free plan; on `auto`, those
        whose snapshots the plan refused (learnt, shared by every process, asked again after
        `recheck_seconds`)."""
        if self.plan is Plan.FREE:
            markets = set(kinds)
        elif self.plan is Plan.PAID:
            markets = set()
        else:
            markets = {k for k in kinds if self._refused(snapshot_feature(k))}
        if markets:
            names = ", ".join(sorted(k.value for k in markets))
            self._note(
                result,
                f"no snapshots on this plan for {names}: newest day bars instead",
                level=logging.INFO,
                mode=None,
            )
        return markets

    def _plan_refusal(self, ticker: str, answer: Quote | Exception) -> bool:
        """On `auto`, whether `answer` is a 403 on `ticker`'s own snapshot (a market's refusal,
        or only this ticker's: `iter_fetch` tells them apart)."""
        return (
            self.plan is Plan.AUTO
            and isinstance(answer, NotEntitled)
            and answer.status == 403  # the endpoint's own refusal, not an item inside a 200
            and answer.ticker == ticker
            and _asset_type_of(ticker) is not None
        )

    def _learn_no_snapshots(
        self, kind: AssetType, ticker: str, refusal: Exception, result: FetchResult
    ) -> None:
        """A ticker's snapshot and its market's endpoint both refused with a 403, and no
        snapshot of that market was answered before: the vendor's 403 is a plan's refusal ("not
        entitled to this data"), and a plan covers a market's snapshots whole. Remember it for
        every process (asked again after `recheck_seconds`); its tickers take their newest bars
        instead."""
        self.budget.refuse(snapshot_feature(kind), self.redact(f"{ticker}: {refusal}"))
        self._note(
            result,
            f"{kind.value} snapshots not available on this plan ({ticker} refused: {refusal});"
            " newest day bars instead, and remembering it for every process",
            mode=None,
        )

    def _refused(self, feature: str) -> bool:
        try:
            return self.budget.refusal(feature, self.recheck_seconds) is not None
        except BudgetError:
            return False

    def _batch_answers(
        self, tickers: list[str], result: FetchResult
    ) -> dict[str, Quote | Exception] | None:
        """Each ticker's answer from the multi-ticker snapshot (the error, for every ticker, if
        it failed), or None if the plan is not entitled to it: remembered, and noted."""
        answers: dict[str, Quote | Exception] = {}
        try:
            answers.update(answers_for(self.snapshots(tickers), tickers))
        except NotEntitled as exc:
            self.budget.refuse(MULTI_TICKER_SNAPSHOT, self.redact(str(exc)))
            self._note(
                result,
                f"batch snapshot not available on this plan ({exc}); falling back to one"
                " call per ticker, and remembering it for every process",
            )
            return None
        except (PolygonError, BudgetError) as exc:
            answers.update({ticker: exc for ticker in tickers})
        return answers

    def _single_answer(self, ticker: str, asset_type: AssetType) -> Quote | Exception:
        """One ticker's own snapshot, or the error that stopped it."""
        try:
            return self.snapshot(ticker, asset_type)
        except (PolygonError, BudgetError, QuoteRejected) as exc:
            return exc

    def _spent(self) -> _Spent:
        return _Spent(self.calls, self.budget.waits, self.budget.waited_seconds)

    def _count_cost(self, result: FetchResult, since: _Spent) -> None:
        """What the refresh has cost so far: calls and budget waits since it started."""
        now = self._spent()
        result.api_calls = now.calls - since.calls
        result.budget_waits = now.waits - since.waits
        result.budget_wait_seconds = now.wait_seconds - since.wait_seconds

    def batch_refused(self) -> Refusal | None:
        """The plan's refusal of multi-ticker snapshots, if learnt within `recheck_seconds`."""
        return self.budget.refusal(MULTI_TICKER_SNAPSHOT, self.recheck_seconds)

    def _batch_refused(self, result: FetchResult) -> bool:
        try:
            refusal = self.batch_refused()
        except BudgetError:
            return False  # the store is down: the call itself will fail closed, per symbol
        if refusal is None:
            return False
        self._note(
            result,
            f"batch snapshot refused by this plan at {iso_utc(refusal.refused_at)}: one call per"
            f" ticker until it is asked again, {self.recheck_seconds / 3600:g} h after that",
            level=logging.INFO,
        )
        return True

    def _note(
        self,
        result: FetchResult,
        text: str,
        level: int = logging.WARNING,
        mode: str | None = SnapshotMode.PER_TICKER,
    ) -> None:
        text = self.redact(text)
        self.log.log(level, text)
        result.notes.append(text)
        if mode:
            result.mode = mode


@dataclass(frozen=True)
class _Spent:
    """A client's running totals: HTTP calls, budget waits and the seconds spent waiting."""

    calls: int
    waits: int
    wait_seconds: float


def snapshot_feature(asset_type: AssetType) -> str:
    """The name a plan's refusal of a market's snapshots is remembered by."""
    return f"snapshot:{asset_type.value}"


def _asset_type_of(ticker: str) -> AssetType | None:
    return AssetType.of_ticker(ticker)


def _group_by_ticker(specs: Iterable[SymbolSpec]) -> dict[str, list[SymbolSpec]]:
    """Symbols by Polygon ticker: symbols sharing a ticker share its one answer."""
    by_ticker: dict[str, list[SymbolSpec]] = {}
    for spec in specs:
        by_ticker.setdefault(spec.polygon_ticker, []).append(spec)
    return by_ticker


def _settle(
    group: list[SymbolSpec],
    ticker: str,
    answer: Quote | Exception | None,
    result: FetchResult,
    now_fn: Callable[[], Any] | None,
) -> Iterator[tuple[SymbolSpec, Quote | Exception]]:
    """Each symbol on `ticker` with its outcome, recorded in `result`: the answer validated and
    made its own, or the error (no answer at all: the ticker was not found)."""
    if answer is None:
        answer = TickerNotFound(f"Polygon returned nothing for {ticker}", ticker=ticker)
    for spec in group:
        outcome = _for_symbol(answer, spec, now_fn)
        if isinstance(outcome, Quote):
            result.quotes[spec.symbol] = outcome
        else:
            result.errors[spec.symbol] = outcome
        yield spec, outcome


def _for_symbol(
    answer: Quote | Exception, spec: SymbolSpec, now_fn: Callable[[], Any] | None
) -> Quote | Exception:
    """A ticker's quote, validated, renamed to the symbol and stamped with when it was fetched
    and under which plan, or the reason it was rejected."""
    if not isinstance(answer, Quote):
        return answer
    try:
        quote = validate_quote(answer, now_fn() if now_fn else None)
        return quote.for_symbol(spec.symbol, spec.price_precision).fetched(clock.utcnow())
    except QuoteRejected as exc:
        return exc


def _pick(results: dict[str, Quote | PolygonError], ticker: str) -> Quote:
    answer = answers_for(results, [ticker])[ticker]
    if isinstance(answer, Exception):
        raise answer
    return answer


def _request_headers(api_key: str) -> dict[str, str]:
    """Every request's headers: the key in `Authorization` only."""
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "assets-pipeline",
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
