"""`fsd`: Fuzzy Speculative Decoding, a tunable accuracy-runtime trade-off.

Holsman, Huang, Dhingra, "Fuzzy Speculative Decoding for a Tunable Accuracy-Runtime Tradeoff",
Findings of ACL 2025 (arXiv 2502.20704). Accept draft positions while the divergence between the target
and draft distributions stays at or below the threshold T; the first position above T is replaced by a
token sampled from the (warped) target distribution P itself, and so is the bonus token. The decision
does not depend on which token was drafted, so the residual of `sd` would be wrong here.

Departures from the reference: the draft may sample (the reference drafted greedily); divergences are
computed on un-warped distributions by default (`on_warped=True` uses the warped ones); the target
computes them beside its logits against the draft's distributions as they travel, truncated to the
draft's most likely tokens (`DRAFT_SUPPORT`) and renormalized, so a divergence that weighs the draft's
tail (reverse KL) reads it as that truncated distribution. Lossy by design:
T = 0 gives (essentially) target-only sampling, T -> infinity the draft's own output.
"""

from __future__ import annotations

import math

import torch

from specdec.distributions.divergences import DIVERGENCES
from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import InvalidField
from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false


class FuzzySpeculativeDecoding:
    name = "fsd"
    multi_window = False
    needs_probs = True

    def __init__(self, threshold: float = 0.3, divergence_name: str = "js", top_k: int = 50, on_warped: bool = False):
        if not math.isfinite(threshold) or threshold < 0:
            raise InvalidField("threshold", f"must be a finite number >= 0, got {threshold}")
        if divergence_name not in DIVERGENCES:
            raise InvalidField("divergence", f"unknown {divergence_name!r}; known: {', '.join(DIVERGENCES)}")
        if top_k < 1:
            raise InvalidField("divergence_top_k", f"must be >= 1, got {top_k}")
        self.threshold, self.divergence_name, self.top_k, self.on_warped = threshold, divergence_name, top_k, on_warped
        self.statistics = StatisticsSpec(recover="target", divergence=divergence_name, divergence_top_k=top_k,
                                         divergence_on_raw=not on_warped)

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        divergences, candidates = scores.require(self.name, "divergences", "candidates")
        num_accepted = first_false(divergences <= self.threshold)
        return Acceptance(num_accepted, int(candidates[num_accepted]))
