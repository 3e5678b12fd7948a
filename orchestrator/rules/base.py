"""The acceptance-rule interface: what a rule sees of a round and what it decides.

A rule is a pure function of one round's scores and a seeded generator: no I/O, no state. It returns
how many leading draft tokens it accepts and the next token (the recovered token at the first
rejection, or the bonus token when every draft token was accepted). The orchestrator appends
draft_tokens[:num_accepted] + [next_token] to the committed tokens.

A rule sees small arrays, not distributions over the vocabulary: the draft's probability of each of its
tokens, and what the rule's `statistics` asked the target to compute beside its logits
(`specdec.distributions.scoring`): the target's probability of each draft token, a candidate next token per
position drawn with the orchestrator's uniforms, entropies, divergences. Only rules over several draft
sequences per round (multi-draft `sd`) see whole rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from specdec.distributions.scoring import StatisticsSpec


@dataclass(frozen=True)
class RoundScores:
    """One round's scores. With M = `num_draft_sequences` draft sequences (multi-draft), the windows are flattened
    one after another, as vLLM's rejection sampler flattens its requests: window m's draft tokens are
    draft_tokens[m * gamma:(m + 1) * gamma] and its target rows are [m * (gamma + 1):(m + 1) * (gamma + 1)]."""

    draft_tokens: torch.Tensor  # [M * gamma] int64
    target_argmax: torch.Tensor  # [M * (gamma + 1)] int64
    draft_token_probs: torch.Tensor | None = None  # [gamma] Q_i(d_i) under the distribution d_i was sampled from
    target_token_probs: torch.Tensor | None = None  # [gamma] P_i(d_i), warped
    candidates: torch.Tensor | None = None  # [gamma + 1] the recovered token should position i be rejected; bonus
    entropies: torch.Tensor | None = None  # [gamma] H(P_i)
    divergences: torch.Tensor | None = None  # [gamma] Div(P_i, Q_i)
    # Whole rows, for rules over several windows only.
    draft_probs: torch.Tensor | None = None  # [M * gamma, vocab] what each draft token was sampled from
    target_probs: torch.Tensor | None = None  # [M * (gamma + 1), vocab] warped
    num_draft_sequences: int = 1

    def __post_init__(self) -> None:
        windows = self.num_draft_sequences
        if windows < 1 or self.draft_tokens.dim() != 1 or self.draft_tokens.shape[0] % windows:
            raise ValueError(f"draft_tokens must be [M * gamma] for M = {windows}, got "
                             f"{tuple(self.draft_tokens.shape)}")
        gamma = self.draft_tokens.shape[0] // windows
        if self.target_argmax.shape != (windows * (gamma + 1),):
            raise ValueError(f"draft_tokens [M * gamma] and target_argmax [M * (gamma + 1)] expected, got "
                             f"{tuple(self.draft_tokens.shape)} and {tuple(self.target_argmax.shape)}")
        for name, length in (("draft_token_probs", gamma), ("target_token_probs", gamma), ("candidates", gamma + 1),
                             ("entropies", gamma), ("divergences", gamma)):
            value = getattr(self, name)
            if value is not None and value.shape != (length,):
                raise ValueError(f"{name} must be [{length}], got {tuple(value.shape)}")
        if self.target_probs is not None and (self.target_probs.dim() != 2
                                              or self.target_probs.shape[0] != windows * (gamma + 1)):
            raise ValueError(f"target_probs must be [M * (gamma + 1), vocab], got {tuple(self.target_probs.shape)}")
        if self.draft_probs is not None and (
            self.target_probs is None or self.draft_probs.shape != (windows * gamma, self.target_probs.shape[1])
        ):
            raise ValueError(f"draft_probs must be [M * gamma, vocab] next to target_probs, got "
                             f"{tuple(self.draft_probs.shape)}")

    @property
    def gamma(self) -> int:
        """Draft tokens per window."""
        return int(self.draft_tokens.shape[0]) // self.num_draft_sequences

    def require(self, rule: str, *names: str) -> list[torch.Tensor]:
        """The named fields of a one-window round, or an error naming what is missing."""
        if self.num_draft_sequences != 1:
            raise ValueError(f"{rule} takes one draft sequence per round, got {self.num_draft_sequences}")
        values = [getattr(self, name) for name in names]
        missing = [name for name, value in zip(names, values, strict=True) if value is None]
        if missing:
            raise ValueError(f"{rule} needs {' and '.join(missing)}")
        return values


@dataclass(frozen=True)
class Acceptance:
    num_accepted: int
    next_token: int  # recovered token if num_accepted < gamma, else the bonus token
    window: int = 0  # with several draft sequences: the one whose prefix was accepted


class AcceptanceRule(Protocol):
    name: str
    multi_window: bool  # True: accepts several draft sequences per round (RoundScores.num_draft_sequences > 1)
    needs_probs: bool  # False: token ids are enough (greedy rounds send no distributions)
    statistics: StatisticsSpec  # what the target computes beside its logits for this rule

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance: ...


def first_false(accepted: torch.Tensor) -> int:
    """Length of the leading run of True in a [gamma] bool tensor."""
    rejected = (~accepted).nonzero()
    return int(rejected[0]) if rejected.numel() else int(accepted.shape[0])
