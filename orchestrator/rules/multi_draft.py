"""Multi-draft verification: M draft sequences per round, one accepted prefix.

`sd` over M drafts uses recursive rejection (Yin et al. 2024, batch speculative decoding; docs/algorithms.md,
Multi-draft), which stays exact: at each position the drafts consistent with the accepted prefix are
tried in turn; draft m is accepted with probability min(1, R(x_m) / Q(x_m)), where R starts as the
target distribution P and becomes normalize(max(0, R - Q)) after each rejection; if all are rejected the
recovered token comes from R. Drafts that share a prefix were sampled independently from the same draft
distribution Q for the next position, which is what makes the recursion exact. `greedy` takes the window
with the longest run matching the target's argmax.
"""

from __future__ import annotations

import torch

from specdec.distributions.scoring import residual_or_target
from specdec.orchestrator.rules.base import Acceptance, RoundScores, first_false


def _windows(scores: RoundScores) -> tuple[torch.Tensor, torch.Tensor]:
    """(draft_tokens [M, gamma], target_argmax [M, gamma + 1]) of the flattened windows."""
    num_draft_sequences = scores.num_draft_sequences
    return scores.draft_tokens.reshape(num_draft_sequences, -1), scores.target_argmax.reshape(num_draft_sequences, -1)


def multi_draft_greedy(scores: RoundScores) -> Acceptance:
    """The window with the longest run of draft tokens equal to the target's argmax."""
    tokens, target_argmax = _windows(scores)
    runs = [first_false(row == argmax[:-1]) for row, argmax in zip(tokens, target_argmax, strict=True)]
    window = max(range(len(runs)), key=runs.__getitem__)
    return Acceptance(runs[window], int(target_argmax[window, runs[window]]), window)


def multi_draft_sd(scores: RoundScores, generator: torch.Generator) -> Acceptance:
    """Recursive rejection over the windows consistent with the accepted prefix (exact)."""
    if scores.draft_probs is None or scores.target_probs is None:
        raise ValueError("sd needs draft_probs and target_probs")
    tokens, _ = _windows(scores)
    num_draft_sequences, gamma = tokens.shape
    draft_probs = scores.draft_probs.reshape(num_draft_sequences, gamma, -1)  # [M, gamma, vocab]
    target_probs = scores.target_probs.reshape(num_draft_sequences, gamma + 1, -1)  # [M, gamma + 1, vocab]
    candidates = list(range(tokens.shape[0]))  # drafts consistent with the accepted prefix, in order
    for position in range(gamma):
        residual = target_probs[candidates[0], position]  # P at this position: the same for every candidate
        chosen = None
        for m in candidates:
            token, q = int(tokens[m, position]), draft_probs[m, position]
            if float(torch.rand(1, generator=generator)) * float(q[token]) < float(residual[token]):
                chosen = token
                break
            residual = residual_or_target(residual, q)
            residual = residual / residual.sum()
        if chosen is None:
            return Acceptance(position, sample(residual, generator), candidates[0])
        candidates = [m for m in candidates if int(tokens[m, position]) == chosen]
    return Acceptance(gamma, sample(target_probs[candidates[0], gamma], generator), candidates[0])


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from a [vocab] distribution."""
    return int(torch.multinomial(probs, 1, generator=generator))
