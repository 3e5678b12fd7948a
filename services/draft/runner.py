"""The draft model runner: propose up to gamma draft tokens for a session, or M independent sequences.

Knows the model runtime and the warps, not gRPC. Each drafted token is sampled from exactly the
distribution it reports (`wire_precision` of the warped draft distribution), so that the acceptance
rule sees the true Q (ALGORITHMS.md section 1, condition (b)). Greedy proposals are argmax tokens with
no distributions. With a confidence threshold, drafting stops after a token whose probability under
the draft falls below it (Hugging Face's `assistant_confidence_threshold`), so a round may propose fewer
than gamma tokens. With M > 1 drafts, the M sequences run as one batch over a fork of the session's
cache, and the session keeps only the committed tokens.
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
        copies = call.num_drafts
        logits = logits.expand(copies, -1)  # [M, vocab]: every sequence starts from the committed tokens
        fork = None
        columns: list[torch.Tensor] = []  # per position: [M] tokens
        rows: list[torch.Tensor] = []  # per position: [M, vocab] sampled-from distributions
        raw_rows: list[torch.Tensor] = []
        for position in range(call.gamma):
            if call.sampling.greedy:
                tokens = logits.argmax(-1)
                confidence = torch.softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
                if call.want_probs:  # a deterministic choice is scored with Q = one-hot (ALGORITHMS.md section 1)
                    rows.append(torch.nn.functional.one_hot(tokens, logits.shape[-1]).float())
            else:
                probs = wire_precision(warped_probs(logits, call.sampling))
                tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
                confidence = probs.gather(-1, tokens[:, None])[:, 0]
                rows.append(probs)
            if call.want_raw_probs:
                raw_rows.append(wire_precision(torch.softmax(logits, -1)))
            columns.append(tokens)
            stop_early = copies == 1 and float(confidence[0]) < call.confidence_threshold
            if position + 1 == call.gamma or stop_early:
                break
            if copies == 1:
                cached = self.lm.cache_len(call.session_id)
                logits = self.lm.extend(call.session_id, cached, [int(tokens[0])]).cpu()
            else:
                fork = fork or self.lm.fork(call.session_id, copies)
                logits = self.lm.extend_fork(fork, tokens[:, None].tolist())[:, -1].cpu()
        draft_tokens = torch.stack(columns, 1).reshape(-1).tolist()  # [M, gamma] sequence-major
        return Proposal(draft_tokens=draft_tokens,
                        draft_probs=_sequence_major(rows) if (rows and call.want_probs) else None,
                        cache_len=self.lm.cache_len(call.session_id),
                        compute_seconds=time.perf_counter() - started,
                        draft_raw_probs=_sequence_major(raw_rows) if raw_rows else None)


def _sequence_major(rows: list[torch.Tensor]) -> torch.Tensor:
    """Per-position [M, vocab] rows -> [M * positions, vocab], sequence by sequence."""
    return torch.stack(rows, 1).reshape(-1, rows[0].shape[-1])
