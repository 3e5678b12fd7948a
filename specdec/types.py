"""The vocabulary of a speculative round, shared by the services and the orchestrator.

draft tokens: the gamma tokens the draft proposes in one round. accepted tokens: the leading draft
tokens the rule keeps. recovered token: the token emitted at the first rejected position. bonus token:
the extra target token when every draft token was accepted. emitted tokens = accepted + (recovered or
bonus). committed tokens: the prompt plus everything emitted so far (owned by the orchestrator).

This module knows nothing of gRPC or of models; it holds plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from specdec.distributions.scoring import StatisticsSpec, WindowStatistics


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
class TopRows:
    """Distributions that are zero outside K entries per row (the draft's truncated distributions), as
    they travel: row r puts probability values[r, j] on token indices[r, j]. Exact in float32."""

    indices: torch.Tensor  # [rows, K] int64
    values: torch.Tensor  # [rows, K] float32, each row summing to 1 (zeros allowed)
    vocab_size: int

    def __post_init__(self) -> None:
        if self.indices.dim() != 2 or self.indices.shape != self.values.shape:
            raise ValueError(f"indices and values must both be [rows, K], got {tuple(self.indices.shape)} and "
                             f"{tuple(self.values.shape)}")

    @property
    def rows(self) -> int:
        return int(self.indices.shape[0])

    def dense(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[rows, vocab] float32."""
        out = torch.zeros(self.rows, self.vocab_size, device=device)
        return out.scatter_(1, self.indices.to(device), self.values.to(device))


@dataclass(frozen=True)
class FeatureRows:
    """The target's hidden states at consecutive positions, a feature head's input: row i is position
    start + i, the outputs of the head's feature layers side by side, in float16 or bfloat16."""

    start: int
    values: torch.Tensor  # [rows, width]

    @property
    def stop(self) -> int:
        return self.start + int(self.values.shape[0])

    @property
    def nbytes(self) -> int:
        """What the rows weigh on the wire (2 bytes a value)."""
        return self.values.numel() * self.values.element_size()


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
    num_draft_sequences: int = 1  # M > 1: M independent sequences of gamma tokens, no early stop
    settings_held: bool = False  # the service holds this session's settings: they travel only once
    num_alternatives: int = 0  # each position's so many most likely other tokens (M = 1; speculation lanes)
    # A feature head's input: the target's features at the position before each new token (from
    # max(keep_len - 1, 0)); None for a draft model.
    features: FeatureRows | None = None
    # Speculation lanes (M = 1): the call drafts no window of its own, but gamma tokens after each lane's
    # premise, on forks; the session keeps only keep_len + new_tokens (which may then be empty).
    lanes: tuple[Lane, ...] = ()
    adopt_lane: int = 0  # with lanes: 1 + a lane of the session's previous call with lanes, which it becomes first


@dataclass(frozen=True)
class Lane:
    """A premise to draft after on a fork of the session: its first `keep_len` tokens, then `token`."""

    keep_len: int
    token: int


@dataclass(frozen=True)
class Proposal:
    draft_tokens: list[int]  # up to gamma (fewer after an early stop); M * gamma, sequence-major, for M drafts
    draft_probs: TopRows | None  # one row per draft token: the distribution it was actually sampled from
    cache_len: int
    compute_seconds: float
    wire_bytes: int = 0
    draft_raw_probs: TopRows | None = None  # un-warped rows on the same kind of support (raw divergences)
    draft_token_probs: tuple[float, ...] = ()  # per draft token: its probability under draft_probs
    # Per draft token (M = 1, when asked for): the draft's most likely other tokens, by descending
    # probability (guesses at the recovered token), the same number for each token.
    alternative_tokens: tuple[int, ...] = ()
    lanes: tuple[Proposal, ...] = ()  # a call with lanes: each lane's window, in the call's order

    def alternatives(self, position: int) -> tuple[int, ...]:
        """The draft's most likely other tokens at draft position `position` (none when not asked for)."""
        count = len(self.alternative_tokens) // len(self.draft_tokens) if self.draft_tokens else 0
        return self.alternative_tokens[position * count:(position + 1) * count]


@dataclass(frozen=True)
class VerifyCall:
    """Ask the target to score `draft_tokens` after rolling back to `keep_len` and appending `new_tokens`,
    and to compute beside its logits what `statistics` asks for (`specdec.distributions.scoring`)."""

    session_id: str
    round: int
    keep_len: int
    new_tokens: list[int]
    draft_tokens: list[int]
    sampling: SamplingParams
    want_probs: bool = False  # whole warped rows (rules over several windows only)
    num_draft_sequences: int = 1  # draft_tokens holds this many windows of equal length
    statistics: StatisticsSpec = StatisticsSpec()
    uniforms: tuple[float, ...] = ()  # gamma + 1, in [0, 1): where each position's candidate is drawn
    draft_probs: TopRows | None = None  # the draft's rows, when the statistics need them
    draft_raw_probs: TopRows | None = None
    # Without draft tokens: the target decodes this many tokens by itself, each fed back in turn (a run of
    # target-only positions in one call); position i's token is candidates[i] at uniforms[i] (with
    # statistics.recover), else its argmax.
    decode_tokens: int = 1
    settings_held: bool = False  # the service holds this session's sampling
    feature_layers: tuple[int, ...] = ()  # return the hidden states after these layers (a feature head's input)

    @property
    def positions(self) -> int:
        """Positions scored per window: gamma + 1, or the decoded run's length."""
        gamma = len(self.draft_tokens) // max(1, self.num_draft_sequences)
        return gamma + 1 if gamma else max(1, self.decode_tokens)


@dataclass(frozen=True)
class Verification:
    target_argmax: list[int]  # gamma + 1 entries per window, window-major
    target_probs: torch.Tensor | None  # [M * (gamma + 1), vocab] float32, warped; only when asked
    cache_len: int
    compute_seconds: float
    wire_bytes: int = 0
    statistics: WindowStatistics | None = None  # what the call's statistics asked for (one window)
    batch_size: int = 1  # sessions scored in the same forward (the target's load)
    batch_tokens: int = 0  # tokens fed in that forward, over all its sessions
    decoded_tokens: list[int] = field(default_factory=list)  # a decoded run's tokens (the last not yet fed)
    features: FeatureRows | None = None  # with feature_layers: a row per token fed, from keep_len


@dataclass(frozen=True)
class ModelInfo:
    model: str
    vocab_size: int
    max_context: int
    tokenizer_fingerprint: str
    device: str
    dtype: str
    eos_token_id: int
    draft_kind: str = "model"  # a draft's: "model" or "head"
    feature_layers: tuple[int, ...] = ()  # a head's: the target layers it reads
    target_fingerprint: str = ""  # a head's: the target it was trained for
    model_fingerprint: str = ""  # the model's own (`services.head.checkpoint.model_fingerprint`)
