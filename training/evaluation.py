"""Held-out figures of a draft against its target, computed from their logits on the same windows.

- acceptance at T=1: the mean over positions of sum_x min(P(x), Q(x)), the probability that `sd` accepts
  a token drawn from the draft (Leviathan et al., 2023);
- greedy agreement: how often the draft's argmax is the target's (the acceptance of a greedy round);
- mean acceptance length at gamma: tokens a round yields, the bonus token included (Spec-Bench's
  definition), if each position were accepted independently at rate alpha: (1 - alpha^(gamma+1)) / (1 - alpha);
- and measured: `greedy_acceptance_length` replays greedy speculative decoding (the draft proposes gamma
  tokens greedily, the target's own greedy continuation decides) on held-out prompts, which is what the
  bench measures through the system.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from specdec.services.runtime.kv_cache import cache_keyword
from specdec.training.corpus import windows


def mean_acceptance_length(alpha: float, gamma: int) -> float:
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


@torch.inference_mode()
def evaluate(target: torch.nn.Module, draft: torch.nn.Module, tokens: np.ndarray, seq_len: int,
             batches: int = 8, batch_size: int = 8, seed: int = 1234) -> dict[str, float]:
    """Held-out losses (nats/token), acceptance at T=1 and greedy agreement, over the same seeded windows."""
    rng = random.Random(seed)
    totals = {"target_loss": 0.0, "draft_loss": 0.0, "acceptance_t1": 0.0, "greedy_agreement": 0.0}
    for _ in range(batches):
        block = windows(tokens, seq_len, batch_size, rng)
        inputs, labels = block[:, :-1], block[:, 1:].reshape(-1)
        target_logits = target(inputs).logits.float().flatten(0, 1)
        draft_logits = draft(inputs).logits.float().flatten(0, 1)
        totals["target_loss"] += F.cross_entropy(target_logits, labels).item()
        totals["draft_loss"] += F.cross_entropy(draft_logits, labels).item()
        overlap = torch.minimum(target_logits.softmax(-1), draft_logits.softmax(-1)).sum(-1)
        totals["acceptance_t1"] += overlap.mean().item()
        totals["greedy_agreement"] += (target_logits.argmax(-1) == draft_logits.argmax(-1)).float().mean().item()
    figures = {key: value / batches for key, value in totals.items()}
    figures["mean_acceptance_length_greedy_gamma4"] = mean_acceptance_length(figures["greedy_agreement"], 4)
    figures["mean_acceptance_length_t1_gamma4"] = mean_acceptance_length(figures["acceptance_t1"], 4)
    return figures


def _greedy(model: torch.nn.Module, ids: list[int], count: int) -> list[int]:
    """`count` greedy tokens after `ids` (end-of-text an ordinary token)."""
    inputs = torch.tensor([ids])
    out = model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=False, max_new_tokens=count,
                         min_new_tokens=count, pad_token_id=0)
    return out[0, len(ids):].tolist()


@torch.inference_mode()
def greedy_acceptance_length(target: torch.nn.Module, draft: torch.nn.Module, prompts: list[list[int]],
                             gamma: int = 4, new_tokens: int = 48) -> float:
    """Tokens per round of greedy speculative decoding at `gamma`, the bonus token included: over each
    prompt's `new_tokens` greedy target tokens, each round's draft window accepted up to its first miss."""
    rounds = emitted = 0
    for prompt in prompts:
        reference = _greedy(target, prompt, new_tokens)
        committed = 0
        while committed < len(reference):
            proposal = _greedy(draft, prompt + reference[:committed], gamma)
            accepted = 0
            while (accepted < gamma and committed + accepted < len(reference)
                   and proposal[accepted] == reference[committed + accepted]):
                accepted += 1
            step = min(accepted + 1, len(reference) - committed)
            committed, emitted, rounds = committed + step, emitted + step, rounds + 1
    return emitted / rounds if rounds else 0.0


@torch.inference_mode()
def forward_ms(model: torch.nn.Module, cache_tokens: int = 128, repeats: int = 40) -> float:
    """Milliseconds of one one-token forward over a cache of `cache_tokens`, on one thread (the bare cost the
    issue's "at the same cost" compares)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prompt = torch.randint(0, model.config.vocab_size, (1, cache_tokens))
        cache = DynamicCache()
        keyword = cache_keyword(model)
        model(prompt, use_cache=True, **{keyword: cache})
        token = torch.tensor([[1]])
        times = []
        for repeat in range(repeats + 5):
            started = time.perf_counter()
            model(token, use_cache=True, **{keyword: cache})
            if repeat >= 5:
                times.append(time.perf_counter() - started)
            cache.crop(-1)
        return 1e3 * sorted(times)[len(times) // 2]
    finally:
        torch.set_num_threads(threads)
