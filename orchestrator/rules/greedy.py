"""`greedy`: accept the longest prefix of draft tokens equal to the target's argmax.

At temperature 0 the output equals target-only greedy decoding token for token: the emitted tokens are
the target's argmax at every position, whatever the draft proposed. Needs token ids only.
"""

from __future__ import annotations

import torch

from specdec.orchestrator.rules.base import Acceptance, RoundScores


class Greedy:
    name = "greedy"
    needs_probs = False

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance:
        gamma = scores.gamma
        mismatches = (scores.draft_tokens != scores.target_argmax[:gamma]).nonzero()
        num_accepted = int(mismatches[0]) if mismatches.numel() else gamma
        return Acceptance(num_accepted, int(scores.target_argmax[num_accepted]))
