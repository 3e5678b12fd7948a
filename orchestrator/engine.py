"""The speculative round loop for one request: propose -> verify -> accept -> commit.

Knows the Proposer and Scorer protocols, an acceptance rule and a gamma controller; knows nothing of
gRPC, Ray or tokenizers. The committed tokens are the truth: each service's cache is described only by
how many leading committed tokens it holds (its cursor), and every call says how much to keep
(`keep_len`) and which committed tokens to append (`new_tokens`).
"""

from __future__ import annotations

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


async def generate(request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
                   controller: GammaController, stats: RequestStats) -> AsyncIterator[list[int]]:
    """Yield the emitted tokens of each round until a stop token, max_new_tokens or the context end.

    Fills `stats` as it goes (finish_reason and seconds included). The caller ends the sessions.
    """
    started = time.perf_counter()
    committed = list(request.prompt_ids)
    draft_cursor = target_cursor = 0  # leading committed tokens each service's cache holds
    generator = torch.Generator().manual_seed(request.seed)
    round_index = 0
    want_raw = rule.needs_raw_probs and not request.sampling.is_identity
    while True:
        round_started = time.perf_counter()
        produced = len(committed) - len(request.prompt_ids)
        room = request.max_context - len(committed)  # positions the target can still fill
        if produced >= request.max_new_tokens or room <= 0:
            stats.finish_reason = "length"
            break
        # The round emits at most gamma + 1 tokens: draft no more than the budget and the context allow.
        gamma = max(0, min(controller.next_gamma(), request.max_new_tokens - produced - 1, room - 1))

        # 1. Propose up to gamma draft tokens (fewer if the draft stops early on low confidence).
        proposal = None
        if gamma > 0:
            proposal = await proposer.propose(ProposeCall(
                session_id=request.request_id, round=round_index, keep_len=draft_cursor,
                new_tokens=committed[draft_cursor:], gamma=gamma, sampling=request.sampling, seed=request.seed,
                want_probs=rule.needs_probs, confidence_threshold=controller.confidence_threshold,
                want_raw_probs=want_raw, num_drafts=request.num_drafts))
        draft_tokens = proposal.draft_tokens if proposal else []
        copies = request.num_drafts if draft_tokens else 1

        # 2. Verify them with one target forward (all M windows in one batch).
        verification = await scorer.verify(VerifyCall(
            session_id=request.request_id, round=round_index, keep_len=target_cursor,
            new_tokens=committed[target_cursor:], draft_tokens=draft_tokens, sampling=request.sampling,
            want_probs=rule.needs_probs, want_raw_probs=want_raw, num_drafts=copies))

        # 3. Accept a prefix of the draft tokens, plus the recovered or bonus token.
        acceptance = accept(rule, proposal, verification, copies, generator)
        window = len(draft_tokens) // copies
        drafted = draft_tokens[acceptance.window * window:(acceptance.window + 1) * window]
        emitted = drafted[: acceptance.num_accepted] + [acceptance.next_token]

        # 4. Each cache keeps what it fed that is still committed; the rest is rolled back next round.
        valid = len(committed) + acceptance.num_accepted
        target_cursor = min(verification.cache_len, valid)
        if proposal:
            draft_cursor = min(proposal.cache_len, valid)

        # 5. Commit (up to a stop token and the budget), record, stream.
        stop_at = next((i for i, tok in enumerate(emitted) if tok in request.stop_token_ids), None)
        if stop_at is not None:
            emitted = emitted[: stop_at + 1]
        emitted = emitted[: request.max_new_tokens - produced]
        committed += emitted
        draft_seconds = proposal.compute_seconds if proposal else 0.0
        stats.record_round(window, acceptance.num_accepted, draft_seconds, verification.compute_seconds,
                           verification.wire_bytes + (proposal.wire_bytes if proposal else 0))
        stats.output_tokens = len(committed) - len(request.prompt_ids)
        controller.update(RoundStats(window, acceptance.num_accepted, draft_seconds,
                                     verification.compute_seconds, time.perf_counter() - round_started))
        round_index += 1
        stats.seconds = time.perf_counter() - started
        yield emitted
        if stop_at is not None:
            stats.finish_reason = "stop"
            break
    stats.seconds = time.perf_counter() - started


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
