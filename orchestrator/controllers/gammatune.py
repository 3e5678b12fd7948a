"""`gammatune` and `gammatune+`: token-driven adaptive speculation length.

Gautam, Shrestha, Reddy, "Token-Driven GammaTune: Adaptive Calibration for Enhanced Speculative
Decoding", 2025 (arXiv 2504.00030). The paper's update rule could not be confirmed from its text; this is
the reading in docs/algorithms.md (Gamma controllers), with every hyperparameter configurable:
state gamma and a smoothed accepted length g. After a round with A accepted of gamma drafted:
if A == gamma: gamma = clip(A + delta, gamma_min, gamma_max), g unchanged;
else: g = clip((1 - eta) g + eta A, gamma_min, gamma_max), gamma = ceil(g).
`gammatune+` uses that gamma as a cap and also stops drafting inside a round when the draft's probability
of its own token falls below `confidence_threshold` (as Hugging Face's `assistant_confidence_threshold`).
"""

from __future__ import annotations

import math

from specdec.errors import InvalidField
from specdec.orchestrator.controllers.base import RoundStats, check_fraction, check_gamma_bounds


class GammaTune:
    def __init__(self, gamma: int = 3, eta: float = 0.3, delta: int = 2, gamma_min: int = 1, gamma_max: int = 10,
                 confidence_threshold: float = 0.0):
        check_gamma_bounds(gamma_min, gamma_max)
        self.eta = check_fraction("eta", eta)
        if delta < 0:
            raise InvalidField("delta", f"must be >= 0, got {delta}")
        self.confidence_threshold = check_fraction("confidence_threshold", confidence_threshold)
        self.delta, self.gamma_min, self.gamma_max = delta, max(1, gamma_min), gamma_max
        self.gamma = min(max(gamma, self.gamma_min), gamma_max)
        self.smoothed = float(self.gamma)

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, stats: RoundStats) -> None:
        if stats.num_draft_tokens == 0:
            return
        accepted = stats.num_accepted
        # A draft that stopped early on low confidence is judged against what it actually drafted.
        if accepted == stats.num_draft_tokens == self.gamma:
            self.gamma = self._clip(accepted + self.delta)
            return
        self.smoothed = float(self._clip((1 - self.eta) * self.smoothed + self.eta * accepted))
        self.gamma = int(math.ceil(self.smoothed))

    def _clip(self, value: float) -> float:
        return min(max(value, self.gamma_min), self.gamma_max)


def gammatune_plus(confidence_threshold: float = 0.4, **kwargs) -> GammaTune:
    """GammaTune's gamma as the cap, plus early stop of drafting on low draft confidence."""
    return GammaTune(confidence_threshold=confidence_threshold, **kwargs)
