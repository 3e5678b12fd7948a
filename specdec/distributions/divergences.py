"""Divergences between target and draft distributions, row by row: pure functions for `fsd`.

Names as in docs/algorithms.md (Divergences): `kl` = KL(Q || P) (draft || target), `reverse_kl` = KL(P || Q), `js`
(Jensen-Shannon in nats, at most ln 2), `tv` (total variation, in [0, 1]). A `_topk` suffix compares
the target's top-k tokens plus one bucket holding the rest of the mass (k = 50 in the FSD reference).
"""

from __future__ import annotations

import torch

# Probabilities below this are treated as this in logarithms, so that fp16-rounded zeros do not give
# infinite divergences; it is far below any probability a sampler would act on.
LOG_FLOOR = 1e-10


def _kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row, rows [n, vocab]."""
    return (a * (a.clamp_min(LOG_FLOOR).log() - b.clamp_min(LOG_FLOOR).log())).sum(-1)


def kl(target: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    return _kl(draft, target)


def reverse_kl(target: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    return _kl(target, draft)


def js(target: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    mixture = 0.5 * (target + draft)
    return 0.5 * _kl(target, mixture) + 0.5 * _kl(draft, mixture)


def tv(target: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    return 0.5 * (target - draft).abs().sum(-1)


BASE_DIVERGENCES = {"kl": kl, "reverse_kl": reverse_kl, "js": js, "tv": tv}
DIVERGENCES = [*BASE_DIVERGENCES, *(f"{name}_topk" for name in BASE_DIVERGENCES)]


def bucket_top_k(target: torch.Tensor, draft: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both rows restricted to the target's top-k tokens plus one bucket with the remaining mass: [n, k + 1]."""
    k = min(k, target.shape[-1])
    top = target.topk(k, dim=-1).indices
    target_top, draft_top = target.gather(-1, top), draft.gather(-1, top)
    rest = lambda rows: (1 - rows.sum(-1, keepdim=True)).clamp_min(0)  # noqa: E731
    return torch.cat([target_top, rest(target_top)], -1), torch.cat([draft_top, rest(draft_top)], -1)


def divergence(name: str, target: torch.Tensor, draft: torch.Tensor, top_k: int = 50) -> torch.Tensor:
    """Divergence `name` between matching rows of target and draft ([n, vocab] each) -> [n]."""
    if name not in DIVERGENCES:
        raise ValueError(f"divergence: unknown {name!r}; known: {', '.join(DIVERGENCES)}")
    base = name.removesuffix("_topk")
    if name.endswith("_topk"):
        target, draft = bucket_top_k(target, draft, top_k)
    return BASE_DIVERGENCES[base](target, draft)
