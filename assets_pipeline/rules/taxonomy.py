"""How symbols are classified: their priority tier and their market. Shared by every module."""

from __future__ import annotations

import enum


class Tier(enum.StrEnum):
    """Priority tier; the order of declaration is the order of priority."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical, growing as priority falls."""
        return list(Tier).index(self)


class AssetType(enum.StrEnum):
    FOREX = "forex"
    CRYPTO = "crypto"
    INDEX = "index"

    @property
    def ticker_prefix(self) -> str:
        """Polygon's market prefix: `C:` forex (metals included), `X:` crypto, `I:` indices."""
        return {"forex": "C:", "crypto": "X:", "index": "I:"}[self.value]

    @classmethod
    def of_ticker(cls, ticker: str) -> AssetType | None:
        """The market a Polygon ticker's prefix names (None: no known prefix)."""
        return next((kind for kind in cls if ticker.startswith(kind.ticker_prefix)), None)
