"""A Polygon (Massive) REST simulator on loopback, so clients are tested over real HTTP.

`PolygonSimulator` serves the recorded wire format with a per-key budget, a request log and
injectable `Fault`s; `market` holds the deterministic prices it quotes.
"""

from __future__ import annotations

from assets_pipeline.simulator.server import Fault, PolygonSimulator, SimulatorRequest

__all__ = ["Fault", "PolygonSimulator", "SimulatorRequest"]
