"""`sd`: lossless speculative sampling.

Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding", ICML 2023
(arXiv 2211.17192); Chen et al., "Accelerating LLM Decoding with Speculative Sampling" (arXiv 2302.01318).

Per draft position i, with Q_i the distribution draft token d_i was sampled from and P_i the warped
target distribution: accept d_i with probability min(1, P_i(d_i) / Q_i(d_i)). At the first rejection
emit the recovered token ~ normalize(max(0, P_i - Q_i)); if all gamma are accepted, the bonus token ~
P_{gamma+1}. Exact, since q * min(1, p/q) + (p - q)_+ = p per token. The target draws the recovered
candidate of every position and the bonus with the orchestrator's uniforms (`specdec.distributions.scoring`);
the rule's test picks which one is emitted.

`sd` is `opt` with epsilon = 0 (Yin et al. 2024); both share `over_acceptance` below.
"""

from __future__ import annotations

import torch

from specdec.distributions.scoring import StatisticsSpec
from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false
from specdec.orchestrator.rules.multi_draft import multi_draft_sd


def over_acceptance(scores: RoundScores, generator: torch.Generator, epsilon: float, rule: str) -> Acceptance:
    """Accept d_i with probability min(1, (P_i(d_i) + epsilon) / Q_i(d_i)); then the candidate of the first
    rejected position (or the bonus), drawn by the target from the rule's recovery distribution."""
    q, p, candidates = scores.require(rule, "draft_token_probs", "target_token_probs", "candidates")
    uniforms = torch.rand(scores.gamma, generator=generator)
    num_accepted = first_false(uniforms * q < p + epsilon)  # u < (p + epsilon) / q, without dividing
    return Acceptance(num_accepted, int(candidates[num_accepted]))


class SpeculativeSampling:
    name = "sd"
    multi_window = True
    needs_probs = True
    statistics = StatisticsSpec(recover="residual")

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        if scores.num_draft_sequences > 1:
            return multi_draft_sd(scores, generator)
        return over_acceptance(scores, generator, 0.0, self.name)
