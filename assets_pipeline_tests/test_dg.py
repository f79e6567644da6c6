"""`dg list defs` and `dg check defs` load the code location workspace.yaml names
(`assets_pipeline.definitions:defs`, pyproject.toml's `[tool.dg]`) from the repository's root,
on the embedded defaults."""

from __future__ import annotations

import json
import subprocess

from assets_pipeline_tests.conftest import REPO
from assets_pipeline_tests.test_commands import BIN, fresh_env


def dg(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=REPO,
        env=fresh_env(tmp_path / "ap", DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_dg_check_defs_loads_the_code_location(tmp_path):
    done = dg(tmp_path, "check", "defs")
    assert done.returncode == 0, done.stderr
    assert "All definitions loaded successfully." in done.stdout


def test_dg_list_defs_names_the_quotes_and_the_jobs(tmp_path):
    done = dg(tmp_path, "list", "defs", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert "quotes/XAUUSD" in {asset["asset_key"] for asset in listed["assets"]}
    jobs = {job["name"] for job in listed["jobs"]}
    assert {"refresh_quotes", "refresh_critical", "refresh_queue", "check_freshness"} <= jobs
