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
    """One round's scores. With M = `num_windows` draft sequences (multi-draft), the windows are flattened
    one after another, as vLLM's rejection sampler flattens its requests: window m's draft tokens are
    draft_tokens[m * gamma:(m + 1) * gamma] and its target rows are [m * (gamma + 1):(m + 1) * (gamma + 1)]."""

    draft_tokens: torch.Tensor  # [M * gamma] int64
    target_argmax: torch.Tensor  # [M * (gamma + 1)] int64
    draft_probs: torch.Tensor | None = None  # [M * gamma, vocab] float32, what each draft token was sampled from
    target_probs: torch.Tensor | None = None  # [M * (gamma + 1), vocab] float32, warped
    # Un-warped (temperature 1, no truncation) distributions, for rules that compare raw distributions;
    # None when the request's warps are the identity (then the warped ones are the raw ones).
    draft_raw_probs: torch.Tensor | None = None  # [M * gamma, vocab]
    target_raw_probs: torch.Tensor | None = None  # [M * (gamma + 1), vocab]
    num_windows: int = 1

    def __post_init__(self) -> None:
        windows = self.num_windows
        if windows < 1 or self.draft_tokens.dim() != 1 or self.draft_tokens.shape[0] % windows:
            raise ValueError(f"draft_tokens must be [M * gamma] for M = {windows}, got "
                             f"{tuple(self.draft_tokens.shape)}")
        gamma = self.draft_tokens.shape[0] // windows
        if self.target_argmax.shape != (windows * (gamma + 1),):
            raise ValueError(f"draft_tokens [M * gamma] and target_argmax [M * (gamma + 1)] expected, got "
                             f"{tuple(self.draft_tokens.shape)} and {tuple(self.target_argmax.shape)}")
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
        return int(self.draft_tokens.shape[0]) // self.num_windows

    def require_probs(self, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(target_probs [gamma + 1, vocab], draft_probs [gamma, vocab]) of one window, or a clear error."""
        self.require_one_window(rule)
        if self.target_probs is None or self.draft_probs is None:
            if self.target_probs is not None and self.gamma == 0:
                return self.target_probs, self.target_probs[:0]
            raise ValueError(f"{rule} needs draft_probs and target_probs")
        return self.target_probs, self.draft_probs

    def require_one_window(self, rule: str) -> None:
        if self.num_windows != 1:
            raise ValueError(f"{rule} takes one draft sequence per round, got {self.num_windows}")


@dataclass(frozen=True)
class Acceptance:
    num_accepted: int
    next_token: int  # recovered token if num_accepted < gamma, else the bonus token
    window: int = 0  # with several draft sequences: the one whose prefix was accepted


class AcceptanceRule(Protocol):
    name: str
    multi_window: bool  # True: accepts several draft sequences per round (RoundScores.num_windows > 1)
    needs_probs: bool  # False: token ids are enough (greedy rounds send no distributions)
    needs_raw_probs: bool  # True: also the un-warped distributions of both models

    def accept(self, scores: RoundScores, generator: torch.Generator) -> Acceptance: ...


def sample(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token from a [vocab] distribution."""
    return int(torch.multinomial(probs, 1, generator=generator))


def first_false(accepted: torch.Tensor) -> int:
    """Length of the leading run of True in a [gamma] bool tensor."""
    rejected = (~accepted).nonzero()
    return int(rejected[0]) if rejected.numel() else int(accepted.shape[0])


def residual_or_target(target_row: torch.Tensor, draft_row: torch.Tensor) -> torch.Tensor:
    """normalize(max(0, P - Q)); P itself when the residual has no mass (P == Q up to round-off).

    A rejection has probability sum (Q - P)_+ = sum (P - Q)_+, so the residual has mass whenever a
    rejection can happen, except through float round-off when P == Q; then P is the right distribution.
    """
    residual = (target_row - draft_row).clamp_min(0)
    return residual if float(residual.sum()) > 0 else target_row
