"""A user's steps in the Dagster UI, in Debian's chromium driven by Playwright.

Elements are found by their role and the text the UI shows ("Materialize selected",
"Launch backfill"), not by CSS classes or positions, so a layout change does not break them. A
step that fails leaves a screenshot of the page, named in the error.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect, sync_playwright

from assets_pipeline_tests.ui.server import (
    BACKFILL_GOING,
    BACKFILL_SUCCEEDED,
    RUN_OVER,
    DagsterDev,
    backfill_state,
    run_status,
    wait_for,
)

#: Debian's package installs it here; `make test` installs the package when it is missing.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 900}
#: How long one element may take to appear on a busy machine (ms).
PATIENCE_MS = 60_000
#: How long a run or a backfill may take to finish (s): a bound, not an expectation.
RUN_WITHIN = 300.0
LAUNCH_DIALOG = "Launch runs to materialize"


@contextmanager
def browser_page(shots: Path) -> Iterator[Page]:
    """A page in headless chromium, with Dagster's one-time "Join the Dagster community"
    dialog marked seen, and skipped should it show. `shots` is where failing steps leave screenshots."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"no chromium at {CHROMIUM}: `make chromium` (part of `make test`) installs Debian's"
        )
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(PATIENCE_MS)
            expect.set_options(timeout=PATIENCE_MS)
            # The UI skips the dialog once it is in local storage as seen (what "Skip" stores);
            # the handler is for a UI that asks anyway. A portal over the dialog while it opens
            # can swallow a normal click, so it forces its click.
            page.add_init_script("window.localStorage.setItem('communityNux', '\"1\"');")
            community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
            page.add_locator_handler(
                community,
                lambda dialog: dialog.get_by_role("button", name="Skip").click(force=True),
            )
            yield page
        finally:
            browser.close()


@contextmanager
def step(page: Page, what: str, shots: Path, server: DagsterDev) -> Iterator[None]:
    """One step of the user's: if it fails, the page's screenshot and dagster dev's log say
    where it stood. How long it took is printed, for a reader, never asserted."""
    started = time.monotonic()
    try:
        yield
        print(f"{what}: {time.monotonic() - started:.1f} s")
    except (PlaywrightError, AssertionError) as exc:
        shot = shots / (re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-") + ".png")
        try:
            page.screenshot(path=str(shot), full_page=True)
        except PlaywrightError as failed:
            shot = Path(f"(no screenshot: {failed})")
        raise AssertionError(
            f"{what} failed at {page.url}: {exc}\nscreenshot: {shot}\n"
            f"dagster dev's log:\n{server.log_tail()}"
        ) from exc


def open_catalog(page: Page, server: DagsterDev, count: int = 0) -> list[str]:
    """The asset catalog; the assets it lists (`quotes / XAUUSD`, ...), once there are `count`
    of them (or any, when `count` is 0)."""
    page.goto(f"{server.url}/assets")
    expect(_asset_links(page).first).to_be_visible()
    if count:
        expect(_asset_links(page)).to_have_count(count)
    return _asset_names(_asset_links(page))


def filter_catalog(page: Page, selection: str, count: int) -> list[str]:
    """Type `selection` (`group:"critical"`) in the catalog's search box; the assets it then
    lists, once there are `count` of them."""
    search = page.get_by_role("textbox", name="Search and filter assets")
    search.focus()  # a code editor's text area, under the lines that take the clicks
    page.keyboard.type(selection)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"asset-selection="))
    expect(_asset_links(page)).to_have_count(count)
    return _asset_names(_asset_links(page))


def _asset_links(page: Page) -> Locator:
    return page.get_by_role("link", name=re.compile(r"^quotes \/ "))


def _asset_names(assets: Locator) -> list[str]:
    return sorted({text.splitlines()[0] for text in assets.all_inner_texts()})


def materialize_listed(page: Page, count: int) -> str:
    """Select every asset the catalog lists, Materialize selected: the live quotes have no
    partitions, so the run starts at once. Returns the run's id (from the "View" link of the
    UI's notice)."""
    select_all = page.get_by_role("checkbox").first
    select_all.locator("xpath=..").click()  # the styled label: the input itself is hidden
    page.get_by_role("button", name=re.compile(rf"Materialize selected \({count}\)")).click()
    return _notice_target(page, "Launched run")


def open_asset(page: Page, server: DagsterDev, name: str) -> None:
    """From the catalog to the asset's page (`quotes / BTCUSD`, `history / BTCUSD`)."""
    open_catalog(page, server)
    page.get_by_role("link", name=name).first.click()
    expect(_materialize_button(page)).to_be_visible()


def _materialize_button(page: Page) -> Locator:
    return page.get_by_role("button", name=re.compile(r"\bMaterialize…$"))


def launch_backfill(page: Page, first: str, last: str, days: int) -> str:
    """On an asset's page: Materialize…, the range typed as the dialog's partition text, Launch
    backfill. Returns the backfill's id."""
    _materialize_button(page).click()
    dialog = page.get_by_role("dialog").filter(has_text=LAUNCH_DIALOG)
    partitions = dialog.get_by_role("textbox").first
    partitions.fill(f"[{first}...{last}]")
    partitions.press("Enter")
    expect(dialog.get_by_text(f"{days} partitions", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch backfill").click()
    return _notice_target(page, "Created backfill")


def _notice_target(page: Page, notice: str) -> str:
    """The id at the end of the "View" link of the UI's notice (`/runs/<id>`, `/runs/b/<id>`)."""
    notices = page.get_by_role("region", name=re.compile("Notifications"))
    expect(notices.get_by_text(notice)).to_be_visible()
    href = notices.get_by_role("link", name="View").first.get_attribute("href") or ""
    return href.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


def run_succeeds(page: Page, server: DagsterDev, run_id: str) -> None:
    """Wait for the run to end (the UI's GraphQL), and for its page to say Success."""
    status = wait_for(
        f"run {run_id}", lambda: run_status(server, run_id), RUN_OVER.__contains__, RUN_WITHIN
    )
    assert status == "SUCCESS", f"run {run_id} ended {status}"
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()


def backfill_succeeds(page: Page, server: DagsterDev, backfill_id: str) -> list[str]:
    """Wait for the backfill to end, and for its page to show its status as Succeeded; the
    ids of its runs."""
    status, runs = wait_for(
        f"backfill {backfill_id}",
        lambda: backfill_state(server, backfill_id),
        lambda state: state[0] not in BACKFILL_GOING,
        RUN_WITHIN,
    )
    assert status in BACKFILL_SUCCEEDED, f"backfill {backfill_id} ended {status} (runs {runs})"
    page.goto(f"{server.url}/runs/b/{backfill_id}")
    expect(page.locator("body")).to_contain_text(re.compile(r"Status\s*Succeeded"))
    return runs
