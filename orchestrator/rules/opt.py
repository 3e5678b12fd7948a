"""`opt` and `uno`: biased acceptance on the rejection/bias Pareto front.

Yin, Chen, Huang, Wang, "A Theoretical Perspective for Speculative Decoding Algorithm", NeurIPS 2024
(arXiv 2411.00841), Decoding-OPT and Decoding-UNO. With over-acceptance epsilon >= 0, accept d with
probability min(1, (P(d) + epsilon) / Q(d)). On rejection `opt` samples from normalize(max(0, P - Q)),
the optimal rejection distribution for that acceptance; `uno` samples from P (kept for comparison).
Per position: P(reject) = sum (Q - P - epsilon)_+, bias TV(A, P) = sum min(epsilon, (Q - P)_+), and
P(reject) + bias = TV(P, Q). epsilon = 0 makes `opt` exactly `sd`.
"""

from __future__ import annotations

import math

import torch

from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import InvalidField
from specdec.orchestrator.rules.base import Acceptance, RoundScores
from specdec.orchestrator.rules.sd import over_acceptance


def check_epsilon(epsilon: float) -> float:
    if not math.isfinite(epsilon) or epsilon < 0:
        raise InvalidField("epsilon", f"must be a finite number >= 0, got {epsilon}")
    return float(epsilon)


class DecodingOpt:
    name = "opt"
    multi_window = False
    needs_probs = True
    statistics = StatisticsSpec(recover="residual")

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = check_epsilon(epsilon)

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        return over_acceptance(scores, generator, self.epsilon, self.name)


class DecodingUno(DecodingOpt):
    name = "uno"
    statistics = StatisticsSpec(recover="target")
