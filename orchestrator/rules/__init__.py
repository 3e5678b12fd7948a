"""Acceptance rules by name. Each rule is a small pure module; see ALGORITHMS.md."""

from __future__ import annotations

from specdec.orchestrator.rules.base import Acceptance, AcceptanceRule, RoundScores
from specdec.orchestrator.rules.greedy import Greedy
from specdec.orchestrator.rules.sd import SpeculativeSampling

RULES: dict[str, type] = {"sd": SpeculativeSampling, "greedy": Greedy}


def make_rule(name: str) -> AcceptanceRule:
    if name not in RULES:
        raise KeyError(name)
    return RULES[name]()


__all__ = ["Acceptance", "AcceptanceRule", "RoundScores", "RULES", "make_rule"]
