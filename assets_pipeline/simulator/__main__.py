"""Run a vendor's simulator in the foreground, for tests and demos that need it in another process.

`python -m assets_pipeline.simulator --provider kraken --port 8766` (Polygon by default) prints one
line "<provider> simulator listening on http://HOST:PORT" once the socket is listening (a parent
process waits for that line instead of polling the port), then serves until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from assets_pipeline.simulator.bitstamp import BitstampSimulator
from assets_pipeline.simulator.kraken import KrakenSimulator
from assets_pipeline.simulator.loopback import LoopbackSimulator
from assets_pipeline.simulator.oanda import DEFAULT_ACCOUNT, DEFAULT_TOKEN, OandaSimulator
from assets_pipeline.simulator.server import PLANS, PolygonSimulator

PROVIDERS = ("polygon", "kraken", "oanda", "bitstamp")
#: The options each provider's simulator does not take (given, they are refused, not ignored).
NOT_TAKEN = {
    "polygon": (),
    "kraken": ("keys", "rate_limit_calls", "rate_limit_window", "plan", "page_size_cap"),
    "oanda": ("plan", "page_size_cap"),
    "bitstamp": ("keys", "rate_limit_calls", "rate_limit_window", "plan", "page_size_cap"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m assets_pipeline.simulator",
        description="Serve a vendor's REST look-alike on loopback: Polygon (Massive), Kraken's"
        f" or Bitstamp's public market data, or OANDA v20 (account {DEFAULT_ACCOUNT}).",
    )
    parser.add_argument("--provider", choices=PROVIDERS, default="polygon")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--rate-limit-calls", type=int, default=None, help="per key; default none")
    parser.add_argument(
        "--rate-limit-window", type=float, default=None, help="seconds (Polygon 60, OANDA 1)"
    )
    parser.add_argument("--log-file", default=None, help="append one JSON line per request")
    parser.add_argument(
        "--keys",
        default=None,
        help="comma-separated accepted keys (Polygon; default any) or tokens (OANDA; default"
        f" {DEFAULT_TOKEN})",
    )
    parser.add_argument("--plan", choices=PLANS, default=None, help="Polygon's; default full")
    parser.add_argument("--page-size-cap", type=int, default=None, help="largest v3 page (250)")
    parser.add_argument(
        "--market-hours",
        action="store_true",
        help="close forex at the weekend (and Polygon's indices outside the US session)",
    )
    return parser


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, each checked against the provider that takes it."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in NOT_TAKEN[args.provider]:
        if getattr(args, name) is not None:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} is not an option of the {args.provider} simulator")
    args.keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    return args


def _simulator(args: argparse.Namespace) -> LoopbackSimulator[Any, Any]:
    """The provider's simulator, as the options configure it (what is not given: its default)."""
    given = {
        "rate_limit_calls": args.rate_limit_calls,
        "rate_limit_window": args.rate_limit_window,
        "plan": args.plan,
        "page_size_cap": args.page_size_cap,
    }
    options = {name: value for name, value in given.items() if value is not None}
    simulator: LoopbackSimulator[Any, Any]
    if args.provider == "kraken":
        simulator = KrakenSimulator(args.host, args.port)
    elif args.provider == "bitstamp":
        simulator = BitstampSimulator(args.host, args.port)
    elif args.provider == "oanda":
        simulator = OandaSimulator(args.host, args.port, market_hours=args.market_hours, **options)
        if args.keys:
            simulator.token, simulator.other_tokens = args.keys[0], frozenset(args.keys[1:])
    else:
        keys = set(args.keys) if args.keys else None
        simulator = PolygonSimulator(
            args.host, args.port, api_keys=keys, market_hours=args.market_hours, **options
        )
    simulator.log_file = args.log_file
    return simulator


def main(argv: Sequence[str] | None = None) -> int:
    """Start, announce, wait for a stop signal, stop."""
    args = _parse_args(argv)
    simulator = _simulator(args)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    simulator.start()
    print(f"{args.provider} simulator listening on {simulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
