"""`assets-pipeline doctor`: each check of the settings, services and files, with its mark (ok,
FAIL, warn), what it found and, when something is wrong, the fix.

The checks are independent (one failing never stops the others) and every network wait is short.
Nothing is spent from the Polygon budget unless `--probe` asks for one call. No secret is printed:
the key shows its last 4 characters, a URL's password is `***`, every line is scrubbed."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import sqlalchemy as sa
import yaml

from assets_pipeline.config.registry import Registry, RegistryError, load_registry
from assets_pipeline.config.settings import (
    VARIABLES,
    BudgetStore,
    Settings,
    SettingsError,
    environment,
)
from assets_pipeline.persistence import migrate as migrations
from assets_pipeline.persistence import redis_client
from assets_pipeline.rules import clock

OK, FAIL, WARN = "ok", "FAIL", "warn"
#: The longest wait of the `--probe` call: for a budget slot, to connect, for the answer.
PROBE_BUDGET_WAIT_SECONDS = 5.0
PROBE_CONNECT_SECONDS = 3.0
PROBE_ANSWER_SECONDS = 10.0
#: The longest wait to connect to Dagster's PostgreSQL storage (a TCP connect only).
DAGSTER_STORAGE_CONNECT_SECONDS = 2.0
#: The ticker probed when the symbols file does not load.
PROBE_TICKER = "C:EURUSD"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    mark: str
    found: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "mark": self.mark, "found": self.found, "fix": self.fix}


@dataclass
class _Context:
    """What the checks share: the settings, the resources and what earlier checks learnt."""

    settings: Settings
    resources: dict[str, Any]
    registry: Registry | None = None
    budget_error: str = ""
    secrets: list[str] = field(default_factory=list)

    def polygon(self) -> Any:
        """The Polygon resource (with its budget), as the commands build it."""
        if "polygon" not in self.resources:
            raise RuntimeError("the resources could not be built (see the line above)")
        return self.resources["polygon"]


def doctor(as_json: bool, probe: bool) -> int:
    """Run every check and print the report (a table, or JSON); 0 when none FAILed."""
    checks = run_checks(probe)
    if as_json:
        doc = {"ok": healthy(checks), "checks": [c.as_dict() for c in checks]}
        print(json.dumps(doc, indent=2))
    else:
        print(render(checks))
    return 0 if healthy(checks) else 1


def healthy(checks: list[Check]) -> bool:
    """True when no check FAILed (warnings are allowed)."""
    return all(check.mark != FAIL for check in checks)


def render(checks: list[Check]) -> str:
    """The table: mark, check, what was found; the fix on the line below, when there is one."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.mark:<4}  {check.name:<{width}}  {check.found}")
        if check.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    verdict = "all checks hold" if healthy(checks) else "some checks FAILed: see their fix"
    warned = sum(1 for c in checks if c.mark == WARN)
    return "\n".join([*lines, "", verdict + (f" ({warned} warning(s))" if warned else "")])


