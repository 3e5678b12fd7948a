"""`sd`: lossless speculative sampling.

Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding", ICML 2023
(arXiv 2211.17192); Chen et al., "Accelerating LLM Decoding with Speculative Sampling" (arXiv 2302.01318).

Per draft position i, with Q_i the distribution draft token d_i was sampled from and P_i the warped
target distribution: accept d_i with probability min(1, P_i(d_i) / Q_i(d_i)). At the first rejection
emit the recovered token ~ normalize(max(0, P_i - Q_i)); if all gamma are accepted, the bonus token ~
P_{gamma+1}. Exact, since q * min(1, p/q) + (p - q)_+ = p per token.

`sd` is `opt` with epsilon = 0 (Yin et al. 2024); both share `over_acceptance` below.
"""

from __future__ import annotations

import torch

from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false, residual_or_target, sample
from specdec.orchestrator.rules.multi_draft import multi_draft_sd


def over_acceptance(scores: RoundScores, generator: torch.Generator, epsilon: float, recover_from_residual: bool,
                    rule: str) -> Acceptance:
    """Accept d_i with probability min(1, (P_i(d_i) + epsilon) / Q_i(d_i)); on rejection sample from the
    residual normalize(max(0, P - Q)) (`recover_from_residual`) or from P itself; bonus from P_{gamma+1}."""
    target_probs, draft_probs = scores.require_probs(rule)
    gamma = scores.gamma
    positions = torch.arange(gamma)
    p = target_probs[positions, scores.draft_tokens] + epsilon  # [gamma]
    q = draft_probs[positions, scores.draft_tokens]  # [gamma], > 0: each token was sampled from q
    uniforms = torch.rand(gamma, generator=generator)
    num_accepted = first_false(uniforms * q < p)  # u < p / q, without dividing
    if num_accepted == gamma:
        return Acceptance(gamma, sample(target_probs[gamma], generator))  # bonus token
    row = target_probs[num_accepted]
    recovery = residual_or_target(row, draft_probs[num_accepted]) if recover_from_residual else row
    return Acceptance(num_accepted, sample(recovery, generator))


class SpeculativeSampling:
    name = "sd"
    multi_window = True
    needs_probs = True
    needs_raw_probs = False

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        if scores.num_windows > 1:
            return multi_draft_sd(scores, generator)
        return over_acceptance(scores, generator, 0.0, True, self.name)
