"""The draft model runner: propose up to gamma draft tokens per session, for several sessions at once.

Knows the model runtime and the warps, not gRPC. Each drafted token is sampled from exactly the
distribution it reports, so that the acceptance rule sees the true Q (docs/algorithms.md, `sd`; condition
(b)): the warped draft distribution truncated to its `support` most likely tokens and renormalized
(`draft_support`), which travels as those K entries in float32, whatever the vocabulary; a greedy
(argmax) token is reported as one-hot. Truncating changes only how often draft tokens are accepted,
never what the target's output follows. With a confidence threshold, drafting stops after a token whose
probability under the draft falls below it (Hugging Face's `assistant_confidence_threshold`), so a round
may propose fewer than gamma tokens. With one draft sequence, each position also reports the draft's
most likely other token: the orchestrator's guess at the recovered token should that position be
rejected, when the call asks for it (speculation lanes do).

A window is drafted on the model's device: tokens are sampled there (a per-call generator on the device,
seeded from (seed, round)) and fed straight back to the model, and the host reads the window back once,
at the end, for every call of the batch together. The one exception is the confidence early stop: a call
with a threshold reads its token's probability back after every position (one host sync per token).
Calls of different sessions draft in lockstep, one batched forward per position; a call that finishes
(its gamma, or an early stop) leaves the batch. A prompt longer than the forward's token budget
(`max_batch_tokens`) is prefilled a chunk a batch (`batcher.Continue`), between the other calls' windows.
A call with M > 1 drafts runs its M sequences as rows over a fork of its session's cache, and its session
keeps only the committed tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch

from specdec.distributions.warps import warped_probs
from specdec.errors import SessionError
from specdec.services.runtime.batcher import MAX_BATCH_TOKENS, PREFILL_CHUNK_FLOOR, Continue, chunk_sizes, run_calls, run_to_end
from specdec.services.runtime.model import SessionLM
from specdec.services.runtime.transfer import to_host
from specdec.types import Proposal, ProposeCall, TopRows

_MASK63 = (1 << 63) - 1


def round_seed(seed: int, round_index: int) -> int:
    """The draft sampler's seed for one round: a fixed mix of the request seed and the round index."""
    return (seed * 0x9E3779B97F4A7C15 + round_index * 0xBF58476D1CE4E5B9 + 1) & _MASK63


DRAFT_SUPPORT = 64  # tokens per draft distribution on the wire (K entries of 8 bytes, whatever the vocabulary)


def lane_seed(seed: int, round_index: int, lane: int) -> int:
    """The sampler's seed of lane `lane` of a call: a fixed mix of the call's own seed and the lane."""
    return round_seed(round_seed(seed, round_index), lane + 1)


def other_top_tokens(top: torch.Tensor, tokens: torch.Tensor, count: int) -> torch.Tensor:
    """top [M, > count] token ids by descending score, tokens [M] -> [M, count]: the best `count` of each row
    but `tokens`, by descending score."""
    others = top[:, : count + 1] != tokens[:, None]
    order = torch.argsort((~others).to(torch.int8), dim=-1, stable=True)  # the others first, in their order
    return top[:, : count + 1].gather(-1, order[:, :count])


def draft_support(probs: torch.Tensor, support: int) -> tuple[torch.Tensor, torch.Tensor]:
    """probs [M, vocab] -> (indices [M, K], values [M, K]): the K = min(support, vocab) most likely tokens
    by descending probability, renormalized to sum to 1 (float32): the distribution the draft samples from."""
    values, indices = probs.float().topk(min(support, probs.shape[-1]), dim=-1)
    return indices, values / values.sum(-1, keepdim=True)


