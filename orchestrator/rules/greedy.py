"""`greedy`: accept the longest prefix of draft tokens equal to the target's argmax.

At temperature 0 the output equals target-only greedy decoding token for token: the emitted tokens are
the target's argmax at every position, whatever the draft proposed. Needs token ids only.
"""

from __future__ import annotations

import torch

from specdec.distributions.scoring import StatisticsSpec
from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false
from specdec.orchestrator.rules.multi_draft import multi_draft_greedy


class Greedy:
    name = "greedy"
    multi_window = True
    needs_probs = False
    statistics = StatisticsSpec()  # the target's argmax is enough

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        if scores.num_draft_sequences > 1:
            return multi_draft_greedy(scores)
        num_accepted = first_false(scores.draft_tokens == scores.target_argmax[: scores.gamma])
        return Acceptance(num_accepted, int(scores.target_argmax[num_accepted]))
