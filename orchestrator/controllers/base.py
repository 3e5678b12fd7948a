"""The gamma-controller interface: choose the next round's gamma, learn from each round.

Like Hugging Face's `CandidateGenerator.update_candidate_strategy`, `update` is the feedback channel.
gamma = 0 means a target-only round. `confidence_threshold` > 0 asks the draft to stop drafting inside
a round once its probability of its own token falls below it (0: never stop early).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from specdec.errors import InvalidField


@dataclass(frozen=True)
class RoundStats:
    num_draft_tokens: int  # drafted this round (may be below the gamma asked for, after an early stop)
    num_accepted: int
    draft_seconds: float  # model time in the draft service
    verify_seconds: float  # model time in the target service
    round_seconds: float = 0.0  # wall time of the whole round (RPCs and rule included)
    verify_batch_size: int = 1  # sessions the target scored in the same forward (its load)
    verify_batch_tokens: int = 0  # tokens fed in that forward over all its sessions (0: unknown)


class GammaController(Protocol):
    confidence_threshold: float

    def next_gamma(self) -> int: ...

    def update(self, stats: RoundStats) -> None: ...


def check_gamma_bounds(gamma_min: int, gamma_max: int) -> None:
    if gamma_min < 0 or gamma_max < max(gamma_min, 1):
        raise InvalidField("gamma_max", f"need 0 <= gamma_min <= gamma_max and gamma_max >= 1, got "
                         f"gamma_min={gamma_min}, gamma_max={gamma_max}")


def check_fraction(field_name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidField(field_name, f"must be in [{low}, {high}], got {value}")
    return float(value)
