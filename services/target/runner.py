"""The target model runner: score windows of draft tokens, for several sessions in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Returns gamma + 1 next-token
distributions per window (warped, in wire precision) and their argmaxes: position i is the target's
distribution after the committed tokens and the window's first i draft tokens. Un-warped distributions
on request. Calls of different sessions are scored as one batch; a call with M windows is scored as one
batch over a fork of its session's cache, and its session keeps only the committed tokens. Scores are
computed on the model's device; the host reads the argmaxes of a whole batch back at once.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.batcher import run_calls
from specdec.runtime.model import SessionLM
from specdec.runtime.warps import warped_probs
from specdec.runtime.wire import wire_precision
from specdec.types import Verification, VerifyCall


def _forks(call: VerifyCall) -> bool:
    """Whether the call's windows are scored over a fork (M > 1 windows of draft tokens)."""
    return call.num_drafts > 1 and bool(call.draft_tokens)


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
            _forks, lambda c: self._verify_forked(c) if _forks(c) else self._verify_together([c])[0],
            self._verify_together)

    @torch.inference_mode()
    def _verify_together(self, calls: list[VerifyCall]) -> list[Verification]:
        """Checked calls of distinct sessions, one window each, scored in one batched extend."""
        started = time.perf_counter()
        items = [(call.session_id, call.keep_len, call.new_tokens + call.draft_tokens) for call in calls]
        logits = [rows[-(len(call.draft_tokens) + 1):]
                  for call, rows in zip(calls, self.lm.extend_batch(items), strict=True)]
        return self._scores(calls, logits, started, len(items), sum(len(tokens) for _, _, tokens in items))

    @torch.inference_mode()
    def _verify_forked(self, call: VerifyCall) -> Verification:
        """M windows of one checked call, scored over a fork of the session's cache after the committed tokens."""
        started = time.perf_counter()
        copies = call.num_drafts
        gamma = len(call.draft_tokens) // copies
        first = self.lm.extend_batch([(call.session_id, call.keep_len, call.new_tokens)])[0][-1:]  # position 0
        windows = torch.tensor(call.draft_tokens).reshape(copies, gamma).to(self.lm.device, non_blocking=True)
        rest = self.lm.extend_rows(self.lm.fork(call.session_id, copies), windows)  # [M, gamma, vocab]
        logits = torch.cat([first.expand(copies, 1, -1), rest], 1).reshape(copies * (gamma + 1), -1)
        return self._scores([call], [logits], started, copies, len(call.new_tokens) + len(call.draft_tokens))[0]

    def _scores(self, calls: list[VerifyCall], logits: list[torch.Tensor], started: float, batch_size: int,
                batch_tokens: int) -> list[Verification]:
        """Verifications from each call's logits [rows, vocab] on the device; one read-back for the argmaxes."""
        argmax = torch.cat([rows.argmax(-1) for rows in logits]).tolist()
        seconds = time.perf_counter() - started
        results, offset = [], 0
        for call, rows in zip(calls, logits, strict=True):
            results.append(Verification(
                target_argmax=argmax[offset:offset + rows.shape[0]],
                target_probs=wire_precision(warped_probs(rows, call.sampling)).cpu() if call.want_probs else None,
                cache_len=self.lm.cache_len(call.session_id),
                compute_seconds=seconds,
                target_raw_probs=wire_precision(torch.softmax(rows, -1)).cpu() if call.want_raw_probs else None,
                batch_size=batch_size, batch_tokens=batch_tokens))
            offset += rows.shape[0]
        return results
