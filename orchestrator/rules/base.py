"""The acceptance-rule interface: what a rule sees of a round and what it decides.

A rule is a pure function of one round's scores and a seeded generator: no I/O, no state. It returns
how many leading draft tokens it accepts and the next token (the recovered token at the first
rejection, or the bonus token when every draft token was accepted). The orchestrator appends
draft_tokens[:num_accepted] + [next_token] to the committed tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class RoundScores:
    draft_tokens: torch.Tensor  # [gamma] int64
    target_argmax: torch.Tensor  # [gamma + 1] int64
    draft_probs: torch.Tensor | None = None  # [gamma, vocab] float32, what each draft token was sampled from
    target_probs: torch.Tensor | None = None  # [gamma + 1, vocab] float32, warped

    def __post_init__(self) -> None:
        gamma = self.draft_tokens.shape[0]
        if self.draft_tokens.dim() != 1 or self.target_argmax.shape != (gamma + 1,):
            raise ValueError(f"draft_tokens [gamma] and target_argmax [gamma + 1] expected, got "
                             f"{tuple(self.draft_tokens.shape)} and {tuple(self.target_argmax.shape)}")
        if self.target_probs is not None and (self.target_probs.dim() != 2 or self.target_probs.shape[0] != gamma + 1):
            raise ValueError(f"target_probs must be [gamma + 1, vocab], got {tuple(self.target_probs.shape)}")
        if self.draft_probs is not None and (
            self.target_probs is None or self.draft_probs.shape != (gamma, self.target_probs.shape[1])
        ):
            raise ValueError(f"draft_probs must be [gamma, vocab] next to target_probs, got "
                             f"{tuple(self.draft_probs.shape)}")

    @property
    def gamma(self) -> int:
        return int(self.draft_tokens.shape[0])


@dataclass(frozen=True)
class Acceptance:
    num_accepted: int
    next_token: int  # recovered token if num_accepted < gamma, else the bonus token


class AcceptanceRule(Protocol):
    name: str
    needs_probs: bool  # False: token ids are enough (greedy rounds send no distributions)

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance: ...


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from a [vocab] distribution."""
    return int(torch.multinomial(probs, 1, generator=generator))
