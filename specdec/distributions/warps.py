"""Sampling warps (temperature, top-k, top-p) as pure functions over logits.

Both services call `warped_probs` so that the draft and the target apply exactly the same warps; the
acceptance rules assume it (docs/algorithms.md, `sd`; condition (a)). Order as in Hugging Face's
`generate`: temperature, then top-k, then top-p.
"""

from __future__ import annotations

import torch

from specdec.types import SamplingParams


def warped_probs(logits: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
    """logits: [rows, vocab] -> probabilities [rows, vocab] float32 under the warps.

    temperature 0 gives one-hot argmax rows. top_k keeps the k largest logits (ties at the k-th value
    are kept too); top_p keeps the smallest set of most likely tokens whose mass reaches top_p.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [rows, vocab], got shape {tuple(logits.shape)}")
    logits = logits.float()
    if sampling.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= sampling.top_p  # the first token is always kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
