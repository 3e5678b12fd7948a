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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import torch

from specdec.orchestrator.controllers.base import GammaController, RoundStats
from specdec.orchestrator.rules.base import Acceptance, AcceptanceRule, RoundScores
from specdec.orchestrator.rules.multi_draft import MULTI_DRAFT_RULES, MultiDraftScores
from specdec.orchestrator.stats import RequestStats
from specdec.types import Proposal, ProposeCall, SamplingParams, Verification, VerifyCall


class Proposer(Protocol):
    async def propose(self, call: ProposeCall) -> Proposal: ...

    async def end_session(self, session_id: str) -> None: ...


class Scorer(Protocol):
    async def verify(self, call: VerifyCall) -> Verification: ...

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


@dataclass
class _Window:
    """A proposed window and the committed length it was drafted after."""

    base: int
    proposal: Proposal


class RoundLoop:
    def __init__(self, request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
                 controller: GammaController, stats: RequestStats):
        self.request, self.proposer, self.scorer = request, proposer, scorer
        self.rule, self.controller, self.stats = rule, controller, stats
        self.committed = list(request.prompt_ids)
        self.draft_cursor = self.target_cursor = 0  # leading committed tokens each service's cache holds
        self.generator = torch.Generator().manual_seed(request.seed)
        self.draft_calls = 0  # seeds each draft call; speculative calls count too, so retries never collide
        self.want_raw = rule.needs_raw_probs and not request.sampling.is_identity
        # Overlap needs the draft's cache to run on from its own window: one draft sequence, no early stop.
        self.overlap = request.overlap and request.num_drafts == 1 and not controller.confidence_threshold

    def gamma_for(self, committed_len: int) -> int:
        """The controller's gamma, clipped so a round emits no more than the budget and the context allow."""
        produced = committed_len - len(self.request.prompt_ids)
        room = self.request.max_context - committed_len
        return max(0, min(self.controller.next_gamma(), self.request.max_new_tokens - produced - 1, room - 1))

    async def propose(self, keep_len: int, new_tokens: list[int], gamma: int) -> Proposal:
        call = ProposeCall(
            session_id=self.request.request_id, round=self.draft_calls, keep_len=keep_len, new_tokens=new_tokens,
            gamma=gamma, sampling=self.request.sampling, seed=self.request.seed, want_probs=self.rule.needs_probs,
            confidence_threshold=self.controller.confidence_threshold, want_raw_probs=self.want_raw,
            num_drafts=self.request.num_drafts)
        self.draft_calls += 1
        return await self.proposer.propose(call)

    async def run(self) -> AsyncIterator[list[int]]:
        request, stats = self.request, self.stats
        started = time.perf_counter()
        ready: _Window | None = None  # a pre-drafted window for the current committed tokens
        round_index = 0
        try:
            while True:
                round_started = time.perf_counter()
                produced = len(self.committed) - len(request.prompt_ids)
                if produced >= request.max_new_tokens or len(self.committed) >= request.max_context:
                    stats.finish_reason = "length"
                    break

                # 1. Propose up to gamma draft tokens, unless the last round pre-drafted them.
                window, ready = ready, None
                fresh: list[Proposal] = []  # draft calls made in this round, for the draft-time accounting
                gamma = self.gamma_for(len(self.committed))
                if window is None and gamma > 0:
                    proposal = await self.propose(self.draft_cursor, self.committed[self.draft_cursor:], gamma)
                    window = _Window(len(self.committed), proposal)
                    fresh.append(proposal)
                proposal = window.proposal if window else None
                draft_tokens = proposal.draft_tokens if proposal else []
                copies = request.num_drafts if draft_tokens else 1

                # 2. Verify with one target forward; meanwhile, in overlapped mode, draft the next window.
                verify = asyncio.ensure_future(self.scorer.verify(VerifyCall(
                    session_id=request.request_id, round=round_index, keep_len=self.target_cursor,
                    new_tokens=self.committed[self.target_cursor:], draft_tokens=draft_tokens,
                    sampling=request.sampling, want_probs=self.rule.needs_probs, want_raw_probs=self.want_raw,
                    num_drafts=copies)))
                ahead = self.draft_ahead(proposal)
                try:
                    verification = await verify
                finally:
                    if not verify.done():
                        verify.cancel()
                    speculative = await ahead if ahead else None  # the draft session must settle first

                # 3. Accept a prefix of the draft tokens, plus the recovered or bonus token.
                acceptance = accept(self.rule, proposal, verification, copies, self.generator)
                size = len(draft_tokens) // copies
                drafted = draft_tokens[acceptance.window * size:(acceptance.window + 1) * size]
                emitted = drafted[: acceptance.num_accepted] + [acceptance.next_token]
                if speculative and acceptance.num_accepted == size:
                    # Post-verify: the pre-drafted window covers the bonus position; emit no bonus token.
                    emitted = drafted
                    ready = _Window(len(self.committed) + size, speculative)

                # 4. Each cache keeps what it fed that is still committed; the rest is rolled back next round.
                valid = len(self.committed) + acceptance.num_accepted
                # Without a bonus token the target has fed every committed token; keep one back so the next
                # verify has a token to append and yields the distribution after it.
                self.target_cursor = min(verification.cache_len, valid - (1 if ready else 0))
                latest = speculative or proposal
                if latest:
                    self.draft_cursor = min(latest.cache_len, valid)
                if speculative:
                    fresh.append(speculative)

                # 5. Commit (up to a stop token and the budget), record, stream.
                stop_at = next((i for i, t in enumerate(emitted) if t in request.stop_token_ids), None)
                if stop_at is not None:
                    emitted = emitted[: stop_at + 1]
                emitted = emitted[: request.max_new_tokens - produced]
                self.committed += emitted
                self.draft_cursor = min(self.draft_cursor, len(self.committed))
                self.target_cursor = min(self.target_cursor, len(self.committed))
                if ready and len(self.committed) != ready.base:
                    ready = None  # truncated by a stop token or the budget: the pre-drafted window is moot
                draft_seconds = sum(p.compute_seconds for p in fresh)
                stats.record_round(size, acceptance.num_accepted, draft_seconds, verification.compute_seconds,
                                   verification.wire_bytes + sum(p.wire_bytes for p in fresh),
                                   draft_forwards=sum(len(p.draft_tokens) // copies for p in fresh))
                stats.output_tokens = len(self.committed) - len(request.prompt_ids)
                self.controller.update(RoundStats(size, acceptance.num_accepted, draft_seconds,
                                                  verification.compute_seconds, time.perf_counter() - round_started))
                round_index += 1
                stats.seconds = time.perf_counter() - started
                yield emitted
                if stop_at is not None:
                    stats.finish_reason = "stop"
                    break
        finally:
            stats.seconds = time.perf_counter() - started

    def draft_ahead(self, proposal: Proposal | None) -> asyncio.Future | None:
        """Start drafting the window after `proposal`, assuming all of it is accepted (overlapped mode)."""
        if not (self.overlap and proposal and proposal.draft_tokens):
            return None
        after = len(self.committed) + len(proposal.draft_tokens)
        gamma = self.gamma_for(after)
        if gamma <= 0:
            return None
        fed = proposal.cache_len  # the draft holds the committed tokens and all but its last draft token
        unfed = (self.committed + proposal.draft_tokens)[fed:]
        return asyncio.ensure_future(self.propose(fed, unfed, gamma))


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
