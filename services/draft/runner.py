"""The draft model runner: propose up to gamma draft tokens per session, for several sessions at once.

Knows the model runtime and the warps, not gRPC. Each drafted token is sampled from exactly the
distribution it reports (`wire_precision` of the warped draft distribution), so that the acceptance
rule sees the true Q (ALGORITHMS.md section 1, condition (b)); a greedy (argmax) token is reported as
one-hot. With a confidence threshold, drafting stops after a token whose probability under the draft
falls below it (Hugging Face's `assistant_confidence_threshold`), so a round may propose fewer than
gamma tokens. With one draft sequence, each position also reports the draft's most likely other token:
the orchestrator's guess at the recovered token should that position be rejected. Calls of different
sessions draft in lockstep, one batched forward per position. A call with M > 1 drafts runs its M
sequences as one batch over a fork of its session's cache, and its session keeps only the committed
tokens.
"""

from __future__ import annotations

import time

import torch

from specdec.runtime.batcher import run_calls
from specdec.runtime.model import SessionError, SessionLM
from specdec.runtime.warps import warped_probs
from specdec.runtime.wire import wire_precision
from specdec.types import Proposal, ProposeCall

_MASK63 = (1 << 63) - 1


def round_seed(seed: int, round_index: int) -> int:
    """The draft sampler's seed for one round: a fixed mix of the request seed and the round index."""
    return (seed * 0x9E3779B97F4A7C15 + round_index * 0xBF58476D1CE4E5B9 + 1) & _MASK63


class _Drafting:
    """One call's drafting state: the tokens and distributions drafted so far."""

    def __init__(self, call: ProposeCall):
        self.call = call
        self.generator = torch.Generator().manual_seed(round_seed(call.seed, call.round))
        self.columns: list[torch.Tensor] = []  # per position: [M] tokens
        self.rows: list[torch.Tensor] = []  # per position: [M, vocab] sampled-from distributions
        self.raw_rows: list[torch.Tensor] = []
        self.alternatives: list[torch.Tensor] = []  # per position: [M] the most likely token but the drafted one
        self.done = call.gamma <= 0

    def step(self, logits: torch.Tensor) -> torch.Tensor:
        """Draft the next position from logits [M, vocab]; return its tokens [M]."""
        call = self.call
        if call.sampling.greedy:
            scores = logits
            tokens = logits.argmax(-1)
            confidence = (torch.softmax(logits, -1).gather(-1, tokens[:, None])[:, 0] if call.confidence_threshold
                          else torch.ones(tokens.shape))
            if call.want_probs:  # a deterministic choice is scored with Q = one-hot (ALGORITHMS.md section 1)
                self.rows.append(torch.nn.functional.one_hot(tokens, logits.shape[-1]).float())
        else:
            probs = scores = wire_precision(warped_probs(logits, call.sampling))
            tokens = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
            confidence = probs.gather(-1, tokens[:, None])[:, 0]
            if call.want_probs:
                self.rows.append(probs)
        if call.want_raw_probs:
            self.raw_rows.append(wire_precision(torch.softmax(logits, -1)))
        self.columns.append(tokens)
        if call.num_drafts == 1:
            top2 = scores.topk(2, dim=-1).indices
            self.alternatives.append(torch.where(top2[:, 0] == tokens, top2[:, 1], top2[:, 0]))
        stop_early = call.num_drafts == 1 and float(confidence[0]) < call.confidence_threshold
        self.done = len(self.columns) == call.gamma or stop_early
        return tokens

    def proposal(self, cache_len: int, seconds: float) -> Proposal:
        return Proposal(draft_tokens=torch.stack(self.columns, 1).reshape(-1).tolist(),  # [M, gamma] sequence-major
                        draft_probs=_sequence_major(self.rows) if self.rows else None, cache_len=cache_len,
                        compute_seconds=seconds, draft_raw_probs=_sequence_major(self.raw_rows) if self.raw_rows
                        else None, alternative_tokens=tuple(int(t) for t in torch.cat(self.alternatives))
                        if self.alternatives else ())


class DraftRunner:
    def __init__(self, lm: SessionLM):
        self.lm = lm

    def propose(self, call: ProposeCall) -> Proposal:
        result = self.propose_batch([call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def propose_batch(self, calls: list[ProposeCall]) -> list[Proposal | Exception]:
        """Propose for every call; a call that cannot run gets its SessionError in its place."""
        return run_calls(calls, lambda c: self.lm.check_extend(c.session_id, c.keep_len, c.new_tokens),
                         lambda c: c.num_drafts > 1, self._propose_alone, self._lockstep)

    def _lockstep(self, calls: list[ProposeCall]) -> list[Proposal]:
        started = time.perf_counter()
        states = [_Drafting(call) for call in calls]
        logits = self.lm.extend_batch([(c.session_id, c.keep_len, c.new_tokens) for c in calls])
        last = {id(state): rows[-1:].cpu() for state, rows in zip(states, logits, strict=True)}
        active = [state for state in states if not state.done]
        while active:
            tokens = [state.step(last[id(state)]) for state in active]
            active = [(state, tok) for state, tok in zip(active, tokens, strict=True) if not state.done]
            if not active:
                break
            logits = self.lm.extend_batch([(state.call.session_id, self.lm.cache_len(state.call.session_id),
                                            [int(tok[0])]) for state, tok in active])
            last = {id(state): rows[-1:].cpu() for (state, _), rows in zip(active, logits, strict=True)}
            active = [state for state, _ in active]
        seconds = time.perf_counter() - started
        return [state.proposal(self.lm.cache_len(state.call.session_id), seconds) for state in states]

    def _propose_alone(self, call: ProposeCall) -> Proposal | Exception:
        """One call by itself: M > 1 sequences over a fork of the session's cache, or a repeated session."""
        started = time.perf_counter()
        try:
            state = _Drafting(call)
            logits = self.lm.extend(call.session_id, call.keep_len, call.new_tokens)[-1:].cpu()
            logits = logits.expand(call.num_drafts, -1)  # every sequence starts from the committed tokens
            fork = None
            while not state.done:
                tokens = state.step(logits)
                if state.done:
                    break
                if call.num_drafts == 1:
                    cached = self.lm.cache_len(call.session_id)
                    logits = self.lm.extend(call.session_id, cached, [int(tokens[0])]).cpu()
                else:
                    fork = fork or self.lm.fork(call.session_id, call.num_drafts)
                    logits = self.lm.extend_fork(fork, tokens[:, None].tolist())[:, -1].cpu()
        except SessionError as exc:
            return exc
        return state.proposal(self.lm.cache_len(call.session_id), time.perf_counter() - started)


def _sequence_major(rows: list[torch.Tensor]) -> torch.Tensor:
    """Per-position [M, vocab] rows -> [M * positions, vocab], sequence by sequence."""
    return torch.stack(rows, 1).reshape(-1, rows[0].shape[-1])
