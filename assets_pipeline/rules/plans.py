"""What a Polygon key is known to be served, market by market. Pure.

`auto` learns it from the 403s the key gets (remembered in the budget store, for every process);
`free` and `paid` say it outright. The critical reserve, the status and each refresh's metadata
are sized and worded from this one picture, so none of them keeps an older one. A plan or a
snapshot mode is read by `Plan.parse` and `SnapshotMode.parse` alone."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from assets_pipeline.rules.excerpts import excerpt
from assets_pipeline.rules.taxonomy import AssetType


class PlanError(ValueError):
    """A plan or snapshot mode that is none of the known ones; the message says where it was
    read, what it was and which there are."""


class Plan(enum.StrEnum):
    """What the key is entitled to (`POLYGON_PLAN`): learnt from its 403s, or said outright."""

    AUTO = "auto"
    FREE = "free"
    PAID = "paid"

    @classmethod
    def parse(cls, text: str, where: str) -> Plan:
        """The plan `text` names; `where` (a variable, a run config field) is in the error."""
        return _parse(cls, "plan", text, where)


class SnapshotMode(enum.StrEnum):
    """How snapshots are asked for (`POLYGON_SNAPSHOT_MODE`): 250 tickers a call, or one."""

    BATCH = "batch"
    PER_TICKER = "per_ticker"

    @classmethod
    def parse(cls, text: str, where: str) -> SnapshotMode:
        """The snapshot mode `text` names; `where` is in the error."""
        return _parse(cls, "snapshot mode", text, where)


Choice = TypeVar("Choice", Plan, SnapshotMode)


def _parse(kind: type[Choice], noun: str, text: str, where: str) -> Choice:
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(kind)
        raise PlanError(
            f"{where}={excerpt(text)}: not a {noun} (expected one of {allowed})"
        ) from None


def configured_bars(plan: str) -> frozenset[AssetType]:
    """The markets on end-of-day bars by configuration alone: every one on `free` (no
    snapshots at all), none otherwise (`auto` learns them, `paid` has snapshots)."""
    return frozenset(AssetType) if plan == Plan.FREE else frozenset()


@dataclass(frozen=True)
class LearntPlan:
    """The configured plan, the snapshot mode in use and the markets served day bars."""

    plan: str  # auto, free or paid
    mode: str  # batch or per_ticker: how the markets with snapshots are fetched
    bars: frozenset[AssetType] = frozenset()

    def describe(self) -> str:
        """One line per market, for `status` and the run's metadata."""
        parts = []
        for kind in AssetType:
            if kind in self.bars:
                parts.append(f"{kind.value}: end-of-day bars (no snapshots on this plan)")
            else:
                parts.append(f"{kind.value}: snapshots, {self.mode} mode")
        learnt = " (learnt from the key's 403s)" if self.plan == Plan.AUTO and self.bars else ""
        return f"plan {self.plan}{learnt}: " + "; ".join(parts)
