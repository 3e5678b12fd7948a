"""`sd`: lossless speculative sampling.

Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding", ICML 2023
(arXiv 2211.17192); Chen et al., "Accelerating LLM Decoding with Speculative Sampling" (arXiv 2302.01318).

Per draft position i, with Q_i the distribution draft token d_i was sampled from and P_i the warped
target distribution: accept d_i with probability min(1, P_i(d_i) / Q_i(d_i)). At the first rejection
emit the recovered token ~ normalize(max(0, P_i - Q_i)); if all gamma are accepted, the bonus token ~
P_{gamma+1}. Exact, since q * min(1, p/q) + (p - q)_+ = p per token.
"""

from __future__ import annotations

import torch

from specdec.orchestrator.rules.base import Acceptance, RoundScores, sample


class SpeculativeSampling:
    name = "sd"
    needs_probs = True

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        if scores.target_probs is None or (scores.gamma and scores.draft_probs is None):
            raise ValueError("sd needs draft_probs and target_probs")
        target_probs, gamma = scores.target_probs, scores.gamma
        if gamma == 0:
            return Acceptance(0, sample(target_probs[0], generator))
        positions = torch.arange(gamma)
        p = target_probs[positions, scores.draft_tokens]  # [gamma]
        q = scores.draft_probs[positions, scores.draft_tokens]  # [gamma], > 0: each token was sampled from q
        uniforms = torch.rand(gamma, generator=generator)
        rejected = (uniforms * q >= p).nonzero()  # u >= p / q  <=>  reject
        if rejected.numel() == 0:
            return Acceptance(gamma, sample(target_probs[gamma], generator))  # bonus token
        first = int(rejected[0])
        residual = (target_probs[first] - scores.draft_probs[first]).clamp_min(0)
        # A rejection has probability sum (q - p)_+ = sum (p - q)_+, so the residual has mass whenever we
        # get here, except through float round-off when P == Q; then P itself is the right distribution.
        recovered = sample(residual if float(residual.sum()) > 0 else target_probs[first], generator)
        return Acceptance(first, recovered)
