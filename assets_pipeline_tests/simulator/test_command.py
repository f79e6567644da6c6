"""`assets-pipeline simulator --provider ...`: each vendor's simulator started as its own process
through the CLI, announcing its URL once listening, answering one real HTTP request (logged to
its file) and stopping on SIGTERM; an option the provider does not take is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from assets_pipeline.simulator.__main__ import main
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT
from assets_pipeline_tests.conftest import REPO

#: Each provider: its options, and one request a client of it makes (path, headers).
CASES = {
    "polygon": (
        ["--keys", "first-key,second-key"],
        "/v2/snapshot/locale/global/markets/forex/tickers/C:EURUSD",
        {"Authorization": "Bearer second-key"},
    ),
    "kraken": ([], "/0/public/Time", {}),
    "bitstamp": ([], "/api/v2/ticker/btcusd/", {}),
    "oanda": (
        ["--keys", "first-token,second-token"],
        f"/v3/accounts/{DEFAULT_ACCOUNT}/pricing?instruments=EUR_USD",
        {"Authorization": "Bearer second-token"},
    ),
}


@pytest.mark.parametrize("provider", sorted(CASES))
def test_each_provider_serves_from_its_own_process(provider: str, tmp_path: Path) -> None:
    options, path, headers = CASES[provider]
    log_file = tmp_path / "requests.jsonl"
    command = [sys.executable, "-m", "assets_pipeline.cli", "simulator", "--provider", provider]
    process = subprocess.Popen(
        [*command, "--port", "0", "--log-file", str(log_file), *options],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith(f"{provider} simulator listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        response = requests.get(url + path, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()
        logged = [json.loads(entry) for entry in log_file.read_text().splitlines()]
        assert [entry["status"] for entry in logged] == [200]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "options",
    [
        ["--provider", "kraken", "--keys", "a-key"],
        ["--provider", "kraken", "--rate-limit-calls", "5"],
        ["--provider", "oanda", "--plan", "free"],
        ["--provider", "bitstamp", "--keys", "a-key"],
    ],
)
def test_an_option_the_provider_does_not_take_is_refused(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--port", "0", *options])
    assert stopped.value.code == 2
    assert "is not an option of the" in capsys.readouterr().err
