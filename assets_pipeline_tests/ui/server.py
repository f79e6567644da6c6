"""`dagster dev` as `make dev` starts it, and what the UI's own GraphQL API says of a run or a
backfill.

`make dev` copies the project's `dagster.yaml` into `DAGSTER_HOME` and runs `dagster dev` in the
repository, whose `workspace.yaml` loads the code location. The same here, with a home of the
caller's own and a free port, so the developer's `.dagster_home` and port 3000 are never
touched. `dagster dev` spawns the webserver, the daemon, a code server and a process per run: they
share one process group, which is ended as a whole.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "assets_pipeline"
#: A run in one of these states is over.
RUN_OVER = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
#: A backfill in one of these states still has work to do.
BACKFILL_GOING = frozenset({"REQUESTED", "CANCELING", "FAILING"})
#: What an asset backfill that materialized every partition it targeted ends as.
BACKFILL_SUCCEEDED = frozenset({"COMPLETED_SUCCESS", "COMPLETED"})

T = TypeVar("T")


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev`: where its UI answers, and where its output goes."""

    url: str
    log: Path
    #: When it was started (`time.monotonic()`), for a reader's timings.
    started: float

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dagster_dev(
    home: Path, env: Mapping[str, str], ready_within: float = 240
) -> Iterator[DagsterDev]:
    """`dagster dev` with `home` as `DAGSTER_HOME` (holding the project's `dagster.yaml`), until
    its UI has loaded the code location; stopped, with everything it started, on exit."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    port = free_port()
    server = DagsterDev(f"http://127.0.0.1:{port}", home / "dagster-dev.log", time.monotonic())
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env={**env, "DAGSTER_HOME": str(home)},
        stdout=server.log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_loaded(server, process, ready_within)
        yield server
    finally:
        _stop(process)


def _wait_until_loaded(server: DagsterDev, process: subprocess.Popen, within: float) -> None:
    deadline = time.monotonic() + within
    state = "not answering"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"dagster dev exited with {process.returncode}; its log:\n{server.log_tail()}"
            )
        try:
            state = _location_state(server)
        except requests.RequestException as exc:
            state = f"not answering ({type(exc).__name__})"
        if state == "RepositoryLocation":
            return
        time.sleep(1)
    raise AssertionError(
        f"the UI at {server.url} had not loaded {LOCATION} after {within:.0f} s ({state}); "
        f"dagster dev's log:\n{server.log_tail()}"
    )


def _location_state(server: DagsterDev) -> str:
    data = graphql(
        server,
        "{ workspaceOrError { ... on Workspace { locationEntries"
        " { name locationOrLoadError { __typename } } } } }",
    )
    entries = data["workspaceOrError"].get("locationEntries") or []
    for entry in entries:
        if entry["name"] == LOCATION and entry["locationOrLoadError"]:
            return entry["locationOrLoadError"]["__typename"]
    return "loading"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (`dagster dev` passes it on), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass


def graphql(server: DagsterDev, query: str, variables: Mapping[str, Any] | None = None) -> dict:
    """Ask the webserver's GraphQL API, the one the UI itself reads."""
    answer = requests.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def run_status(server: DagsterDev, run_id: str) -> str:
    data = graphql(
        server,
        "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
        {"id": run_id},
    )
    return data["runOrError"].get("status") or data["runOrError"]["__typename"]


def latest_materialization(server: DagsterDev, asset: str) -> tuple[str | None, set[str]]:
    """The run of the asset's latest materialization (`quotes/BTCUSD`), as its Overview shows
    it, and the labels of its metadata."""
    data = graphql(
        server,
        "query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { __typename"
        " ... on Asset { assetMaterializations(limit: 1)"
        " { runId metadataEntries { label } } } } }",
        {"path": asset.split("/")},
    )
    latest = data["assetOrError"].get("assetMaterializations") or []
    if not latest:
        return None, set()
    return latest[0]["runId"], {entry["label"] for entry in latest[0]["metadataEntries"]}


def backfill_state(server: DagsterDev, backfill_id: str) -> tuple[str, list[str]]:
    """The backfill's status and the ids of the runs it launched."""
    data = graphql(
        server,
        "query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename"
        " ... on PartitionBackfill { status runs(limit: 50) { runId } } } }",
        {"id": backfill_id},
    )
    found = data["partitionBackfillOrError"]
    if "status" not in found:
        return found["__typename"], []
    return found["status"], [run["runId"] for run in found["runs"]]


def wait_for(what: str, probe: Callable[[], T], done: Callable[[T], bool], within: float) -> T:
    """Ask `probe` every second until `done`; past `within` seconds, fail naming `what` and the
    last answer. A bound on waiting, never a claim about how fast anything is."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {within:.0f} s")
        time.sleep(1)