class _Drafting:
    """One call's window: per position, device tensors of the drafted tokens and what the call reports."""

    def __init__(self, call: ProposeCall, device: torch.device, support: int, seed: int):
        self.call, self.support = call, support
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.columns: list[torch.Tensor] = []  # per position: [M] tokens
        self.rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # per position: the sampled-from [M, K] rows
        self.token_probs: list[torch.Tensor] = []  # per position: [M] each token's probability in its row
        self.raw_rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.alternatives: list[torch.Tensor] = []  # per position (M = 1, asked for): [1, A] the likeliest others
        self.stopped = False  # by the confidence threshold

    @property
    def done(self) -> bool:
        return self.stopped or len(self.columns) >= self.call.gamma

    def step(self, logits: torch.Tensor) -> torch.Tensor:
        """Draft the next position from logits [M, vocab] on the device; return its tokens [M], there."""
        call = self.call
        if call.sampling.greedy:
            top = (logits.topk(min(call.num_alternatives + 1, logits.shape[-1]), dim=-1).indices
                   if call.num_alternatives else logits.argmax(-1, keepdim=True))
            tokens = top[:, 0]
            token_probs = torch.ones(tokens.shape, device=logits.device)
            if call.want_probs:  # a deterministic choice is scored with Q = one-hot (docs/algorithms.md, `sd`)
                self.rows.append((tokens[:, None], token_probs[:, None]))
        else:
            top, values = draft_support(warped_probs(logits, call.sampling), self.support)
            choice = torch.multinomial(values, 1, generator=self.generator)
            tokens, token_probs = top.gather(-1, choice)[:, 0], values.gather(-1, choice)[:, 0]
            if call.want_probs:
                self.rows.append((top, values))
        if call.want_probs:
            self.token_probs.append(token_probs)
        if call.want_raw_probs:
            self.raw_rows.append(draft_support(torch.softmax(logits.float(), -1), self.support))
        self.columns.append(tokens)
        if call.num_draft_sequences == 1:
            if call.num_alternatives:
                self.alternatives.append(other_top_tokens(top, tokens, min(call.num_alternatives, top.shape[-1] - 1)))
            if call.confidence_threshold > 0:  # the early-stop path: one host sync per token
                confidence = torch.softmax(logits.float(), -1)[0, tokens[0]] if call.sampling.greedy else token_probs[0]
                self.stopped = float(confidence) < call.confidence_threshold
        return tokens

    def device_parts(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """What the host reads back, flat, on the device: ints (the tokens [M * positions] sequence-major,
        the alternatives, the rows' token ids) and floats (each token's probability, the rows' values)."""
        if not self.columns:
            return [], []
        ints = [torch.stack(self.columns, 1).reshape(-1), *(row.reshape(-1) for row in self.alternatives)]
        floats = [torch.stack(self.token_probs, 1).reshape(-1).float()] if self.token_probs else []
        for rows in (self.rows, self.raw_rows):
            if rows:
                ints.append(torch.stack([index for index, _ in rows], 1).reshape(-1))
                floats.append(torch.stack([value for _, value in rows], 1).reshape(-1).float())
        return ints, floats

    def proposal(self, ints: list[int], floats: list[float], vocab_size: int, cache_len: int,
                 seconds: float) -> Proposal:
        """The proposal from this call's `device_parts`, read back."""
        count = len(self.columns) * self.call.num_draft_sequences
        draft_tokens, ints = ints[:count], ints[count:]
        asked = sum(row.numel() for row in self.alternatives)
        alternatives, ints = ints[:asked], ints[asked:]
        token_probs, floats = (floats[:count], floats[count:]) if self.token_probs else ([], floats)
        tables: list[TopRows | None] = []
        for rows in (self.rows, self.raw_rows):
            size = count * rows[0][0].shape[-1] if rows else 0
            tables.append(TopRows(torch.tensor(ints[:size]).reshape(count, -1),
                                  torch.tensor(floats[:size], dtype=torch.float32).reshape(count, -1), vocab_size)
                          if rows else None)
            ints, floats = ints[size:], floats[size:]
        return Proposal(draft_tokens=draft_tokens, draft_probs=tables[0], cache_len=cache_len,
                        compute_seconds=seconds, draft_raw_probs=tables[1], draft_token_probs=tuple(token_probs),
                        alternative_tokens=tuple(alternatives))


class DraftRunner:
    chunks_prefill = True  # prompts longer than max_batch_tokens are prefilled in chunks

    def __init__(self, lm: SessionLM, support: int = DRAFT_SUPPORT, max_batch_tokens: int = MAX_BATCH_TOKENS):
        if support < 2:
            raise ValueError(f"support: at least 2 tokens per draft distribution, got {support}")
        self.lm, self.support, self.max_batch_tokens = lm, support, max_batch_tokens

    def propose(self, call: ProposeCall) -> Proposal:
        """One call to its end (every chunk of its prompt), alone."""
        result = run_to_end(self.propose_batch, [call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def propose_batch(self, calls: list[ProposeCall]) -> list[Proposal | Exception | Continue]:
        """Propose for every call; a call that cannot run gets its SessionError in its place, one whose prompt
        took a chunk of this batch `Continue` with the rest."""
        return run_calls(calls, self.check, lambda c: c.num_draft_sequences > 1 or bool(c.lanes), self._propose_alone,
                         self._propose)

    def check(self, call: ProposeCall) -> None:
        """Raise SessionError if the call cannot run on its session: its new tokens, then the gamma - 1
        drafted tokens its window feeds back, must fit the model's context. A call with lanes may append no
        tokens; each lane's premise must start within what the session then holds, its window within the
        context, and its lanes draft without an early stop (they all end together)."""
        lane = call.adopt_lane - 1 if call.adopt_lane else None
        if call.lanes and not call.new_tokens:
            self.lm.check_keep(call.session_id, call.keep_len, lane)
        else:
            self.lm.check_extend(call.session_id, call.keep_len, call.new_tokens, lane)
        held = call.keep_len + len(call.new_tokens)
        if call.lanes and call.confidence_threshold > 0:
            raise SessionError("lanes", "speculation lanes draft gamma tokens each: no confidence_threshold")
        for lane in call.lanes:
            if not 1 <= lane.keep_len <= held:
                raise SessionError("lanes", f"a lane keeps {lane.keep_len} tokens: it must keep 1 .. the {held} "
                                            f"tokens the session holds after the call's new tokens")
        window = max(lane.keep_len + 1 for lane in call.lanes) if call.lanes else held
        if window + call.gamma - 1 > self.lm.max_context:
            raise SessionError("gamma", f"the window would hold {window + call.gamma - 1} tokens, more than the "
                                        f"model's context of {self.lm.max_context}")

    def _propose_alone(self, call: ProposeCall) -> Proposal | SessionError:
        if not call.lanes:
            return self._propose([call])[0]
        try:
            return self._propose_lanes(call)
        except SessionError as refused:  # a lane the model cannot start where asked (a head's)
            return refused

    @torch.inference_mode()
    def _propose(self, calls: list[ProposeCall]) -> list[Proposal | Continue]:
        """Checked calls of distinct sessions, drafted in lockstep (or one call of M > 1 drafts over a fork),
        after one forward over their new tokens; a call whose prompt does not fit that forward's budget
        feeds a chunk of it and continues in the next batch."""
        started = time.perf_counter()
        counts = [len(call.new_tokens) for call in calls]
        sizes = (chunk_sizes(counts, [1] * len(calls), self.max_batch_tokens, PREFILL_CHUNK_FLOOR)
                 if self.chunks_prefill else counts)
        logits = self._extend([replace(call, new_tokens=call.new_tokens[:size]) for call, size in zip(calls, sizes,
                                                                                                          strict=True)],
                              [int(size == count) for size, count in zip(sizes, counts, strict=True)])
        drafting = [index for index, (size, count) in enumerate(zip(sizes, counts, strict=True)) if size == count]
        states = [_Drafting(calls[i], self.lm.device, self.support, round_seed(calls[i].seed, calls[i].round))
                  for i in drafting]
        # every sequence of a call starts from its committed tokens
        last = [logits[i].expand(state.call.num_draft_sequences, -1) for i, state in zip(drafting, states, strict=True)]
        if len(calls) == 1 and calls[0].num_draft_sequences > 1:
            self._window(states, last, lambda active: self.lm.fork(calls[0].session_id, calls[0].num_draft_sequences))
        else:
            self._window(states, last, lambda active: self.lm.rows([state.call.session_id for state in active]))
        proposals = iter(self._read_proposals(states, [self.lm.cache_len(calls[i].session_id) for i in drafting],
                                              started))
        return [next(proposals) if size == count else
                Continue(replace(call, keep_len=call.keep_len + size, new_tokens=call.new_tokens[size:], adopt_lane=0))
                for call, size, count in zip(calls, sizes, counts, strict=True)]

    @torch.inference_mode()
    def _propose_lanes(self, call: ProposeCall) -> Proposal:
        """A checked call with lanes: the session rolled back and extended by the call's new tokens, then every
        lane's window drafted in lockstep over forks of the session, each lane with a sampler of its own."""
        started = time.perf_counter()
        if call.adopt_lane:
            self.lm.adopt(call.session_id, call.adopt_lane - 1)
        if call.new_tokens:
            self._extend([call], [1])
        else:
            self.lm.roll_back(call.session_id, call.keep_len)
        forks = self.lm.fork_at(call.session_id, [lane.keep_len for lane in call.lanes])
        tokens = torch.tensor([[lane.token] for lane in call.lanes], device=self.lm.device)
        first = self.lm.extend_rows(forks, tokens)[:, -1]
        states = [_Drafting(call, self.lm.device, self.support, lane_seed(call.seed, call.round, index))
                  for index in range(len(call.lanes))]
        self._window(states, list(first.split(1)), lambda active: forks)  # no early stop: all lanes end together
        lanes = self._read_proposals(states, [0] * len(states), started)
        return Proposal(draft_tokens=[], draft_probs=None, cache_len=self.lm.cache_len(call.session_id),
                        compute_seconds=lanes[0].compute_seconds, lanes=tuple(lanes))

    def _read_proposals(self, states: list[_Drafting], cache_lens: list[int], started: float) -> list[Proposal]:
        """Every state's proposal, read back from the device at once."""
        parts = [state.device_parts() for state in states]
        ints, floats = _read_back([part for state_ints, _ in parts for part in state_ints],
                                  [part for _, state_floats in parts for part in state_floats])
        seconds = time.perf_counter() - started  # after the read-back: the device's time is in it
        proposals, int_at, float_at = [], 0, 0
        for state, (state_ints, state_floats), cache_len in zip(states, parts, cache_lens, strict=True):
            int_size, float_size = sum(p.numel() for p in state_ints), sum(p.numel() for p in state_floats)
            proposals.append(state.proposal(ints[int_at:int_at + int_size], floats[float_at:float_at + float_size],
                                            self.lm.vocab_size, cache_len, seconds))
            int_at, float_at = int_at + int_size, float_at + float_size
        return proposals

    def _extend(self, calls: list[ProposeCall], logits_of: list[int]) -> list[torch.Tensor]:
        """Each call's new tokens appended to its session, in one forward: per call the logits [1, vocab] at
        its last (the distribution of its first draft token) where `logits_of` is 1, none where 0 (a chunk
        of a prompt)."""
        return self.lm.extend_batch([(c.session_id, c.keep_len, c.new_tokens) for c in calls], logits_of)

    def _window(self, states: list[_Drafting], last: list[torch.Tensor],
                rows_for: Callable[[list[_Drafting]], object]) -> None:
        """Draft every state's window in lockstep from its logits last[i] [M, vocab]: after each position,
        one forward over the rows (`rows_for` the states still drafting) with the tokens just drafted."""
        active = [(state, logits) for state, logits in zip(states, last, strict=True) if not state.done]
        rows = None
        while active:
            tokens = [state.step(logits) for state, logits in active]
            still = [(state, token) for (state, _), token in zip(active, tokens, strict=True) if not state.done]
            if not still:
                return
            if len(still) < len(active):
                rows = None
            rows = rows if rows is not None else rows_for([state for state, _ in still])
            out = self.lm.extend_rows(rows, torch.cat([token for _, token in still])[:, None])[:, -1]
            active = list(zip([state for state, _ in still],
                              out.split([state.call.num_draft_sequences for state, _ in still]), strict=True))


def _read_back(ints: list[torch.Tensor], floats: list[torch.Tensor]) -> tuple[list, list]:
    """Flat device tensors of ints and of floats -> two Python lists, in one read-back."""
    joined = [torch.cat(parts) if parts else torch.empty(0) for parts in (ints, floats)]
    return tuple(tensor.tolist() for tensor in to_host(joined))
