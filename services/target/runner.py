"""The target model runner: score windows of draft tokens, for several sessions in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Returns gamma + 1 next-token
distributions per window (warped, in wire precision) and their argmaxes: position i is the target's
distribution after the committed tokens and the window's first i draft tokens. Un-warped distributions
on request. Calls of different sessions are scored as one batch; a call with M windows is scored as one
batch over a fork of its session's cache, and its session keeps only the committed tokens.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.batcher import run_calls
from specdec.runtime.model import SessionError, SessionLM
from specdec.runtime.warps import warped_probs
from specdec.runtime.wire import wire_precision
from specdec.types import Verification, VerifyCall


class TargetRunner:
    def __init__(self, lm: SessionLM):
        self.lm = lm

    def verify(self, call: VerifyCall) -> Verification:
        result = self.verify_batch([call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def verify_batch(self, calls: list[VerifyCall]) -> list[Verification | Exception]:
        """Score every call; a call that cannot run gets its SessionError in its place."""
        return run_calls(
            calls, lambda c: self.lm.check_extend(c.session_id, c.keep_len, c.new_tokens + c.draft_tokens),
            lambda c: c.num_drafts > 1 and bool(c.draft_tokens), self._verify_alone, self._verify_together)

    def _verify_together(self, calls: list[VerifyCall]) -> list[Verification]:
        """Calls of distinct sessions, one window each, scored in one batched extend."""
        started = time.perf_counter()
        items = [(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens) for call in calls]
        logits = self.lm.extend_batch(items)
        seconds = time.perf_counter() - started
        fed = sum(len(tokens) for _, _, tokens in items)
        return [self._scores(call, rows[-(len(call.draft_tokens) + 1):].cpu(), seconds, len(items), fed)
                for call, rows in zip(calls, logits, strict=True)]

    def _verify_alone(self, call: VerifyCall) -> Verification | Exception:
        """M windows of one call, scored over a fork of the session's cache after the committed tokens."""
        started = time.perf_counter()
        copies = call.num_drafts
        gamma = len(call.draft_tokens) // copies
        try:
            if copies == 1:
                logits = self.lm.extend(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens)
                return self._scores(call, logits[-(gamma + 1):].cpu(), time.perf_counter() - started, 1,
                                    len(call.new_tokens) + len(call.draft_tokens))
            first = self.lm.extend(call.session_id, call.keep_len, call.new_tokens)[-1:].cpu()  # shared position 0
            windows = [call.draft_tokens[m * gamma:(m + 1) * gamma] for m in range(copies)]
            rest = self.lm.extend_fork(self.lm.fork(call.session_id, copies), windows).cpu()  # [M, gamma, vocab]
        except SessionError as exc:
            return exc
        logits = torch.cat([first.expand(copies, 1, -1), rest], 1).reshape(copies * (gamma + 1), -1)
        return self._scores(call, logits, time.perf_counter() - started, copies,
                            len(call.new_tokens) + len(call.draft_tokens))

    def _scores(self, call: VerifyCall, logits: torch.Tensor, seconds: float, batch_size: int,
                batch_tokens: int) -> Verification:
        return Verification(
            target_argmax=logits.argmax(-1).tolist(),
            target_probs=wire_precision(warped_probs(logits, call.sampling)) if call.want_probs else None,
            cache_len=self.lm.cache_len(call.session_id),
            compute_seconds=seconds,
            target_raw_probs=wire_precision(torch.softmax(logits, -1)) if call.want_raw_probs else None,
            batch_size=batch_size, batch_tokens=batch_tokens)
