"""`heuristic`: Hugging Face's assisted-generation schedule (`num_assistant_tokens_schedule="heuristic"`).

All draft tokens accepted: gamma += 2; otherwise gamma = max(1, gamma - 1). Capped at gamma_max here
(Hugging Face leaves it unbounded).
"""

from __future__ import annotations

from specdec.orchestrator.controllers.base import RoundStats, check_gamma_bounds


class HeuristicGamma:
    confidence_threshold = 0.0

    def __init__(self, gamma: int = 4, gamma_max: int = 16):
        check_gamma_bounds(1, gamma_max)
        self.gamma, self.gamma_max = max(1, min(gamma, gamma_max)), gamma_max

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, stats: RoundStats) -> None:
        if stats.num_draft_tokens == 0:
            return
        if stats.num_accepted == stats.num_draft_tokens:
            self.gamma = min(self.gamma + 2, self.gamma_max)
        else:
            self.gamma = max(1, self.gamma - 1)
