"""Run the simulator in the foreground, for tests and demos that need it in another process.

`python -m assets_pipeline.simulator --port 8765 --rate-limit-calls 5 --log-file /tmp/sim.jsonl`
prints one line "polygon simulator listening on http://HOST:PORT" once the socket is listening (a
parent process waits for that line instead of polling the port), then serves until SIGTERM or
SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from assets_pipeline.simulator.server import PLANS, PolygonSimulator


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m assets_pipeline.simulator",
        description="Serve a Polygon (Massive) REST look-alike on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--rate-limit-calls", type=int, default=None, help="per key; default none")
    parser.add_argument("--rate-limit-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--log-file", default=None, help="append one JSON line per request")
    parser.add_argument("--keys", default=None, help="comma-separated accepted keys; default any")
    parser.add_argument("--plan", choices=PLANS, default="full")
    parser.add_argument("--page-size-cap", type=int, default=250, help="largest v3 page")
    parser.add_argument(
        "--market-hours",
        action="store_true",
        help="close forex at the weekend and indices outside the US session",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start, announce, wait for a stop signal, stop."""
    args = _parse_args(argv)
    keys = {k.strip() for k in args.keys.split(",") if k.strip()} if args.keys else None
    simulator = PolygonSimulator(
        host=args.host,
        port=args.port,
        rate_limit_calls=args.rate_limit_calls,
        rate_limit_window=args.rate_limit_window,
        api_keys=keys,
        plan=args.plan,
        log_file=args.log_file,
        page_size_cap=args.page_size_cap,
        market_hours=args.market_hours,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    simulator.start()
    print(f"polygon simulator listening on {simulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
