"""The draft model runner: propose up to gamma draft tokens for a session.

Knows the model runtime and the warps, not gRPC. Each drafted token is sampled from exactly the
distribution it reports (`wire_precision` of the warped draft distribution), so that the acceptance
rule sees the true Q (ALGORITHMS.md section 1, condition (b)). Greedy proposals are argmax tokens with
no distributions. With a confidence threshold, drafting stops after a token whose probability under
the draft falls below it (Hugging Face's `assistant_confidence_threshold`), so a round may propose fewer
than gamma tokens.
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
        logits = self.lm.extend(call.session_id, call.keep_len, call.new_tokens)[-1:].cpu()  # [1, vocab]
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        raw_rows: list[torch.Tensor] = []
        for position in range(call.gamma):
            if call.sampling.greedy:
                token = int(logits[0].argmax())
                confidence = float(torch.softmax(logits[0], -1)[token]) if call.confidence_threshold else 1.0
            else:
                probs = wire_precision(warped_probs(logits, call.sampling))[0]
                token = int(torch.multinomial(probs, 1, generator=generator))
                confidence = float(probs[token])
                rows.append(probs)
            if call.want_raw_probs:
                raw_rows.append(wire_precision(torch.softmax(logits, -1))[0])
            tokens.append(token)
            if position + 1 == call.gamma or confidence < call.confidence_threshold:
                break
            logits = self.lm.extend(call.session_id, self.lm.cache_len(call.session_id), [token]).cpu()
        return Proposal(draft_tokens=tokens,
                        draft_probs=torch.stack(rows) if (rows and call.want_probs) else None,
                        cache_len=self.lm.cache_len(call.session_id),
                        compute_seconds=time.perf_counter() - started,
                        draft_raw_probs=torch.stack(raw_rows) if raw_rows else None)
