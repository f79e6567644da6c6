"""Fuzz the Polygon client over real HTTP, by hand: `python bench/fuzz_http.py [CASES]`.

Each case is a raw answer (status line, headers, body chosen by Hypothesis, derandomized) served
by a loopback socket server to the whole client (`iter_fetch`); an escape is any outcome that is
not a valid quote or one of the project's errors with a short, safe text. Prints the count of
cases and escapes; exits 1 if there was any escape. 50,000 cases take about ten minutes.
"""

from __future__ import annotations

import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from assets_pipeline_tests.polygon.test_fuzz import FUZZ, raw_answers, raw_client, settles


def main(cases: int) -> int:
    counts = {"cases": 0, "escapes": 0}
    started = time.monotonic()
    with raw_client() as (server, client, lines):

        @settings(FUZZ, max_examples=cases)
        @given(raw_answers(), st.sampled_from(["batch", "per_ticker"]))
        def over_http(reply: bytes, mode: str) -> None:
            server.reply = reply
            lines.lines.clear()
            counts["cases"] += 1
            try:
                settles(client, lines, mode)
            except Exception as exc:  # noqa: BLE001 - counted, shown, and the run goes on
                counts["escapes"] += 1
                print(f"ESCAPE {exc.__class__.__name__}: {str(exc)[:300]} for {reply[:120]!r}")

        over_http()
    seconds = time.monotonic() - started
    print(f"{counts['cases']} HTTP cases in {seconds:.0f}s, {counts['escapes']} escapes")
    return 1 if counts["escapes"] else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
