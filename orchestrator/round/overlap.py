"""Drafting strategies around the round: serial, or drafting ahead during the verification.

Serial: the draft waits while the target verifies. Overlapped (post-verify, PEARL): while the target
verifies window k, the main draft session drafts window k+1 as if all of window k were accepted. If it
was, round k emits the accepted window without a bonus token (the pre-drafted window's first token
stands at that position and is verified next) and window k+1 goes to verification at once; otherwise
the pre-drafted window is dropped and the draft's cache rolls back at its next call.

Speculation lanes (the speculation cache) extend this to rejections: lane j, a draft session of its own,
pre-drafts the window that follows "the first j-1 draft tokens accepted, then the draft's most likely
other token at position j-1 as the recovered token". When the round ends exactly so, that window is
verified next without waiting for the draft, and the lane becomes the request's main draft session. A
window is used only when its premise is what the rule committed, and its tokens were sampled from the
draft given that premise, so every rule keeps its guarantees.

Knows the request's draft sessions (`DraftLanes`), the committed tokens it is handed, a gamma for a
length and the request's statistics; not the round loop, the rule or the services.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from specdec.orchestrator.round.sessions import DRAFT_FAULTS, DraftLanes, DraftSession
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules.base import Acceptance
from specdec.types import Proposal, Verification


@dataclass(frozen=True)
class Window:
    """Draft tokens proposed after the first `base` committed tokens: `num_draft_sequences` windows of equal length."""

    base: int
    proposal: Proposal
    session: DraftSession
    num_draft_sequences: int = 1

    def drafted(self, index: int) -> list[int]:
        size = len(self.proposal.draft_tokens) // self.num_draft_sequences
        return self.proposal.draft_tokens[index * size:(index + 1) * size]


class Strategy(Protocol):
    async def verify(self, verifying: Awaitable[Verification], window: Window | None,
                    committed: list[int]) -> Verification:
        """Await the verification of `window` after `committed`; what else runs meanwhile is the strategy's
        choice."""

    def take(self, acceptance: Acceptance, size: int) -> Window | None:
        """The window drafted during the verification for exactly this outcome, if any."""

    def spent(self) -> list[Proposal]:
        """The main draft session's proposals made during this round's verification (its draft cost)."""


class Serial:
    async def verify(self, verifying: Awaitable[Verification], window: Window | None,
                    committed: list[int]) -> Verification:
        return await verifying

    def take(self, acceptance: Acceptance, size: int) -> Window | None:
        return None

    def spent(self) -> list[Proposal]:
        return []


@dataclass
class _Speculation:
    """A window being drafted for the outcome `accepted` draft tokens then `token` (None: the whole window
    accepted and no bonus token; the pre-drafted window's first token takes that position)."""

    session: DraftSession
    accepted: int
    token: int | None
    future: asyncio.Future

    def premise_holds(self, acceptance: Acceptance, size: int) -> bool:
        if self.token is None:
            return acceptance.num_accepted == size
        return acceptance.num_accepted == self.accepted and acceptance.next_token == self.token


class DraftAhead:
    """Overlapped drafting. `gamma_for(length)` is the gamma the round would draft after `length` tokens."""

    def __init__(self, drafts: DraftLanes, gamma_for: Callable[[int], int], stats: RequestStats):
        self.drafts, self.gamma_for, self.stats = drafts, gamma_for, stats
        self._base = 0  # committed tokens when the window being verified was drafted
        self._speculations: list[_Speculation] = []
        self._spent: list[Proposal] = []

    async def verify(self, verifying: Awaitable[Verification], window: Window | None,
                    committed: list[int]) -> Verification:
        verify = asyncio.ensure_future(verifying)  # sent first: the verification is on the critical path
        self._base = len(committed)
        self._speculations = self._start(window, committed)
        try:
            return await verify
        finally:
            verified = time.perf_counter()
            if not verify.done():
                verify.cancel()
            if self._speculations:  # every draft session must settle before the next call on it
                await asyncio.wait([s.future for s in self._speculations])
            self.stats.wait_seconds += time.perf_counter() - verified
            self._speculations = _succeeded(self._speculations)

    def _start(self, window: Window | None, committed: list[int]) -> list[_Speculation]:
        """Start drafting after the likely outcomes of this round: the whole window accepted (on the main
        session), and for lane j, j-1 tokens accepted then the draft's most likely other token at j-1."""
        if window is None or not window.proposal.draft_tokens or not self.drafts.main.available:
            return []
        drafted = window.proposal.draft_tokens
        premises: list[tuple[int, int | None, list[int]]] = [(len(drafted), None, drafted)]
        for position, token in enumerate(window.proposal.alternative_tokens[: len(self.drafts) - 1]):
            premises.append((position, token, drafted[:position] + [token]))
        speculations = []
        for session, (accepted, token, premise) in zip(self.drafts, premises, strict=False):  # spare lanes idle
            sequence = committed + premise
            gamma = self.gamma_for(len(sequence))
            if gamma > 0:
                future = asyncio.ensure_future(session.propose(sequence, gamma))
                speculations.append(_Speculation(session, accepted, token, future))
        return speculations

    def take(self, acceptance: Acceptance, size: int) -> Window | None:
        stats = self.stats
        main = next((s for s in self._speculations if s.token is None), None)
        self._spent = [main.future.result()] if main else []
        stats.num_lane_draft_tokens += sum(len(s.future.result().draft_tokens) for s in self._speculations
                                           if s.token is not None)
        hit = next((s for s in self._speculations if s.premise_holds(acceptance, size)), None)
        if hit is None:
            return None
        self.drafts.promote(hit.session)
        stats.num_lane_hits += hit.token is not None
        emitted = size if hit.token is None else hit.accepted + 1
        return Window(self._base + emitted, hit.future.result(), hit.session)

    def spent(self) -> list[Proposal]:
        return self._spent


def _succeeded(speculations: list[_Speculation]) -> list[_Speculation]:
    """The speculations whose draft call succeeded; one that met a draft fault is dropped (its session
    already trusts only what the call kept), any other failure fails the round."""
    kept = []
    for speculation in speculations:
        error = speculation.future.exception()
        if error is None:
            kept.append(speculation)
        elif not isinstance(error, DRAFT_FAULTS):
            raise error
    return kept
