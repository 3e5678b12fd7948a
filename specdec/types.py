"""The vocabulary of a speculative round, shared by the services and the orchestrator.

draft tokens: the gamma tokens the draft proposes in one round. accepted tokens: the leading draft
tokens the rule keeps. recovered token: the token emitted at the first rejected position. bonus token:
the extra target token when every draft token was accepted. emitted tokens = accepted + (recovered or
bonus). committed tokens: the prompt plus everything emitted so far (owned by the orchestrator).

This module knows nothing of gRPC or of models; it holds plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """Warps applied identically by the draft and the target. temperature 0 means greedy."""

    temperature: float = 1.0
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0  # 1 disables top-p

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def is_identity(self) -> bool:
        """True when the warps leave the model's distribution unchanged (raw == warped)."""
        return self.temperature == 1.0 and not self.truncates

    @property
    def truncates(self) -> bool:
        """True when the warped distributions have zeros (sparse wire encoding pays)."""
        return self.top_k > 0 or self.top_p < 1.0


@dataclass(frozen=True)
class ProposeCall:
    """Ask the draft for `gamma` draft tokens after rolling back to `keep_len` and appending `new_tokens`."""

    session_id: str
    round: int
    keep_len: int
    new_tokens: list[int]
    gamma: int
    sampling: SamplingParams
    seed: int
    want_probs: bool
    confidence_threshold: float = 0.0  # > 0: stop once the draft's probability of its token is below it
    want_raw_probs: bool = False
    num_drafts: int = 1  # M > 1: M independent sequences of gamma tokens, no early stop


@dataclass(frozen=True)
class Proposal:
    draft_tokens: list[int]  # up to gamma (fewer after an early stop); M * gamma, sequence-major, for M drafts
    draft_probs: torch.Tensor | None  # [len(draft_tokens), vocab] float32: the distributions actually sampled from
    cache_len: int
    compute_seconds: float
    wire_bytes: int = 0
    draft_raw_probs: torch.Tensor | None = None  # [len(draft_tokens), vocab] un-warped
    # Per draft token (M = 1): the draft's most likely other token, a guess at the recovered token.
    alternative_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class VerifyCall:
    """Ask the target to score `draft_tokens` after rolling back to `keep_len` and appending `new_tokens`."""

    session_id: str
    round: int
    keep_len: int
    new_tokens: list[int]
    draft_tokens: list[int]
    sampling: SamplingParams
    want_probs: bool
    want_raw_probs: bool = False
    num_drafts: int = 1  # draft_tokens holds this many windows of equal length


@dataclass(frozen=True)
class Verification:
    target_argmax: list[int]  # gamma + 1 entries per window, window-major
    target_probs: torch.Tensor | None  # [M * (gamma + 1), vocab] float32, warped
    cache_len: int
    compute_seconds: float
    wire_bytes: int = 0
    target_raw_probs: torch.Tensor | None = None  # [gamma + 1, vocab] un-warped
    batch_size: int = 1  # sessions scored in the same forward (the target's load)
    batch_tokens: int = 0  # tokens fed in that forward, over all its sessions


@dataclass(frozen=True)
class ModelInfo:
    model: str
    vocab_size: int
    max_context: int
    tokenizer_fingerprint: str
    device: str
    dtype: str
    eos_token_id: int


class ServiceDown(Exception):
    """A model service did not answer (unreachable, crashed, or past its deadline). The service adapter
    is already bringing it back; the round loop decides what to do meanwhile."""


class SessionLost(Exception):
    """A model service no longer holds a session (it restarted, or the session expired): the caller
    starts the session again from the committed tokens."""
