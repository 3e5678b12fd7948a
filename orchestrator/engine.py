"""The speculative round loop for one request: propose -> verify -> accept -> commit.

Knows the Proposer and Scorer protocols, an acceptance rule and a gamma controller; knows nothing of
gRPC, Ray or tokenizers. The committed tokens are the truth: each service's cache is described only by
how many leading committed tokens it holds (its cursor), and every call says how much to keep
(`keep_len`) and which committed tokens to append (`new_tokens`).

Two modes. Serial: the draft waits while the target verifies. Overlapped (post-verify, PEARL): while the
target verifies window k, the draft drafts window k+1 as if all of window k were accepted. If it was,
round k emits the accepted window without a bonus token (the pre-drafted window's first token stands
at that position and is verified next), and window k+1 goes to verification at once; otherwise the
pre-drafted window is discarded and the draft rolls back. Every position is still judged by the rule
against the draft distribution it was sampled from, so `sd` stays exact.

Speculation lanes (the speculation cache) extend overlapped mode to rejections: lane j, a draft session
of its own, pre-drafts the window that follows "the first j-1 draft tokens accepted, then the draft's
most likely other token at position j-1 as the recovered token". When the round ends exactly so, that
window is verified next without waiting for the draft; the lane becomes the request's main draft
session. A pre-drafted window is used only when its premise is what the rule committed, and its tokens
were sampled from the draft given that premise, so every rule keeps its guarantees.

Faults. A draft that is down (ServiceDown) or being recovered costs nothing but speed: rounds go
target-only until it answers again. A target that is down is waited for, then asked the same round again
(calls are idempotent per session and round). A service that lost a session (SessionLost: it restarted)
gets it again from the committed tokens. A failed call may or may not have run, so afterwards a session's
cache is trusted only up to the call's keep_len. The committed tokens never depend on a fault, so greedy
output with faults equals greedy output without.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from specdec.orchestrator.controllers.base import GammaController, RoundStats
from specdec.orchestrator.rules.base import Acceptance, AcceptanceRule, RoundScores
from specdec.orchestrator.rules.multi_draft import MULTI_DRAFT_RULES, MultiDraftScores
from specdec.orchestrator.stats import RequestStats
from specdec.types import Proposal, ProposeCall, SamplingParams, ServiceDown, SessionLost, Verification, VerifyCall

MAX_VERIFY_ATTEMPTS = 8  # verify calls one round may make through faults before the request fails
DRAFT_FAULTS = (ServiceDown, SessionLost)


class Proposer(Protocol):
    available: bool  # False while the draft service is being recovered

    async def propose(self, call: ProposeCall) -> Proposal: ...

    async def end_session(self, session_id: str) -> None: ...


class Scorer(Protocol):
    async def verify(self, call: VerifyCall) -> Verification: ...

    async def recovered(self) -> None:
        """Return once the service answers again after a ServiceDown; raise ServiceDown if it will not."""

    async def end_session(self, session_id: str) -> None: ...


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    seed: int
    max_context: int
    stop_token_ids: frozenset[int] = frozenset()
    num_drafts: int = 1  # M draft sequences per round (M > 1: sd or greedy only)
    overlap: bool = False  # draft window k+1 while window k is verified
    speculation_lanes: int = 0  # overlapped mode: rejection outcomes to pre-draft for, besides full acceptance


def lane_session_ids(request: GenerationRequest) -> list[str]:
    """The draft sessions of a request: its own id, then one per speculation lane."""
    return [request.request_id] + [f"{request.request_id}/lane{j}" for j in range(1, request.speculation_lanes + 1)]


@dataclass
class _Lane:
    """A draft session: its cache holds committed[:cursor] followed by the not yet committed `held` tokens."""

    session_id: str
    cursor: int = 0
    held: list[int] = field(default_factory=list)

    def feed(self, sequence: list[int]) -> tuple[int, list[int]]:
        """(keep_len, new_tokens) that make the cache hold `sequence` (at least one token is fed)."""
        keep = self.cursor + common_prefix(self.held, sequence[self.cursor:])
        keep = min(keep, len(sequence) - 1)
        return keep, sequence[keep:]

    def drafted(self, keep_len: int, fed: list[int], proposal: Proposal) -> None:
        """Record what a propose call left in the cache: committed[:keep_len] + fed + all but the last draft."""
        held = (self.held[: keep_len - self.cursor] if keep_len > self.cursor else []) + fed + proposal.draft_tokens
        self.cursor = min(self.cursor, keep_len)
        self.held = held[: proposal.cache_len - self.cursor]

    def trust_only(self, length: int) -> None:
        """Believe no more than the cache's first `length` tokens (after a call that may or may not have run)."""
        if length < self.cursor:
            self.cursor, self.held = length, []
        else:
            self.held = self.held[: length - self.cursor]

    def settle(self, committed: list[int]) -> None:
        """Move the committed part of `held` behind the cursor; drop held tokens that were not committed."""
        matched = common_prefix(self.held, committed[self.cursor:])
        self.held = self.held[matched:] if self.cursor + matched == len(committed) else []
        self.cursor += matched


