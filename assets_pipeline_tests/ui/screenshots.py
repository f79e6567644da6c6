"""The docs' screenshots of the UI, taken by the browser test's own steps.

    .venv/bin/python -m assets_pipeline_tests.ui.screenshots [--out docs/screenshots]

Starts `dagster dev` on the embedded defaults (as `make dev` does, in a temporary home), does what
the browser test does (the critical group's live quotes, a 3-day backfill of BTCUSD's history),
and saves the asset catalog and BTCUSD's page as PNG files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect

from assets_pipeline.config.settings import VARIABLES
from assets_pipeline.rules import clock
from assets_pipeline_tests.ui.pages import (
    backfill_succeeds,
    browser_page,
    filter_catalog,
    launch_backfill,
    materialize_listed,
    open_asset,
    open_catalog,
    run_succeeds,
    step,
)
from assets_pipeline_tests.ui.server import REPO, DagsterDev, dagster_dev

SYMBOL = "BTCUSD"


def take(page: Page, server: DagsterDev, out: Path, shots: Path) -> list[Path]:
    """Materialize and backfill as a user would, then photograph the catalog and a symbol."""
    today = clock.today()
    with step(page, "materialize and backfill", shots, server):
        open_catalog(page, server)
        filter_catalog(page, 'group:"critical"', 3)
        run_id = materialize_listed(page, 3)
        open_asset(page, server, f"history / {SYMBOL}")
        first, last = today - dt.timedelta(days=3), today - dt.timedelta(days=1)
        backfill_id = launch_backfill(page, str(first), str(last), 3)
        run_succeeds(page, server, run_id)
        backfill_succeeds(page, server, backfill_id)
    out.mkdir(parents=True, exist_ok=True)
    catalog, symbol = out / "asset-catalog.png", out / "symbol-page.png"
    with step(page, "photograph the catalog and a symbol", shots, server):
        open_catalog(page, server, 9)
        # each history row's partition counts, once the catalog has loaded them
        expect(page.get_by_text(re.compile(r"^\d+ partitions$"))).to_have_count(9)
        page.screenshot(path=str(catalog))
        open_asset(page, server, f"quotes / {SYMBOL}")
        page.get_by_text("Latest materialization").wait_for()
        page.screenshot(path=str(symbol))
    return [catalog, symbol]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    out = parser.parse_args().out.resolve()
    with tempfile.TemporaryDirectory(prefix="ui-screenshots-") as scratch:
        home = Path(scratch)
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        env.update(ASSETS_PIPELINE_HOME=str(home / "assets_pipeline"))
        env.update(DAGSTER_DISABLE_TELEMETRY="yes")
        with dagster_dev(home / "dagster_home", env) as server, browser_page(home) as page:
            for path in take(page, server, out, home):
                print(path)


if __name__ == "__main__":
    main()
