"""The draft model runner: propose gamma draft tokens for a session.

Knows the model runtime and the warps, not gRPC. Each drafted token is sampled from exactly the
distribution it reports (`wire_precision` of the warped draft distribution), so that the acceptance
rule sees the true Q (ALGORITHMS.md section 1, condition (b)). Greedy proposals are argmax tokens with
no distributions.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.model import SessionLM
from specdec.runtime.warps import warped_probs
from specdec.runtime.wire import wire_precision
from specdec.types import Proposal, ProposeCall

_MASK63 = (1 << 63) - 1


def round_seed(seed: int, round_index: int) -> int:
    """The draft sampler's seed for one round: a fixed mix of the request seed and the round index."""
    return (seed * 0x9E3779B97F4A7C15 + round_index * 0xBF58476D1CE4E5B9 + 1) & _MASK63


class DraftRunner:
    def __init__(self, lm: SessionLM):
        self.lm = lm

    def propose(self, call: ProposeCall) -> Proposal:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(round_seed(call.seed, call.round))
        logits = self.lm.extend(call.session_id, call.keep_len, call.new_tokens)[-1:]
        draft_tokens: list[int] = []
        rows: list[torch.Tensor] = []
        for position in range(call.gamma):
            if call.sampling.greedy:
                token = int(logits[0].argmax())
            else:
                probs = wire_precision(warped_probs(logits.cpu(), call.sampling))
                token = int(torch.multinomial(probs[0], 1, generator=generator))
                rows.append(probs[0])
            draft_tokens.append(token)
            if position + 1 < call.gamma:
                logits = self.lm.extend(call.session_id, self.lm.cache_len(call.session_id), [token])
        draft_probs = torch.stack(rows) if (rows and call.want_probs) else None
        return Proposal(draft_tokens=draft_tokens, draft_probs=draft_probs,
                        cache_len=self.lm.cache_len(call.session_id),
                        compute_seconds=time.perf_counter() - started)
