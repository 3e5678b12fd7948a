"""Held-out figures of a feature head against its target, by replaying speculative decoding.

Each round the head drafts `gamma` tokens from the target's features of the committed tokens (its own
regressed features after the first), and one target forward over the committed and drafted tokens both
decides the round and gives the features of the next. Greedy: the drafts are accepted up to the first that
is not the target's argmax, and the target's argmax follows. T=1: `sd`'s rule, each draft token accepted
with probability min(1, P/Q), a rejected one replaced by a draw from the residual max(P - Q, 0), and a
bonus token drawn from P after a window accepted whole. Tokens per round, the bonus included, is the mean
acceptance length (Spec-Bench's definition) the bench measures through the system.
"""

from __future__ import annotations

import time

import torch

from specdec.services.head.model import FeatureHead
from specdec.services.runtime.features import captured_layers
from specdec.services.runtime.kv_cache import KVShape, Slot, Span


def _draft(head: FeatureHead, features: torch.Tensor, committed: list[int], gamma: int, temperature: float,
           generator: torch.Generator) -> tuple[list[int], list[torch.Tensor]]:
    """gamma tokens drafted after `committed` from the target's features [len(committed) - 1, width], and
    the distribution each was drawn from."""
    config = head.config
    slot = Slot(KVShape(1, config.num_key_value_heads, config.head_dim, head.fuse.weight.dtype,
                        head.fuse.weight.device), 1, len(committed) + gamma)
    pairs = len(committed) - 1
    out = head.slot_forward([Span(slot, 0, 0, pairs)], head.fused(features[None, :pairs]),
                            torch.tensor([committed[1:]]), torch.arange(pairs)[None])
    slot.length = pairs
    drafts, rows = [], []
    for index in range(gamma):
        logits = head.logits(out.predict[0, -1]).float()
        if temperature == 0:
            token = int(logits.argmax())
            rows.append(torch.nn.functional.one_hot(torch.tensor(token), logits.shape[-1]).float())
        else:
            rows.append(torch.softmax(logits / temperature, -1))
            token = int(torch.multinomial(rows[-1], 1, generator=generator))
        drafts.append(token)
        if index + 1 < gamma:
            out = head.slot_forward([Span(slot, 0, slot.length, 1)], out.regress[:, -1:], torch.tensor([[token]]),
                                    torch.tensor([[slot.length]]))
            slot.length += 1
    return drafts, rows


@torch.inference_mode()
def head_acceptance_length(target: torch.nn.Module, head: FeatureHead, prompts: list[list[int]], gamma: int = 4,
                           new_tokens: int = 48, temperature: float = 0.0, seed: int = 0) -> float:
    """Tokens per round of speculative decoding with the head at `gamma`, over each prompt's `new_tokens`."""
    generator = torch.Generator().manual_seed(seed)
    layers = head.config.feature_layers
    rounds = emitted = 0
    for prompt in prompts:
        committed = list(prompt)
        with captured_layers(target, layers) as captured:
            target(torch.tensor([committed]))
        features = captured[0][0]
        produced = 0
        while produced < new_tokens:
            drafts, rows = _draft(head, features, committed, gamma, temperature, generator)
            with captured_layers(target, layers) as captured:
                logits = target(torch.tensor([committed + drafts])).logits[0, len(committed) - 1:].float()
            features = captured[0][0]
            accepted, next_token = _decide(logits, drafts, rows, temperature, generator)
            step = min(accepted + 1, new_tokens - produced)
            committed += (drafts[:accepted] + [next_token])[:step]
            produced, emitted, rounds = produced + step, emitted + step, rounds + 1
    return emitted / rounds if rounds else 0.0


def _decide(logits: torch.Tensor, drafts: list[int], rows: list[torch.Tensor], temperature: float,
            generator: torch.Generator) -> tuple[int, int]:
    """(accepted draft tokens, the next token) from the target's logits [gamma + 1, vocab] over the window."""
    if temperature == 0:
        argmax = logits.argmax(-1).tolist()
        accepted = next((i for i, token in enumerate(drafts) if token != argmax[i]), len(drafts))
        return accepted, argmax[accepted]
    probs = torch.softmax(logits / temperature, -1)
    for index, (token, row) in enumerate(zip(drafts, rows, strict=True)):
        ratio = float(probs[index, token] / row[token])
        if float(torch.rand(1, generator=generator)) >= ratio:
            residual = (probs[index] - row).clamp(min=0)
            return index, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    return len(drafts), int(torch.multinomial(probs[len(drafts)], 1, generator=generator))


@torch.inference_mode()
def head_forward_ms(head: FeatureHead, cache_pairs: int = 128, repeats: int = 40) -> float:
    """Milliseconds of one drafted pair over a cache of `cache_pairs`, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = head.config
        slot = Slot(KVShape(1, config.num_key_value_heads, config.head_dim, head.fuse.weight.dtype,
                            head.fuse.weight.device), 1, cache_pairs + 1)
        g = torch.randn(1, cache_pairs, config.hidden_size)
        head.slot_forward([Span(slot, 0, 0, cache_pairs)], g, torch.zeros(1, cache_pairs, dtype=torch.long),
                          torch.arange(cache_pairs)[None])
        times = []
        for repeat in range(repeats + 5):
            started = time.perf_counter()
            out = head.slot_forward([Span(slot, 0, cache_pairs, 1)], g[:, -1:], torch.tensor([[1]]),
                                    torch.tensor([[cache_pairs]]))
            head.logits(out.predict).argmax(-1)
            if repeat >= 5:
                times.append(time.perf_counter() - started)
        return 1e3 * sorted(times)[len(times) // 2]
    finally:
        torch.set_num_threads(threads)
