"""Drafting strategies around the round: serial, or drafting ahead during the verification.

Serial: the draft waits while the target verifies. Overlapped (the speculation cache): while the target
verifies window k, the draft drafts ahead for the likeliest outcomes of that verification, all in one call
of lanes over forks of the request's draft session (`speculation.py` plans them):
- every draft token accepted (PEARL's post-verify): the window drafted ahead continues from the window's
  last token. When it holds, round k emits the accepted window without a bonus token (the window drafted
  ahead starts at that position) and that window goes to verification at once;
- k tokens accepted, then the draft's r-th most likely other token at position k + 1 as the recovered token,
  for the likeliest (k, r) the fan-out allows.
A window is used only when its premise is exactly what the rule committed, and its tokens were sampled from
the draft given that premise, so every rule keeps its guarantees. Otherwise the round drafts afresh.

Knows the request's draft session, the committed tokens it is handed, a gamma for a length and the
request's statistics; not the round loop, the rule or the services.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from specdec.orchestrator.round.sessions import DRAFT_FAULTS, Adoption, DraftSession
from specdec.orchestrator.round.speculation import FanOut, OutcomeModel, OverlapChoice, Premise, plan
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules.base import Acceptance
from specdec.types import Lane, Proposal, Verification


@dataclass(frozen=True)
class Window:
    """Draft tokens proposed after the first `base` committed tokens: `num_draft_sequences` windows of equal length."""

    base: int
    proposal: Proposal
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
        """The draft's proposals made during this round's verification (its draft cost)."""


class Serial:
    async def verify(self, verifying: Awaitable[Verification], window: Window | None,
                    committed: list[int]) -> Verification:
        return await verifying

    def take(self, acceptance: Acceptance, size: int) -> Window | None:
        return None

    def spent(self) -> list[Proposal]:
        return []


class DraftAhead:
    """Overlapped drafting. `gamma_for(length)` is the gamma the round would draft after `length` tokens;
    `lanes`: the most rejection outcomes drafted ahead for a round (the fan-out's limit); `choice`: decides
    round by round whether drafting ahead pays (None: every round drafts ahead)."""

    def __init__(self, session: DraftSession, gamma_for: Callable[[int], int], stats: RequestStats, lanes: int,
                 choice: OverlapChoice | None = None):
        self.session, self.gamma_for, self.stats = session, gamma_for, stats
        self.outcomes = OutcomeModel()
        self.fan_out = FanOut(lanes)
        self.choice = choice
        self._drafted_seconds = 0.0  # the request's fresh draft call time when the last round was verified
        self._timing = (0.0, 0.0)  # the last verification's time and the wait for its lanes
        self._window_ahead = False  # the window being verified was drafted ahead
        self._base = 0  # committed tokens when the window being verified was drafted
        self._window: Window | None = None
        self._premises: list[Premise] = []
        self._ahead: asyncio.Future | None = None  # the lanes' call, settled
        self._spent: list[Proposal] = []
        # the window of a lane handed back, the lane, its premise's kept length and all the tokens drafted on it
        self._taken: tuple[Window, int, int, list[int]] | None = None

    async def verify(self, verifying: Awaitable[Verification], window: Window | None,
                    committed: list[int]) -> Verification:
        verify = asyncio.ensure_future(verifying)  # sent first: the verification is on the critical path
        sent = time.perf_counter()
        fresh = self.stats.draft_call_seconds - self._drafted_seconds  # this round's own draft call, if any
        self._drafted_seconds = self.stats.draft_call_seconds
        if fresh > 0 and self.choice:
            self.choice.record_fresh(fresh)
        self._base, self._window = len(committed), window
        self._ahead, ahead_done = self._start(window, committed), [0.0]
        if self._ahead is not None:
            self._ahead.add_done_callback(lambda _: ahead_done.__setitem__(0, time.perf_counter()))
        try:
            verification = await verify
        finally:
            verified = time.perf_counter()
            if not verify.done():
                verify.cancel()
            if self._ahead is not None:  # the draft session must settle before its next call
                await asyncio.wait([self._ahead])
            waited = time.perf_counter() - verified
            self.stats.wait_seconds += waited
        self._timing = (verified - sent, waited)
        if self._ahead is not None:
            self.fan_out.update(verified - sent, ahead_done[0] - sent)
            self._ahead = _succeeded(self._ahead)
        return verification

    def _start(self, window: Window | None, committed: list[int]) -> asyncio.Future | None:
        """Send the lanes' call: a lane for each planned premise, over the window's tokens in the session."""
        self._premises, taken, self._taken = [], self._taken, None
        self._window_ahead = bool(taken) and taken[0] is window
        if window is None or not window.proposal.draft_tokens or not self.session.available:
            return None
        if self.choice and not self.choice.next_round_ahead():  # drafting ahead measures slower, or a probe
            return None
        drafted = window.drafted(0)
        gamma = self.gamma_for(len(committed) + len(drafted))  # after the longest premise: all accepted
        # The session becomes the lane whose window is verified now (it holds that window's tokens, and a feature
        # head's own features for them); otherwise it is fed what it lacks.
        adopt = None
        if taken and taken[0] is window:  # the lane holds the premise (committed) and its tokens but the last
            _, lane, premise_len, lane_tokens = taken
            adopt = Adoption(lane, committed + lane_tokens[:-1], premise_len)
        if gamma <= 0 or (adopt is None and not self.session.can_sync(committed + drafted[:-1])):
            return None
        self._premises = plan(self.outcomes.premises(len(drafted), window.proposal.alternatives), self.fan_out.size)
        base = len(committed)
        lanes = [Lane(base + len(drafted) - 1, drafted[-1]) if premise.token is None
                 else Lane(base + premise.accepted, premise.token) for premise in self._premises]
        held = committed + drafted[: max(lane.keep_len for lane in lanes) - base]
        return asyncio.ensure_future(self.session.speculate(held, gamma, lanes, adopt))

    def take(self, acceptance: Acceptance, size: int) -> Window | None:
        ahead, window, stats = self._ahead, self._window, self.stats
        self._spent = [ahead.result()] if ahead else []
        if window is not None and size:
            rejected = acceptance.num_accepted < size
            self.outcomes.record(size, acceptance.num_accepted, acceptance.next_token,
                                 window.proposal.alternatives(acceptance.num_accepted) if rejected else ())
        emitted = acceptance.num_accepted + 1  # as the round emits it, unless a full-acceptance lane holds
        if ahead is None:
            if window is not None and size and self.choice:
                self.choice.record(False, self._timing[0], emitted, self._window_ahead)
            return None
        proposal = ahead.result()
        stats.num_lane_draft_tokens += sum(len(lane.draft_tokens) for lane, premise
                                           in zip(proposal.lanes, self._premises, strict=True)
                                           if premise.token is not None)
        hit = next((index for index, premise in enumerate(self._premises)
                    if premise.holds(acceptance.num_accepted, acceptance.next_token, size)), None)
        stats.record_outcome(acceptance.num_accepted, hit is not None)
        full_hit = hit is not None and self._premises[hit].token is None
        if self.choice:
            self.choice.record(True, self._timing[0], emitted - full_hit, self._window_ahead, self._timing[1],
                               hit=hit is not None, full_hit=full_hit)
        if hit is None:
            return None
        premise, lane = self._premises[hit], proposal.lanes[hit]
        stats.num_lane_hits += premise.token is not None
        premise_tokens = size if premise.token is None else premise.accepted + 1  # what the round emits
        drafted_ahead = Window(self._base + premise_tokens, lane)
        premise_len = self._base + (size - 1 if premise.token is None else premise.accepted)
        self._taken = (drafted_ahead, hit, premise_len, lane.draft_tokens)
        return drafted_ahead

    def spent(self) -> list[Proposal]:
        return self._spent


def _succeeded(ahead: asyncio.Future) -> asyncio.Future | None:
    """The lanes' call if it succeeded; one that met a draft fault is dropped (its session already trusts only
    what the call kept), any other failure fails the round."""
    error = ahead.exception()
    if error is None:
        return ahead
    if not isinstance(error, DRAFT_FAULTS):
        raise error
    return None
