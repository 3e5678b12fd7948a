"""What the target computes beside its logits for the acceptance rule, so that only small arrays travel.

For a verified window of gamma draft tokens d_1..d_gamma, with P_i the target's warped distribution at
position i (i = 0..gamma) and Q_i the distribution the draft sampled d_i from:
- `target_token_probs[i]` = P_i(d_i): with the draft's own Q_i(d_i), all that `sd`, `opt`, `uno` and
  `typical` need for their accept test;
- `candidates[i]`, one per position: the token the rule emits should it stop at position i. For i < gamma
  the recovered token, drawn from normalize(max(0, P_i - Q_i)) (`recover="residual"`: sd, opt) or from P_i
  itself (`recover="target"`: uno, fsd, typical); for i = gamma the bonus token, from P_gamma. Each is
  drawn by inverse CDF with a uniform the orchestrator sends, seeded per request, so the orchestrator owns
  the randomness: the target computes where each uniform lands, the orchestrator decides which candidate,
  if any, is emitted;
- `entropies[i]` = H(P_i) (typical) and `divergences[i]` = Div(P_i, Q_i) (fsd), when asked.
The rule's decision is unchanged in distribution: a candidate is a draw from exactly the distribution the
rule would have sampled the recovered or bonus token from, with a uniform used for nothing else.

Pure functions over tensors; knows nothing of gRPC, sessions or the rules' names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specdec.distributions.divergences import DIVERGENCES, divergence

RECOVER_KINDS = ("", "residual", "target")  # "": no candidates (greedy rounds need the argmax only)


@dataclass(frozen=True)
class StatisticsSpec:
    """What a rule needs computed beside the target logits."""

    recover: str = ""  # one of RECOVER_KINDS
    entropy: bool = False
    divergence: str = ""  # one of DIVERGENCES; "" for none
    divergence_top_k: int = 50
    divergence_on_raw: bool = False  # compare the un-warped distributions instead of the warped ones

    def __post_init__(self) -> None:
        if self.recover not in RECOVER_KINDS:
            raise ValueError(f"recover: must be one of {RECOVER_KINDS}, got {self.recover!r}")
        if self.divergence and self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence: unknown {self.divergence!r}; known: {', '.join(DIVERGENCES)}")
        if self.divergence_top_k < 1:
            raise ValueError(f"divergence_top_k: must be >= 1, got {self.divergence_top_k}")

    @property
    def needs_draft_rows(self) -> bool:
        """True when the target needs the draft's distributions (the residual, or a divergence)."""
        return self.recover == "residual" or bool(self.divergence)

    @property
    def needs_uniforms(self) -> bool:
        return bool(self.recover)


@dataclass(frozen=True)
class WindowStatistics:
    target_token_probs: torch.Tensor  # [gamma] float32, P_i(d_i)
    candidates: torch.Tensor  # [gamma + 1] int64 (empty without `recover`)
    entropies: torch.Tensor  # [gamma] float32 (empty unless asked)
    divergences: torch.Tensor  # [gamma] float32 (empty unless asked)

    def parts(self) -> list[torch.Tensor]:
        """The fields in order: `WindowStatistics(*parts)` builds it again (from host copies, say)."""
        return [self.target_token_probs, self.candidates, self.entropies, self.divergences]


def residual_or_target(target_rows: torch.Tensor, draft_rows: torch.Tensor) -> torch.Tensor:
    """max(0, P - Q) per row, un-normalized; P itself for a row whose residual has no mass (P == Q up to
    round-off, where no rejection can happen but through float error, and P is the right distribution)."""
    residual = (target_rows - draft_rows).clamp_min(0)
    empty = residual.sum(-1, keepdim=True) <= 0
    return torch.where(empty, target_rows, residual)


def inverse_cdf(rows: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of non-negative weights [n, vocab] (not necessarily normalized), where uniform
    u in [0, 1) [n] lands in the row's cumulative mass: token x with probability rows[x] / sum(rows).
    A token of weight zero is never chosen, round-off at the top end included."""
    cdf = rows.double().cumsum(-1)  # float64: the mass of rare tokens survives a long vocabulary
    tokens = torch.searchsorted(cdf, uniforms[:, None].to(cdf.dtype) * cdf[:, -1:], right=True)[:, 0]
    vocab = rows.shape[-1]
    last_nonzero = vocab - 1 - (rows > 0).flip(-1).to(torch.int8).argmax(-1)
    return torch.where(tokens >= vocab, last_nonzero, torch.minimum(tokens, last_nonzero))


def window_statistics(spec: StatisticsSpec, target_probs: torch.Tensor, draft_tokens: torch.Tensor,
                      uniforms: torch.Tensor, draft_probs: torch.Tensor | None = None,
                      target_raw_probs: torch.Tensor | None = None,
                      draft_raw_probs: torch.Tensor | None = None) -> WindowStatistics:
    """Statistics of one window.

    target_probs [gamma + 1, vocab] warped; draft_tokens [gamma]; uniforms [gamma + 1] (with `recover`);
    draft_probs [gamma, vocab] (with the residual or a warped divergence); the raw rows for a raw
    divergence. The statistics stay on target_probs' device: the caller reads a batch's back at once.
    """
    gamma = draft_tokens.shape[0]
    if target_probs.dim() != 2 or target_probs.shape[0] != gamma + 1:
        raise ValueError(f"target_probs must be [gamma + 1, vocab] = [{gamma + 1}, vocab], "
                         f"got {tuple(target_probs.shape)}")
    empty = torch.empty(0)
    window = target_probs[:gamma]
    target_token_probs = window.gather(-1, draft_tokens[:, None].to(window.device))[:, 0]
    candidates = torch.empty(0, dtype=torch.long)
    if spec.recover:
        if uniforms.shape != (gamma + 1,):
            raise ValueError(f"uniforms: need {gamma + 1} (one per position), got {uniforms.shape[0]}")
        rows = target_probs
        if spec.recover == "residual" and gamma:
            if draft_probs is None:
                raise ValueError("draft_probs: the residual needs the draft's distributions")
            rows = torch.cat([residual_or_target(window, draft_probs), target_probs[gamma:]])
        candidates = inverse_cdf(rows, uniforms)
    entropies = -(window * window.clamp_min(1e-30).log()).sum(-1) if spec.entropy else empty
    divergences = empty
    if spec.divergence and gamma:
        compared_target, compared_draft = window, draft_probs
        if spec.divergence_on_raw and target_raw_probs is not None and draft_raw_probs is not None:
            compared_target, compared_draft = target_raw_probs[:gamma], draft_raw_probs
        if compared_draft is None:
            raise ValueError("draft_probs: a divergence needs the draft's distributions")
        divergences = divergence(spec.divergence, compared_target, compared_draft, spec.divergence_top_k)
    return WindowStatistics(target_token_probs.float(), candidates, entropies.float(), divergences.float())
