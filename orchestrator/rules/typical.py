"""`typical`: typical acceptance (Medusa).

Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding Heads", 2024.
Accept draft token d if P(d) > min(epsilon, delta * exp(-H(P))), H the entropy of the warped target
distribution P; take the longest accepted prefix; the next token is sampled from P. Lossy: it keeps
tokens the target finds typical enough rather than matching P exactly.
"""

from __future__ import annotations

import math

import torch

from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import InvalidField
from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false


class TypicalAcceptance:
    name = "typical"
    multi_window = False
    needs_probs = True
    statistics = StatisticsSpec(recover="target", entropy=True)

    def __init__(self, epsilon: float = 0.09, delta: float = 0.3):
        for field_name, value in (("epsilon", epsilon), ("delta", delta)):
            if not math.isfinite(value) or value < 0:
                raise InvalidField(field_name, f"must be a finite number >= 0, got {value}")
        self.epsilon, self.delta = epsilon, delta

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        chosen, entropies, candidates = scores.require(self.name, "target_token_probs", "entropies", "candidates")
        bound = torch.minimum(torch.full_like(entropies, self.epsilon), self.delta * torch.exp(-entropies))
        num_accepted = first_false(chosen > bound)
        return Acceptance(num_accepted, int(candidates[num_accepted]))
