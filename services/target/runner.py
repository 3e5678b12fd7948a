"""The target model runner: score windows of draft tokens in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Returns gamma + 1 next-token
distributions per window (warped, in wire precision) and their argmaxes: position i is the target's
distribution after the committed tokens and the window's first i draft tokens. Un-warped distributions
on request. With M windows they are scored as one batch over a fork of the session's cache, and the
session keeps only the committed tokens.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.model import SessionLM
from specdec.runtime.warps import warped_probs
from specdec.runtime.wire import wire_precision
from specdec.types import Verification, VerifyCall


class TargetRunner:
    def __init__(self, lm: SessionLM):
        self.lm = lm

    def verify(self, call: VerifyCall) -> Verification:
        started = time.perf_counter()
        copies = call.num_drafts
        gamma = len(call.draft_tokens) // copies
        if copies == 1 or gamma == 0:
            window = len(call.draft_tokens) + 1
            logits = self.lm.extend(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens)[-window:]
            logits = logits.cpu()
        else:
            first = self.lm.extend(call.session_id, call.keep_len, call.new_tokens)[-1:].cpu()  # shared position 0
            windows = [call.draft_tokens[m * gamma:(m + 1) * gamma] for m in range(copies)]
            rest = self.lm.extend_fork(self.lm.fork(call.session_id, copies), windows).cpu()  # [M, gamma, vocab]
            logits = torch.cat([first.expand(copies, 1, -1), rest], 1).reshape(copies * (gamma + 1), -1)
        return Verification(
            target_argmax=logits.argmax(-1).tolist(),
            target_probs=wire_precision(warped_probs(logits, call.sampling)) if call.want_probs else None,
            cache_len=self.lm.cache_len(call.session_id),
            compute_seconds=time.perf_counter() - started,
            target_raw_probs=wire_precision(torch.softmax(logits, -1)) if call.want_raw_probs else None,
        )