def run_checks(probe: bool, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in order; each under its own guard."""
    environ = environment() if environ is None else environ
    settings, problems = read_settings(environ)
    checks = [settings_check(settings, problems)]
    ctx = _Context(settings, {}, secrets=_secrets(settings))
    steps: list[tuple[str, Callable[[_Context], Check]]] = [
        ("database", database_check),
        ("redis", redis_check),
        ("budget", budget_check),
        ("symbols", symbols_check),
        ("feasibility", feasibility_check),
        ("plan", plan_check),
        ("providers", providers_check),
    ]
    if probe:
        steps.append(("key", probe_check))
    steps.append(("dagster", lambda c: dagster_check(c.settings, environ)))
    try:
        from assets_pipeline.location import build_resources

        ctx.resources = build_resources(settings, secrets_as_env_vars=False)
    except Exception as exc:  # noqa: BLE001 - every check that needs them says so below
        checks.append(Check("resources", FAIL, f"cannot be built: {_said(exc)}"))
    for name, step in steps:
        checks.append(_guarded(name, step, ctx))
    return [_scrubbed(check, ctx.secrets) for check in checks]


def _guarded(name: str, step: Callable[[_Context], Check], ctx: _Context) -> Check:
    try:
        return step(ctx)
    except Exception as exc:  # noqa: BLE001 - a check that breaks FAILs its line alone
        return Check(name, FAIL, f"the check itself failed: {_said(exc)}")


def _said(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _secrets(settings: Settings) -> list[str]:
    """The values no line may contain: the keys and tokens, the passwords in the URLs, the
    webhook URL."""
    found = [settings.polygon_api_key, settings.alert_webhook_url, settings.oanda.token]
    for url in (settings.trading_database_url, settings.redis_url):
        try:
            found.append(urlsplit(url).password or "")
        except ValueError:
            found.append(url)
    return [s for s in found if len(s) >= 3]


def _scrubbed(check: Check, secrets: list[str]) -> Check:
    found, fix = check.found, check.fix
    for secret in secrets:
        found, fix = found.replace(secret, "***"), fix.replace(secret, "***")
    return dataclasses.replace(check, found=found, fix=fix)


# --- 1. the settings -------------------------------------------------------------------------


def read_settings(environ: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """The settings in force; a variable whose value is refused is left at its default (and
    its problem returned), so the other checks still run."""
    env = dict(environ)
    problems: list[str] = []
    for _ in VARIABLES:
        try:
            return Settings.from_env(env), problems
        except SettingsError as exc:
            problems.append(str(exc))
            bad = [v for v in VARIABLES if str(exc).startswith(v)]
            if not bad:
                break
            env.pop(max(bad, key=len))
    return Settings(), problems


def mask_url(url: str) -> str:
    """`url` with its password as `***` and its query left out (it may hold one)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    except ValueError:
        return "(not a URL)"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def mask_key(key: str) -> str:
    return f"set (…{key[-4:]})" if len(key) > 8 else ("set" if key else "not set")


def settings_check(settings: Settings, problems: list[str]) -> Check:
    s = settings
    defaults = [
        name
        for name, used in (
            ("embedded database", not s.trading_database_url),
            ("simulator", not s.polygon_base_url),
            ("no Redis", not s.redis_url),
        )
        if used
    ]
    parts = [
        f"POLYGON_API_KEY: {mask_key(s.polygon_api_key)}",
        f"Polygon: {s.polygon_base_url or 'the embedded simulator'}",
        "database: "
        + (
            mask_url(s.trading_database_url)
            if s.trading_database_url
            else f"embedded ({s.home / 'trading.sqlite'})"
        ),
        f"Redis: {mask_url(s.redis_url) if s.redis_url else 'none'}",
        f"plan: {s.polygon_plan}, {s.snapshot_mode} mode, budget {s.rate_limit_calls} calls"
        f" per {s.rate_limit_window_seconds:g}s (store {s.budget_store})",
        f"defaults in use: {', '.join(defaults) or 'none'}",
    ]
    if problems:
        found = "; ".join([*problems, "(left at the default below)", *parts])
        return Check("settings", FAIL, found, "fix or unset the variable named")
    mark, fix = _settings_conflict(s)
    return Check("settings", mark, "; ".join(parts), fix)


def _settings_conflict(s: Settings) -> tuple[str, str]:
    """The combinations the resources refuse at run time, said before a run tries them."""
    if s.polygon_base_url and not s.polygon_api_key:
        return FAIL, f"set POLYGON_API_KEY (POLYGON_BASE_URL is {s.polygon_base_url})"
    if s.trading_database_url and not s.polygon_base_url:
        return FAIL, (
            "set POLYGON_BASE_URL=https://api.polygon.io: the embedded simulator only serves"
            " the embedded database"
        )
    if s.budget_store == "redis" and not s.redis_url:
        return FAIL, "set REDIS_URL, or POLYGON_BUDGET_STORE=auto (the database keeps it)"
    return OK, ""


# --- 2. the trading database -----------------------------------------------------------------


def database_check(ctx: _Context) -> Check:
    """Reachable (host:port) and at the newest revision."""
    from assets_pipeline.persistence.database import DatabaseTimeouts, create_engine, is_embedded

    s = ctx.settings
    url = s.database_url
    embedded = is_embedded(url)
    # the embedded file is migrated on first use, as every command does; an external database
    # is only read (its revision), never changed
    timeouts = DatabaseTimeouts(
        s.database_connect_timeout_seconds, s.database_statement_timeout_seconds
    )
    engine = create_engine(url, timeouts, check_schema=embedded)
    try:
        return _database_revision(engine, embedded)
    finally:
        engine.dispose()


def _database_revision(engine: sa.Engine, embedded: bool) -> Check:
    """The database's check, on the engine made for it: reachable, at the newest revision."""
    from assets_pipeline.persistence.database import DatabaseUnavailable

    where = migrations.where(engine.url)
    if not embedded:
        where = f"{where} ({engine.url.host}:{engine.url.port or 5432})"
    try:
        with engine.connect() as conn:
            found = migrations.current(conn)
    except sa.exc.SQLAlchemyError as exc:  # DatabaseUnavailable among them
        host = f"{engine.url.host}:{engine.url.port or 5432}"
        fix = (
            f"start PostgreSQL at {host}, or correct TRADING_DATABASE_URL (unset it for the"
            " embedded database)"
        )
        said = str(exc) if isinstance(exc, DatabaseUnavailable) else f"{where}: {_said(exc)}"
        return Check("database", FAIL, said, fix)
    problem = migrations.behind(found, engine.url)
    if problem is None:
        return Check("database", OK, f"{where}: reachable, at revision {found} (the newest)")
    if found is not None and "newer than" in problem:
        return Check("database", FAIL, problem, "upgrade assets_pipeline")
    return Check("database", FAIL, problem, "assets-pipeline migrate (as the tables' owner)")


# --- 3. Redis --------------------------------------------------------------------------------


def redis_check(ctx: _Context) -> Check:
    url = ctx.settings.redis_url
    if not url:
        return Check(
            "redis", OK, "not configured: events wait in the outbox (fine for the embedded demo)"
        )
    where = redis_client.where(url)
    client = redis_client.connect(url)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        said = redis_client.describe_outage(exc, url) or f"Redis at {where}: {_said(exc)}"
        fix = f"start Redis at {where}, or unset REDIS_URL (events then wait in the outbox)"
        return Check("redis", FAIL, said, fix)
    finally:
        client.close()
    return Check("redis", OK, f"reachable at {where}")


# --- 4. the budget store ---------------------------------------------------------------------


def budget_check(ctx: _Context) -> Check:
    """Which store keeps the budget, its limit and what is left (no slot is taken)."""
    try:
        stats = ctx.polygon().budget.budget().stats()
    except Exception as exc:  # noqa: BLE001 - down, not migrated, 'redis' without REDIS_URL
        ctx.budget_error = str(exc)
        return Check(
            "budget", FAIL, f"{_store(ctx.settings)}: {exc}", "see that store's line above"
        )
    found = (
        f"{stats.backend}: {stats.remaining} of {stats.limit} calls left per"
        f" {stats.window_seconds:g}s; {stats.total_calls} calls, {stats.total_waits} waits in all"
    )
    if stats.paused_until:
        return Check("budget", WARN, f"{found}; PAUSED until {stats.paused_until} (after a 429)")
    return Check("budget", OK, found)


def _store(settings: Settings) -> str:
    """Which store keeps the budget, as `PolygonBudgetResource.budget` chooses it."""
    store = settings.budget_store
    if store == BudgetStore.REDIS or (settings.redis_url and store == BudgetStore.AUTO):
        return "the store is Redis"
    return "the store is the trading database"


# --- 5. the symbols file ---------------------------------------------------------------------


def symbols_check(ctx: _Context) -> Check:
    """Valid (how many symbols per tier), or its error with the file and the line. The budget's
    feasibility is the next line's, so it is not refused here."""
    fix = "fix the file" + (
        ", or unset ASSETS_CONFIG for the packaged one" if ctx.settings.assets_config else ""
    )
    lenient = dataclasses.replace(ctx.settings, budget_check="warn")
    try:
        with _quiet("assets_pipeline.config.registry"):
            registry = load_registry(settings=lenient)
    except RegistryError as exc:
        return Check("symbols", FAIL, _registry_error(exc), fix)
    ctx.registry = registry
    tiers = {}
    for spec in registry:
        tiers[spec.tier.value] = tiers.get(spec.tier.value, 0) + 1
    per_tier = ", ".join(f"{tier} {n}" for tier, n in tiers.items())
    return Check("symbols", OK, f"{registry.source}: {len(registry)} symbols ({per_tier})")


def _registry_error(exc: RegistryError) -> str:
    """The loader's message; a YAML syntax error with its line and column in full."""
    cause = exc.__cause__
    mark = getattr(cause, "problem_mark", None)
    if isinstance(cause, yaml.MarkedYAMLError) and mark is not None:
        source = str(exc).split(": not valid YAML", 1)[0]
        began = cause.context_mark
        context = f" ({cause.context}" if cause.context else ""
        if context and began is not None:
            context += f" begun on line {began.line + 1}, column {began.column + 1}"
        context += ")" if context else ""
        return (
            f"{source}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML:"
            f" {cause.problem}{context}"
        )
    return str(exc)


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


# --- 6. the budget's feasibility -------------------------------------------------------------


def feasibility_check(ctx: _Context) -> Check:
    registry = ctx.registry
    if registry is None or registry.feasibility is None:
        return Check("feasibility", WARN, "not checked: the symbols file does not load")
    found = registry.feasibility
    if found.feasible:
        return Check("feasibility", OK, found.explain())
    fix = (
        "raise POLYGON_RATE_LIMIT_CALLS (a paid plan), lengthen the tiers' `every`, or use"
        " batch mode (POLYGON_SNAPSHOT_MODE=batch)"
    )
    if ctx.settings.budget_check == "warn":
        return Check("feasibility", WARN, f"{found.explain()} (POLYGON_BUDGET_CHECK=warn)", fix)
    fix += "; or set POLYGON_BUDGET_CHECK=warn to load it anyway"
    return Check("feasibility", FAIL, f"{found.explain()}: every command refuses it", fix)


# --- 7. the plan, and the key (--probe) ------------------------------------------------------


def plan_check(ctx: _Context) -> Check:
    """The plan learnt per market, from the budget store's memory: no call is spent."""
    s = ctx.settings
    try:
        learnt = ctx.polygon().learnt()
    except Exception:  # noqa: BLE001 - the store's own line says what is wrong with it
        learnt, ctx.budget_error = None, ctx.budget_error or "the budget store did not answer"
    if learnt is None or ctx.budget_error:
        found = f"plan {s.polygon_plan}, {s.snapshot_mode} mode: what the key was refused"
        return Check("plan", WARN, f"{found} cannot be read (the budget store did not answer)")
    found = learnt.describe()
    return Check("plan", OK, f"{found}; `doctor --probe` checks the key with one call")


def providers_check(ctx: _Context) -> Check:
    """Each provider's plan, budget left, health and the symbols it serves now, read from the
    stores (no call). Warns when a circuit is open, or a provider some symbols list first is
    not configured (they fall to the next: on Polygon's free plan, a day-old close)."""
    from assets_pipeline.defs.sources import provider_report
    from assets_pipeline.persistence.provider_state import serving

    registry = ctx.registry
    if registry is None:
        return Check("providers", WARN, "not checked: the symbols file does not load")
    try:
        engine = ctx.resources["database"].engine()
        served = {s: h.provider for s, h in serving(engine, [x.symbol for x in registry]).items()}
    except Exception:  # noqa: BLE001 - the database's own line says what is wrong with it
        served = {}
    rows = provider_report(
        registry, ctx.polygon(), ctx.resources["providers"], served, clock.utcnow()
    )
    found = "; ".join(_provider_text(row) for row in rows)
    unconfigured = {row["provider"] for row in rows if not row["configured"]}
    first = registry.by_priority(registry)  # the critical symbols first
    wanting = [s.symbol for s in first if registry.chain(s)[0] in unconfigured]
    if any("circuit open" in str(row.get("health")) for row in rows):
        return Check("providers", WARN, found, "a provider had an outage: see its circuit")
    if wanting:
        fix = (
            f"{', '.join(wanting[:6])}{' ...' if len(wanting) > 6 else ''} list first a provider"
            " that is not configured: set KRAKEN_BASE_URL or BITSTAMP_BASE_URL (crypto), or"
            " OANDA_API_TOKEN and OANDA_ACCOUNT_ID (forex and metals; docs/providers.md), or"
            " change their `providers:`"
        )
        return Check("providers", WARN, found, fix)
    return Check("providers", OK, found)


def _provider_text(row: dict[str, Any]) -> str:
    if not row["configured"]:
        return f"{row['provider']} not configured"
    serves = ", ".join(row["serving"][:6]) + (" ..." if len(row["serving"]) > 6 else "")
    return (
        f"{row['provider']} {row['plan']}, {row['timeframe']}, budget {row.get('budget')},"
        f" {row.get('health')}, serves {serves or 'nothing now'}"
    )


def probe_check(ctx: _Context) -> Check:
    """One call to a cheap endpoint (a ticker's previous day bar): is the key accepted?"""
    from assets_pipeline.budget.interface import BudgetError
    from assets_pipeline.http.errors import NotEntitled, PolygonError

    client = ctx.polygon().client(max_retries=0)
    client.max_budget_wait_seconds = PROBE_BUDGET_WAIT_SECONDS
    client.timeout = (PROBE_CONNECT_SECONDS, PROBE_ANSWER_SECONDS)
    client.total_timeout = PROBE_ANSWER_SECONDS
    ticker = ctx.registry.symbols[0].polygon_ticker if ctx.registry else PROBE_TICKER
    path = f"/v2/aggs/ticker/{ticker}/prev"
    where = str(client.origin) if ctx.settings.polygon_base_url else "the embedded simulator"
    try:
        client.get_json(path, ticker=ticker)
    except BudgetError as exc:  # no slot: the budget's own line says why; no call was made
        return Check("key", WARN, f"not probed: {exc}", "see the budget line above")
    except NotEntitled as exc:
        return Check("key", WARN, f"the key is accepted at {where}; the plan refused {path}: {exc}")
    except PolygonError as exc:
        if exc.status == 401:
            return Check(
                "key",
                FAIL,
                f"the key is wrong: {where} answered 401 ({exc})",
                "set POLYGON_API_KEY",
            )
        fix = "check POLYGON_BASE_URL and the network, then try again"
        return Check("key", FAIL, f"{where}, {path}: {exc}", fix)
    return Check("key", OK, f"the key is accepted at {where} ({path}: 1 call spent)")


# --- 8. Dagster's instance -------------------------------------------------------------------


def dagster_check(settings: Settings, environ: Mapping[str, str]) -> Check:
    home_text = settings.dagster_home
    if not home_text:
        return Check(
            "dagster",
            OK,
            "DAGSTER_HOME not set: commands run without Dagster's storage; `dagster dev`/"
            "`make dev` use .dagster_home",
        )
    home = Path(home_text).expanduser()
    if not home.is_dir():
        fix = f"mkdir -p {home} && cp dagster.yaml {home}/ (as `make dev` does)"
        return Check("dagster", FAIL, f"DAGSTER_HOME={home} is not a directory", fix)
    config = home / "dagster.yaml"
    if not config.is_file():
        found = f"DAGSTER_HOME={home}: no dagster.yaml, so Dagster's defaults (SQLite, no queue)"
        return Check("dagster", WARN, found, f"cp dagster.yaml {home}/ (the project's settings)")
    try:
        document = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return Check("dagster", FAIL, f"{config}: {_said(exc)}", f"fix {config}")
    storage = document.get("storage") if isinstance(document, dict) else None
    return _dagster_storage(home, config, storage, environ)


def _dagster_storage(home: Path, config: Path, storage: Any, environ: Mapping[str, str]) -> Check:
    if not isinstance(storage, dict) or "sqlite" in storage:
        return Check("dagster", OK, f"DAGSTER_HOME={home}: storage SQLite (in {home})")
    if "postgres" not in storage:
        kind = ", ".join(map(str, storage)) or "unknown"
        return Check("dagster", WARN, f"DAGSTER_HOME={home}: storage {kind} ({config})")
    db = (storage.get("postgres") or {}).get("postgres_db") or {}
    host, port = _env_value(db.get("hostname"), environ), _env_value(db.get("port"), environ)
    if not host:
        found = f"DAGSTER_HOME={home}: storage PostgreSQL (postgres_url, or no hostname)"
        return Check("dagster", OK, found)
    where = f"{host}:{port or 5432}"
    try:
        socket.create_connection((host, int(port or 5432)), DAGSTER_STORAGE_CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        found = f"DAGSTER_HOME={home}: storage PostgreSQL at {where} cannot be reached ({exc})"
        return Check("dagster", FAIL, found, f"start PostgreSQL at {where}, or fix DAGSTER_PG_*")
    return Check("dagster", OK, f"DAGSTER_HOME={home}: storage PostgreSQL at {where} (reachable)")


def _env_value(value: Any, environ: Mapping[str, str]) -> str:
    """A dagster.yaml value: plain, or `{env: NAME}` read from the environment."""
    if isinstance(value, dict) and "env" in value:
        return environ.get(str(value["env"]), "")
    return "" if value is None else str(value)
