"""Multi-draft verification: M draft sequences per round, one accepted prefix.

`sd` over M drafts uses recursive rejection (Yin et al. 2024, batch speculative decoding; ALGORITHMS.md
section 4), which stays exact: at each position the drafts consistent with the accepted prefix are
tried in turn; draft m is accepted with probability min(1, R(x_m) / Q(x_m)), where R starts as the
target distribution P and becomes normalize(max(0, R - Q)) after each rejection; if all are rejected the
recovered token comes from R. Drafts that share a prefix were sampled independently from the same draft
distribution Q for the next position, which is what makes the recursion exact. `greedy` takes the window
with the longest run matching the target's argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specdec.orchestrator.rules.base import Acceptance, first_false, residual_or_target, sample


@dataclass(frozen=True)
class MultiDraftScores:
    draft_tokens: torch.Tensor  # [M, gamma] int64
    target_argmax: torch.Tensor  # [M, gamma + 1] int64
    draft_probs: torch.Tensor | None = None  # [M, gamma, vocab]
    target_probs: torch.Tensor | None = None  # [M, gamma + 1, vocab]

    def __post_init__(self) -> None:
        copies, gamma = self.draft_tokens.shape
        if self.target_argmax.shape != (copies, gamma + 1):
            raise ValueError(f"target_argmax must be [M, gamma + 1] = [{copies}, {gamma + 1}], "
                             f"got {tuple(self.target_argmax.shape)}")
        for name, probs, length in (("draft_probs", self.draft_probs, gamma),
                                    ("target_probs", self.target_probs, gamma + 1)):
            if probs is not None and (probs.dim() != 3 or probs.shape[:2] != (copies, length)):
                raise ValueError(f"{name} must be [M, {length}, vocab], got {tuple(probs.shape)}")


def multi_draft_greedy(scores: MultiDraftScores, generator: torch.Generator) -> Acceptance:
    runs = [first_false(row == argmax[:-1]) for row, argmax in zip(scores.draft_tokens, scores.target_argmax,
                                                                    strict=True)]
    window = max(range(len(runs)), key=runs.__getitem__)
    return Acceptance(runs[window], int(scores.target_argmax[window, runs[window]]), window)


def multi_draft_sd(scores: MultiDraftScores, generator: torch.Generator) -> Acceptance:
    if scores.draft_probs is None or scores.target_probs is None:
        raise ValueError("sd needs draft_probs and target_probs")
    tokens, draft_probs, target_probs = scores.draft_tokens, scores.draft_probs, scores.target_probs
    gamma = tokens.shape[1]
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


MULTI_DRAFT_RULES = {"sd": multi_draft_sd, "greedy": multi_draft_greedy}