@dataclass
class _Window:
    """A proposed window, the committed length it was drafted after, and the lane that drafted it."""

    base: int
    proposal: Proposal
    lane: _Lane


@dataclass
class _Speculation:
    """A window drafted during verification, for the outcome `accepted` draft tokens then `token` (None: the
    whole window accepted and no bonus token; the pre-drafted window's first token takes that position)."""

    lane: _Lane
    accepted: int
    token: int | None
    future: asyncio.Future

    def premise_holds(self, acceptance: Acceptance, size: int) -> bool:
        if self.token is None:
            return acceptance.num_accepted == size
        return acceptance.num_accepted == self.accepted and acceptance.next_token == self.token


class RoundLoop:
    def __init__(self, request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
                 controller: GammaController, stats: RequestStats):
        self.request, self.proposer, self.scorer = request, proposer, scorer
        self.rule, self.controller, self.stats = rule, controller, stats
        self.committed = list(request.prompt_ids)
        self.lanes = [_Lane(session_id) for session_id in lane_session_ids(request)]  # lanes[0]: the main one
        self.target_cursor = 0  # leading committed tokens the target's cache holds
        self.generator = torch.Generator().manual_seed(request.seed)
        self.draft_calls = 0  # seeds each draft call; speculative calls count too, so retries never collide
        self.verify_calls = 0  # the round number of the next verify call (a retried call keeps its number)
        self.want_raw = rule.needs_raw_probs and not request.sampling.is_identity
        # Overlap needs the draft's cache to run on from its own window: one draft sequence, no early stop.
        self.overlap = request.overlap and request.num_drafts == 1 and not controller.confidence_threshold

    def gamma_for(self, committed_len: int) -> int:
        """The controller's gamma, clipped so a round emits no more than the budget and the context allow."""
        produced = committed_len - len(self.request.prompt_ids)
        room = self.request.max_context - committed_len
        return max(0, min(self.controller.next_gamma(), self.request.max_new_tokens - produced - 1, room - 1))

    async def propose(self, lane: _Lane, sequence: list[int], gamma: int) -> Proposal:
        """Draft `gamma` tokens after `sequence` (the committed tokens, perhaps plus a premise) on `lane`. A
        lane whose session the draft lost starts it again, once; ServiceDown and a second loss propagate."""
        try:
            return await self._propose_once(lane, sequence, gamma)
        except SessionLost:
            return await self._propose_once(lane, sequence, gamma)

    async def _propose_once(self, lane: _Lane, sequence: list[int], gamma: int) -> Proposal:
        keep_len, new_tokens = lane.feed(sequence)
        call = ProposeCall(
            session_id=lane.session_id, round=self.draft_calls, keep_len=keep_len, new_tokens=new_tokens,
            gamma=gamma, sampling=self.request.sampling, seed=self.request.seed, want_probs=self.rule.needs_probs,
            confidence_threshold=self.controller.confidence_threshold, want_raw_probs=self.want_raw,
            num_drafts=self.request.num_drafts)
        self.draft_calls += 1
        try:
            proposal = await self.proposer.propose(call)
        except DRAFT_FAULTS as fault:
            self.stats.num_draft_faults += 1
            lane.trust_only(0 if isinstance(fault, SessionLost) else keep_len)
            raise
        lane.drafted(keep_len, new_tokens, proposal)
        return proposal

    async def score(self, draft_tokens: list[int], copies: int) -> Verification:
        """Verify a window (empty: a target-only round). A target that went down is waited for and asked the
        same round again; one that lost the session is given the committed tokens again from the start."""
        request = self.request
        for _ in range(MAX_VERIFY_ATTEMPTS):
            call = VerifyCall(
                session_id=request.request_id, round=self.verify_calls, keep_len=self.target_cursor,
                new_tokens=self.committed[self.target_cursor:], draft_tokens=draft_tokens,
                sampling=request.sampling, want_probs=self.rule.needs_probs, want_raw_probs=self.want_raw,
                num_drafts=copies)
            try:
                verification = await self.scorer.verify(call)
            except ServiceDown:
                self.stats.num_target_faults += 1
                await self.scorer.recovered()
                continue
            except SessionLost:
                self.stats.num_target_faults += 1
                self.target_cursor = 0
                self.verify_calls += 1
                continue
            self.verify_calls += 1
            return verification
        raise ServiceDown(f"target: no answer to a verify after {MAX_VERIFY_ATTEMPTS} attempts")

    async def run(self) -> AsyncIterator[list[int]]:
        request, stats = self.request, self.stats
        started = time.perf_counter()
        ready: _Window | None = None  # a pre-drafted window for the current committed tokens
        try:
            while True:
                round_started = time.perf_counter()
                base = len(self.committed)
                produced = base - len(request.prompt_ids)
                if produced >= request.max_new_tokens or base >= request.max_context:
                    stats.finish_reason = "length"
                    break

                # 1. Propose up to gamma draft tokens, unless the last round pre-drafted them.
                window, ready = ready, None
                fresh: list[Proposal] = []  # draft calls made for the main lane, for the draft-time accounting
                gamma = self.gamma_for(base)
                if window is None and gamma > 0 and self.proposer.available:
                    call_started = time.perf_counter()
                    try:
                        proposal = await self.propose(self.lanes[0], self.committed, gamma)
                        window = _Window(base, proposal, self.lanes[0])
                        fresh.append(proposal)
                    except DRAFT_FAULTS:
                        pass  # the draft is down: this round goes target-only
                    stats.draft_call_seconds += time.perf_counter() - call_started
                draft_missing = window is None and gamma > 0
                stats.num_target_only_rounds += draft_missing
                stats.num_pre_drafted += window is not None and not fresh
                proposal = window.proposal if window else None
                draft_tokens = proposal.draft_tokens if proposal else []
                copies = request.num_drafts if draft_tokens else 1

                # 2. Verify with one target forward; meanwhile, in overlapped mode, draft ahead.
                call_started = time.perf_counter()
                verify = asyncio.ensure_future(self.score(draft_tokens, copies))
                speculations = self.draft_ahead(proposal)
                try:
                    verification = await verify
                finally:
                    verified = time.perf_counter()
                    stats.verify_call_seconds += verified - call_started
                    if not verify.done():
                        verify.cancel()
                    if speculations:  # every draft session must settle before the next call on it
                        await asyncio.wait([s.future for s in speculations])
                    stats.wait_seconds += time.perf_counter() - verified
                speculations = succeeded(speculations)

                # 3. Accept a prefix of the draft tokens, plus the recovered or bonus token.
                acceptance = accept(self.rule, proposal, verification, copies, self.generator)
                size = len(draft_tokens) // copies
                drafted = draft_tokens[acceptance.window * size:(acceptance.window + 1) * size]
                emitted = drafted[: acceptance.num_accepted] + [acceptance.next_token]
                hit = next((s for s in speculations if s.premise_holds(acceptance, size)), None)
                if hit:
                    if hit.token is None:  # post-verify: the pre-drafted window covers the bonus position
                        emitted = drafted
                    ready = _Window(base + len(emitted), hit.future.result(), hit.lane)
                    self.lanes.remove(hit.lane)
                    self.lanes.insert(0, hit.lane)
                    stats.num_lane_hits += hit.token is not None
                main = next((s for s in speculations if s.token is None), None)
                if main:
                    fresh.append(main.future.result())
                stats.num_lane_draft_tokens += sum(len(s.future.result().draft_tokens) for s in speculations
                                                   if s.token is not None)

                # 4. The target keeps what it fed that is still committed; without a bonus token it has fed
                # every committed token, so keep one back for the next verify to append.
                valid = base + acceptance.num_accepted
                held_back = 1 if hit and hit.token is None else 0
                self.target_cursor = min(verification.cache_len, valid - held_back)

                # 5. Commit (up to a stop token and the budget), record, stream.
                stop_at = next((i for i, t in enumerate(emitted) if t in request.stop_token_ids), None)
                if stop_at is not None:
                    emitted = emitted[: stop_at + 1]
                emitted = emitted[: request.max_new_tokens - produced]
                self.committed += emitted
                for lane in self.lanes:
                    lane.settle(self.committed)
                self.target_cursor = min(self.target_cursor, len(self.committed))
                if ready and len(self.committed) != ready.base:
                    ready = None  # truncated by a stop token or the budget: the pre-drafted window is moot
                draft_seconds = sum(p.compute_seconds for p in fresh)
                stats.record_round(size, acceptance.num_accepted, draft_seconds, verification.compute_seconds,
                                   verification.wire_bytes + sum(p.wire_bytes for p in fresh),
                                   draft_forwards=sum(len(p.draft_tokens) // copies for p in fresh))
                stats.output_tokens = len(self.committed) - len(request.prompt_ids)
                if not draft_missing:  # a round without the draft says nothing about the controller's choice
                    self.controller.update(RoundStats(
                        size, acceptance.num_accepted, draft_seconds, verification.compute_seconds,
                        time.perf_counter() - round_started, verification.batch_size, verification.batch_tokens))
                stats.seconds = time.perf_counter() - started
                yield emitted
                if stop_at is not None:
                    stats.finish_reason = "stop"
                    break
        finally:
            stats.seconds = time.perf_counter() - started
            spare = [lane.session_id for lane in self.lanes if lane.session_id != request.request_id]
            if spare:  # the caller ends the request's own sessions; the loop ends the lanes it added
                await asyncio.shield(asyncio.gather(*(self.proposer.end_session(s) for s in spare),
                                                    return_exceptions=True))

    def draft_ahead(self, proposal: Proposal | None) -> list[_Speculation]:
        """In overlapped mode, start drafting the windows that follow the likely outcomes of this round: the
        whole window accepted (on the main lane), and for lane j, j-1 tokens accepted then the draft's
        most likely other token at position j-1."""
        if not (self.overlap and proposal and proposal.draft_tokens and self.proposer.available):
            return []
        drafted = proposal.draft_tokens
        premises: list[tuple[int, int | None, list[int]]] = [(len(drafted), None, drafted)]
        for position, token in enumerate(proposal.alternative_tokens[: len(self.lanes) - 1]):
            premises.append((position, token, drafted[:position] + [token]))
        speculations = []
        for lane, (accepted, token, premise) in zip(self.lanes, premises, strict=False):  # lanes beyond the window idle
            sequence = self.committed + premise
            gamma = self.gamma_for(len(sequence))
            if gamma > 0:
                future = asyncio.ensure_future(self.propose(lane, sequence, gamma))
                speculations.append(_Speculation(lane, accepted, token, future))
        return speculations


def succeeded(speculations: list[_Speculation]) -> list[_Speculation]:
    """The settled speculations whose draft call succeeded; one that met a draft fault is dropped (its lane
    already trusts only what the call kept), any other failure fails the round."""
    kept = []
    for speculation in speculations:
        error = speculation.future.exception()
        if error is None:
            kept.append(speculation)
        elif not isinstance(error, DRAFT_FAULTS):
            raise error
    return kept


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def generate(request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
             controller: GammaController, stats: RequestStats) -> AsyncIterator[list[int]]:
    """Yield the emitted tokens of each round until a stop token, max_new_tokens or the context end.

    Fills `stats` as it goes (finish_reason and seconds included). The caller ends the sessions.
    """
    return RoundLoop(request, proposer, scorer, rule, controller, stats).run()


def accept(rule: AcceptanceRule, proposal: Proposal | None, verification: Verification, copies: int,
           generator: torch.Generator) -> Acceptance:
    """Run the rule over one round's scores: one window, or M windows for multi-draft rules."""
    draft_tokens = torch.tensor(proposal.draft_tokens if proposal else [], dtype=torch.long)
    target_argmax = torch.tensor(verification.target_argmax, dtype=torch.long)
    if copies == 1:
        return rule.accept(RoundScores(
            draft_tokens=draft_tokens, target_argmax=target_argmax,
            draft_probs=proposal.draft_probs if proposal else None, target_probs=verification.target_probs,
            draft_raw_probs=proposal.draft_raw_probs if proposal else None,
            target_raw_probs=verification.target_raw_probs), generator)
    gamma = draft_tokens.numel() // copies
    reshape = lambda probs, rows: None if probs is None else probs.reshape(copies, rows, -1)  # noqa: E731
    return MULTI_DRAFT_RULES[rule.name](MultiDraftScores(
        draft_tokens=draft_tokens.reshape(copies, gamma), target_argmax=target_argmax.reshape(copies, gamma + 1),
        draft_probs=reshape(proposal.draft_probs, gamma), target_probs=reshape(verification.target_probs, gamma + 1),
    ), generator)
