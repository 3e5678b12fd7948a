"""The speculative round for one request: propose -> verify -> rule -> commit.

Knows the per-request session adapters (`sessions.py`), an acceptance rule, a gamma controller and a
drafting strategy; knows nothing of the services' cache protocol (keep_len, round numbers, retries,
re-prefill: the adapters own those), nor of gRPC, Ray or tokenizers. The committed tokens are the
truth; every service cache is a copy of some of them.

The round has two exits: every draft token accepted, then the bonus token from the target; or a
rejection, then the recovered token in place of the first rejected draft token. A round the controller
gives no draft tokens (gamma 0) is a decoded run: the target decodes up to TARGET_RUN_TOKENS tokens by
itself in one call, each the token the rule picks after an empty window. How drafting overlaps
verification is a strategy around the round (`overlap.py`): serial mode drafts, then waits for the
verify; overlapped mode drafts the next windows during the verify and hands the round a window that is
already drafted when its premise is what the rule committed.

Faults. A draft that is down costs nothing but speed: the round goes target-only until it answers again.
The target adapter waits for a target that is down and asks again, so the committed tokens never depend
on a fault and greedy output with faults equals greedy output without.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import torch

from specdec.distributions.scoring import WindowStatistics
from specdec.orchestrator.controllers.base import GammaController, RoundStats
from specdec.orchestrator.round.feature_store import FeatureStore
from specdec.orchestrator.round.overlap import DraftAhead, Serial, Strategy, Window
from specdec.orchestrator.round.sessions import (
    DRAFT_FAULTS,
    CallSettings,
    DraftSession,
    Proposer,
    Scorer,
    TargetSession,
)
from specdec.orchestrator.round.speculation import MAX_ALTERNATIVES, OverlapChoice
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules.base import Acceptance, AcceptanceRule, RoundScores
from specdec.types import Proposal, SamplingParams, Verification

TARGET_RUN_TOKENS = 8  # tokens a target-only round decodes in one call (the first round: one, for latency)


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    seed: int
    max_context: int
    stop_token_ids: frozenset[int] = frozenset()
    num_draft_sequences: int = 1  # M draft sequences per round (M > 1: rules that take several windows)
    overlap: bool = False  # draft ahead for the likely outcomes of window k while it is verified
    speculation_lanes: int = 0  # overlapped mode: rejection outcomes to draft ahead for, at most, a round
    feature_layers: tuple[int, ...] = ()  # a feature-head draft's: the target's features it reads (one sequence)


class RoundLoop:
    def __init__(self, request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
                 controller: GammaController, stats: RequestStats, overlap_choice: OverlapChoice | None = None):
        """`overlap_choice`: in overlapped mode, decides round by round whether drafting ahead pays (None:
        every round drafts ahead)."""
        self.request, self.rule, self.controller, self.stats = request, rule, controller, stats
        self.committed = list(request.prompt_ids)
        self.generator = torch.Generator().manual_seed(request.seed)
        raw = rule.statistics.divergence_on_raw and not request.sampling.is_identity
        # Overlap needs the draft's cache to run on from its own window: one draft sequence, no early stop.
        overlap = request.overlap and request.num_draft_sequences == 1 and not controller.confidence_threshold
        settings = CallSettings(request.sampling, request.seed, rule.needs_probs, raw, rule.statistics,
                                controller.confidence_threshold, request.num_draft_sequences,
                                num_alternatives=min(request.speculation_lanes, MAX_ALTERNATIVES) if overlap else 0,
                                feature_layers=request.feature_layers)
        # A feature head drafts from the target's features of the committed tokens.
        self.features = FeatureStore() if request.feature_layers else None
        self.draft_session = DraftSession(proposer, request.request_id, settings, itertools.count(), stats,
                                          self.features)
        self.target = TargetSession(scorer, request.request_id, settings, stats, self.features)
        self.strategy: Strategy = (DraftAhead(self.draft_session, self.gamma_for, stats, request.speculation_lanes,
                                              overlap_choice) if overlap else Serial())

    def gamma_for(self, length: int) -> int:
        """The controller's gamma after `length` tokens, clipped to the budget and the context."""
        produced = length - len(self.request.prompt_ids)
        room = self.request.max_context - length
        return max(0, min(self.controller.next_gamma(), self.request.max_new_tokens - produced - 1, room - 1))

    async def round(self, ready: Window | None) -> tuple[list[int], Window | None]:
        """One round. Returns the emitted tokens and a window drafted ahead for the next round, if any."""
        started, base = time.perf_counter(), len(self.committed)
        # 1. Propose up to gamma draft tokens, unless they were drafted during the last verification.
        gamma = self.gamma_for(base)
        if gamma == 0 and ready is None:
            return await self.decoded_run(started), None
        prefill = not self.draft_session.can_draft(self.committed)  # a feature head waits for the target's features
        window = ready or await self.draft(gamma)
        self.stats.num_target_only_rounds += window is None and gamma > 0 and not prefill
        self.stats.num_pre_drafted += ready is not None
        # 2. Verify the window with one target forward (the strategy may draft ahead meanwhile); the target
        # draws each position's candidate next token where these uniforms fall.
        proposal, num_draft_sequences = (window.proposal, window.num_draft_sequences) if window else (None, 1)
        positions = len(proposal.draft_tokens) // num_draft_sequences + 1 if proposal else 1
        verifying = self.timed_verify(self.committed, proposal, num_draft_sequences, self.uniforms(positions))
        verification = await self.strategy.verify(verifying, window, self.committed)
        # 3. The rule accepts a prefix of one window's draft tokens and picks the next token.
        acceptance = accept(self.rule, window, verification, self.generator)
        drafted = window.drafted(acceptance.window) if window else []
        ahead = self.strategy.take(acceptance, len(drafted))  # a window drafted for exactly this outcome
        # 4. Two exits.
        if acceptance.num_accepted == len(drafted):  # all accepted: the bonus token, unless a window drafted
            emitted = drafted if ahead else drafted + [acceptance.next_token]  # ahead starts at its position
        else:  # rejected at position num_accepted: the recovered token takes its place
            emitted = drafted[: acceptance.num_accepted] + [acceptance.next_token]
        # 5. Commit, then learn from the round.
        emitted = self.commit(emitted)
        spent = ([window.proposal] if window and not ready else []) + self.strategy.spent()
        self.record(len(drafted), acceptance.num_accepted, spent, verification, started,
                    learn=window is not None or gamma == 0)
        return emitted, ahead if ahead and ahead.base == len(self.committed) else None

    async def decoded_run(self, started: float) -> list[int]:
        """A target-only round: the target decodes a run of tokens in one call, feeding back at each position
        its candidate (at the round's uniform) or its argmax. The rule still picks every token, from that
        position's scores after an empty window; the run is cut after a token the rule picks otherwise."""
        request = self.request
        produced = len(self.committed) - len(request.prompt_ids)
        count = max(1, min(TARGET_RUN_TOKENS if produced else 1, request.max_new_tokens - produced,
                           request.max_context - len(self.committed)))
        verification = await self.timed_verify(self.committed, None, 1, self.uniforms(count), count)
        if not verification.decoded_tokens:  # a run of one: an ordinary target-only round
            emitted = [accept(self.rule, None, verification, self.generator).next_token]
        else:
            emitted = []
            for position, fed in enumerate(verification.decoded_tokens):
                emitted.append(accept(self.rule, None, run_position(verification, position), self.generator).next_token)
                if emitted[-1] != fed:  # the target's later positions follow a token not emitted
                    break
        emitted = self.commit(emitted)
        self.record(0, 0, [], verification, started, learn=True, forwards=len(emitted))
        return emitted

    def uniforms(self, positions: int) -> tuple[float, ...]:
        """Where the target draws each position's candidate, when the rule asks for candidates."""
        if not self.rule.statistics.needs_uniforms:
            return ()
        return tuple(torch.rand(positions, generator=self.generator).tolist())

    async def draft(self, gamma: int) -> Window | None:
        """A fresh window on the main draft session; None for a target-only round or while the draft is down."""
        session = self.draft_session
        if gamma <= 0 or not session.available or not session.can_draft(self.committed):
            return None
        started = time.perf_counter()
        try:
            proposal = await session.propose(self.committed, gamma)
        except DRAFT_FAULTS:
            return None  # the draft is down: this round goes target-only
        finally:
            self.stats.draft_call_seconds += time.perf_counter() - started
        return Window(len(self.committed), proposal, self.request.num_draft_sequences)

    async def timed_verify(self, *args) -> Verification:
        """`self.target.verify(*args)`, its time counted. The call is made here, not by the caller: a verify
        cancelled before it starts (the request cancelled) then leaves no coroutine that was never awaited."""
        started = time.perf_counter()
        try:
            return await self.target.verify(*args)
        finally:
            self.stats.verify_call_seconds += time.perf_counter() - started

    def commit(self, emitted: list[int]) -> list[int]:
        """Append the emitted tokens, cut after a stop token and at the budget; every cache settles on them."""
        stop_at = next((i for i, t in enumerate(emitted) if t in self.request.stop_token_ids), len(emitted))
        produced = len(self.committed) - len(self.request.prompt_ids)
        emitted = emitted[: min(stop_at + 1, self.request.max_new_tokens - produced)]
        if stop_at < len(emitted):
            self.stats.finish_reason = "stop"
        self.committed += emitted
        for session in (self.draft_session, self.target):
            session.cache.settle(self.committed)
        if self.features is not None:  # the features of committed positions, the last one's not yet computed
            self.features.truncate(len(self.committed) - 1)
        return emitted

    def record(self, size: int, num_accepted: int, spent: list[Proposal], verification: Verification,
               started: float, learn: bool, forwards: int = 1) -> None:
        """Count the round; teach the controller. A decoded run of `forwards` target positions teaches it as
        that many target-only rounds would, on average."""
        stats, sequences = self.stats, self.request.num_draft_sequences if size else 1
        draft_seconds = sum(p.compute_seconds for p in spent)
        stats.record_round(size, num_accepted, draft_seconds, verification.compute_seconds,
                           verification.wire_bytes + sum(p.wire_bytes for p in spent),
                           draft_forwards=sum(len(p.draft_tokens) // sequences for p in spent),
                           verify_forwards=forwards)
        stats.output_tokens = len(self.committed) - len(self.request.prompt_ids)
        if learn:  # a round the draft missed says nothing about the controller's choice
            forwards = max(1, forwards)
            self.controller.update(RoundStats(
                size, num_accepted, draft_seconds, verification.compute_seconds / forwards,
                (time.perf_counter() - started) / forwards, verification.batch_size,
                verification.batch_tokens // forwards))

    async def run(self) -> AsyncIterator[list[int]]:
        request, stats = self.request, self.stats
        started = time.perf_counter()
        ready: Window | None = None
        try:
            while not stats.finish_reason:
                if len(self.committed) - len(request.prompt_ids) >= request.max_new_tokens or \
                        len(self.committed) >= request.max_context:
                    stats.finish_reason = "length"
                    break
                emitted, ready = await self.round(ready)
                stats.seconds = time.perf_counter() - started
                yield emitted
        finally:
            stats.seconds = time.perf_counter() - started


def generate(request: GenerationRequest, proposer: Proposer, scorer: Scorer, rule: AcceptanceRule,
             controller: GammaController, stats: RequestStats,
             overlap_choice: OverlapChoice | None = None) -> AsyncIterator[list[int]]:
    """Yield the emitted tokens of each round until a stop token, max_new_tokens or the context end.

    Fills `stats` as it goes (finish_reason and seconds included). The caller ends the sessions.
    """
    return RoundLoop(request, proposer, scorer, rule, controller, stats, overlap_choice).run()


def run_position(verification: Verification, position: int) -> Verification:
    """One position of a decoded run as the verification of an empty window."""
    computed = verification.statistics
    if computed is not None:
        candidates = computed.candidates[position:position + 1] if computed.candidates.numel() else computed.candidates
        computed = WindowStatistics(computed.target_token_probs, candidates, computed.entropies, computed.divergences)
    return replace(verification, target_argmax=verification.target_argmax[position:position + 1], statistics=computed)


def accept(rule: AcceptanceRule, window: Window | None, verification: Verification,
           generator: torch.Generator) -> Acceptance:
    """Run the rule over one round's scores: M windows of draft tokens, flattened window by window."""
    proposal = window.proposal if window else None
    sequences = window.num_draft_sequences if window else 1  # M
    draft_tokens = torch.tensor(proposal.draft_tokens if proposal else [], dtype=torch.long)
    target_argmax = torch.tensor(verification.target_argmax, dtype=torch.long)
    if sequences > 1:
        draft_rows = proposal.draft_probs.dense() if proposal.draft_probs is not None else None
        return rule.accept(RoundScores(draft_tokens, target_argmax, draft_probs=draft_rows,
                                       target_probs=verification.target_probs, num_draft_sequences=sequences),
                           generator)
    computed, asked = verification.statistics, rule.statistics
    if computed is None:
        return rule.accept(RoundScores(draft_tokens, target_argmax), generator)
    draft_token_probs = torch.tensor(proposal.draft_token_probs if proposal else (), dtype=torch.float32)
    return rule.accept(RoundScores(
        draft_tokens, target_argmax, draft_token_probs=draft_token_probs if rule.needs_probs else None,
        target_token_probs=computed.target_token_probs, candidates=computed.candidates if asked.recover else None,
        entropies=computed.entropies if asked.entropy else None,
        divergences=computed.divergences if asked.divergence else None), generator)
