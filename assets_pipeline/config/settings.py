"""Defaults for every setting, read from the environment in one place.

Each setting works unset on a fresh machine: the embedded SQLite database, no Redis, the
project's own Polygon simulator and the free plan's budget of 5 calls a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

from assets_pipeline.rules.cadence import BudgetShape

DEFAULT_RATE_LIMIT_CALLS = 5
DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 60.0


def env(name: str, default: str = "") -> str:
    """The stripped value of an environment variable, or `default` when unset or blank."""
    return os.environ.get(name, "").strip() or default


def env_is_set(name: str) -> bool:
    return bool(env(name))


def budget_shape_from_env() -> BudgetShape:
    """The budget and snapshot mode the environment configures (what staleness defaults use)."""
    try:
        calls = int(env("POLYGON_RATE_LIMIT_CALLS", str(DEFAULT_RATE_LIMIT_CALLS)))
        window = float(
            env("POLYGON_RATE_LIMIT_WINDOW_SECONDS", str(DEFAULT_RATE_LIMIT_WINDOW_SECONDS))
        )
    except ValueError:
        calls, window = DEFAULT_RATE_LIMIT_CALLS, DEFAULT_RATE_LIMIT_WINDOW_SECONDS
    return BudgetShape(calls, window, env("POLYGON_SNAPSHOT_MODE", "batch"))


def home_dir() -> Path:
    """Where the embedded defaults keep their files: `ASSETS_PIPELINE_HOME`, else
    `$DAGSTER_HOME/assets_pipeline`, else `~/.assets_pipeline`. Absolute, so the webserver, the
    daemon and every run process agree whatever their working directory."""
    configured = env("ASSETS_PIPELINE_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    dagster_home = env("DAGSTER_HOME")
    if dagster_home:
        return Path(dagster_home).expanduser().resolve() / "assets_pipeline"
    return Path.home() / ".assets_pipeline"


def default_database_url() -> str:
    return f"sqlite:///{home_dir() / 'trading.sqlite'}"
