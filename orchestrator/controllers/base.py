"""The gamma-controller interface: choose the next round's gamma, learn from each round.

Like Hugging Face's `CandidateGenerator.update_candidate_strategy`, `update` is the feedback channel.
gamma = 0 means a target-only round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RoundStats:
    num_draft_tokens: int
    num_accepted: int
    draft_seconds: float
    verify_seconds: float


class GammaController(Protocol):
    def next_gamma(self) -> int: ...

    def update(self, stats: RoundStats) -> None: ...
