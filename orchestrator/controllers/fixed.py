"""`fixed`: the same gamma every round (0 = target-only decoding through the same system)."""

from __future__ import annotations

from specdec.errors import InvalidField
from specdec.orchestrator.controllers.base import RoundStats


class FixedGamma:
    confidence_threshold = 0.0

    def __init__(self, gamma: int):
        if gamma < 0:
            raise InvalidField("gamma", f"must be >= 0, got {gamma}")
        self.gamma = gamma

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, stats: RoundStats) -> None:
        """A fixed schedule learns nothing."""
