"""The target model runner: score windows of draft tokens, for several sessions in one forward pass.

Knows the model runtime and the warps, not gRPC or acceptance rules. Position i of a window is the
target's next-token distribution after the committed tokens and the window's first i draft tokens.
Returns the gamma + 1 argmaxes of every window and, for one window, the statistics its call asked for
(`specdec.runtime.scoring`: the target's probability of each draft token, candidate next tokens drawn at
the caller's uniforms, entropies, divergences); whole warped rows (in wire precision) only on request.
Calls of different sessions are scored as one batch; a call with M windows is scored as one batch over a
fork of its session's cache, and its session keeps only the committed tokens. Scores are computed on the
model's device; the host reads the argmaxes of a whole batch back at once.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.batcher import run_calls
from specdec.runtime.model import SessionLM
from specdec.runtime.scoring import StatisticsSpec, WindowStatistics, window_statistics
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
                compute_seconds=seconds, statistics=statistics(call, rows),
                batch_size=batch_size, batch_tokens=batch_tokens))
            offset += rows.shape[0]
        return results


def statistics(call: VerifyCall, logits: torch.Tensor) -> WindowStatistics | None:
    """What the call's rule needs of one window's logits [gamma + 1, vocab]; None when it asked for nothing."""
    spec = call.statistics
    if spec == StatisticsSpec() or call.num_drafts > 1:
        return None
    device = logits.device
    target_probs = warped_probs(logits, call.sampling)
    draft_rows = call.draft_probs.dense(device) if call.draft_probs is not None else None
    raw_target = raw_draft = None
    if spec.divergence_on_raw and not call.sampling.is_identity:
        raw_target = torch.softmax(logits.float(), -1)
        raw_draft = call.draft_raw_probs.dense(device) if call.draft_raw_probs is not None else None
    draft_tokens = torch.tensor(call.draft_tokens, dtype=torch.long, device=device)
    uniforms = torch.tensor(call.uniforms, dtype=torch.float64, device=device)
    return window_statistics(spec, target_probs, draft_tokens, uniforms, draft_rows, raw_target, raw_draft)
