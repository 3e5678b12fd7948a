"""Acceptance rules by name, each a small pure module; formulas and sources in docs/algorithms.md.

`make_rule(name, params)` builds one for a request; parameters a rule does not use are ignored, and
out-of-range values raise InvalidField naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from specdec.distributions.divergences import DIVERGENCES
from specdec.orchestrator.rules.base import Acceptance, AcceptanceRule, RoundScores
from specdec.orchestrator.rules.fsd import FuzzySpeculativeDecoding
from specdec.orchestrator.rules.greedy import Greedy
from specdec.orchestrator.rules.opt import DecodingOpt, DecodingUno
from specdec.orchestrator.rules.sd import SpeculativeSampling
from specdec.orchestrator.rules.typical import TypicalAcceptance

RULE_NAMES = ("sd", "greedy", "fsd", "opt", "uno", "typical")
LOSSLESS_RULES = ("sd", "greedy")
MULTI_WINDOW_RULES = ("sd", "greedy")  # the rules whose `multi_window` is True


@dataclass(frozen=True)
class RuleParams:
    """Per-request rule parameters; None means the rule's default."""

    threshold: float | None = None  # fsd: T
    divergence: str | None = None  # fsd: one of DIVERGENCES
    divergence_top_k: int | None = None  # fsd: k of the *_topk divergences
    divergence_on_warped: bool = False  # fsd: compare warped instead of raw distributions
    epsilon: float | None = None  # opt / uno: over-acceptance; typical: the probability floor
    delta: float | None = None  # typical: entropy factor


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def make_rule(name: str, params: RuleParams = RuleParams()) -> AcceptanceRule:
    """The rule `name` with `params`. Raises KeyError for an unknown name, ValueError for a bad parameter."""
    if name == "sd":
        return SpeculativeSampling()
    if name == "greedy":
        return Greedy()
    if name == "fsd":
        return FuzzySpeculativeDecoding(**_given(threshold=params.threshold, divergence_name=params.divergence,
                                                 top_k=params.divergence_top_k),
                                        on_warped=params.divergence_on_warped)
    if name in ("opt", "uno"):
        return (DecodingOpt if name == "opt" else DecodingUno)(**_given(epsilon=params.epsilon))
    if name == "typical":
        return TypicalAcceptance(**_given(epsilon=params.epsilon, delta=params.delta))
    raise KeyError(name)


__all__ = ["Acceptance", "AcceptanceRule", "DIVERGENCES", "LOSSLESS_RULES", "MULTI_WINDOW_RULES", "RULE_NAMES",
           "RoundScores", "RuleParams", "make_rule"]
