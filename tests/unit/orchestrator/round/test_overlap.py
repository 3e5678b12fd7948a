"""Drafting strategies around a round, without the round loop: real draft sessions over an in-process proposer
whose draft tokens follow from the tokens it is fed, and verifications that are plain awaitables. Serial waits
and drafts nothing ahead; DraftAhead drafts the likely next windows while the verification runs and hands back
the one whose premise is the round's outcome."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from specdec.errors import ServiceDown, SessionLost
from specdec.orchestrator.round.overlap import DraftAhead, Serial, Window
from specdec.orchestrator.round.sessions import CallSettings, DraftSession
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules.base import Acceptance
from specdec.types import Lane, Proposal, ProposeCall, SamplingParams, Verification

COMMITTED = [1, 2, 3]
ALTERNATIVE = 50  # the proposer's other guess at each position: its draft token + ALTERNATIVE


class CountingProposer:
    """A draft service in-process: after a sequence ending in token t it drafts t + 1, t + 2, ... and, at each
    position, the alternative token + ALTERNATIVE. Holds each session's tokens as a draft does (the window's
    last token is not fed), checks keep_len against them, drafts a call's lanes after their premises on forks
    it keeps until the session's next call with lanes (which may adopt one), and can be slow or fail for
    chosen sessions."""

    def __init__(self, delay: float = 0.0) -> None:
        self.available = True
        self.delay = delay
        self.failures: dict[str, Exception] = {}  # session id -> raised at each of its calls
        self.calls: list[ProposeCall] = []
        self.finished: list[ProposeCall] = []
        self.caches: dict[str, list[int]] = {}
        self.lanes: dict[str, list[list[int]]] = {}  # session -> what each lane of its last lanes' call holds

    async def propose(self, call: ProposeCall) -> Proposal:
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if call.session_id in self.failures:
                raise self.failures[call.session_id]
            if call.adopt_lane:
                self.caches[call.session_id] = self.lanes.pop(call.session_id)[call.adopt_lane - 1]
            held = self.caches.setdefault(call.session_id, [])
            assert call.keep_len <= len(held), "keep_len past the cached tokens"
            held = held[:call.keep_len] + call.new_tokens
            if call.lanes:
                self.caches[call.session_id] = held
                assert all(lane.keep_len <= len(held) for lane in call.lanes), "a lane past the cached tokens"
                lanes = tuple(window(lane.token, call.gamma, 0) for lane in call.lanes)
                self.lanes[call.session_id] = [held[:lane.keep_len] + [lane.token] + drafted.draft_tokens[:-1]
                                               for lane, drafted in zip(call.lanes, lanes, strict=True)]
                return Proposal([], None, len(held), 0.001, lanes=lanes)
            proposal = window(call.new_tokens[-1], call.gamma, 0)
            self.caches[call.session_id] = held + proposal.draft_tokens[:-1]
            return replace(proposal, cache_len=len(self.caches[call.session_id]))
        finally:
            self.finished.append(call)

    async def end_session(self, session_id: str) -> None:
        self.caches.pop(session_id, None)


def window(last: int, gamma: int, cache_len: int) -> Proposal:
    drafted = [last + i + 1 for i in range(gamma)]
    return Proposal(draft_tokens=drafted, draft_probs=None, cache_len=cache_len, compute_seconds=0.001,
                    alternative_tokens=tuple(t + ALTERNATIVE for t in drafted))


def make_session(proposer: CountingProposer, lanes: int = 0) -> tuple[DraftSession, RequestStats]:
    """The request's draft session as the round loop makes it."""
    stats = RequestStats("r", "greedy", 3, len(COMMITTED), overlap=True, speculation_lanes=lanes)
    settings = CallSettings(SamplingParams(0.0), seed=7, want_probs=False, want_raw_probs=False,
                            num_alternatives=1 if lanes else 0)
    return DraftSession(proposer, "r", settings, itertools.count(), stats), stats


async def first_window(session: DraftSession, gamma: int = 3) -> Window:
    """The window under verification: drafted after COMMITTED ([4, 5, 6] for gamma 3)."""
    return Window(len(COMMITTED), await session.propose(COMMITTED, gamma))


def verification() -> Verification:
    return Verification(target_argmax=[0, 0, 0, 0], target_probs=None, cache_len=len(COMMITTED) + 3,
                        compute_seconds=0.002)


async def verifying(answer: Verification, delay: float = 0.01, seen: list[int] | None = None,
                    proposer: CountingProposer | None = None) -> Verification:
    """A verify call that takes `delay`; on answering, notes how many draft calls had been made by then."""
    await asyncio.sleep(delay)
    if seen is not None and proposer is not None:
        seen.append(len(proposer.calls))
    return answer


def constant(gamma: int) -> Callable[[int], int]:
    return lambda length: gamma


def test_serial_returns_the_verification_and_drafts_nothing_ahead() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, _ = make_session(proposer, lanes=2)
        window = await first_window(session)
        answer = verification()
        strategy = Serial()
        assert await strategy.verify(verifying(answer), window, COMMITTED) is answer
        assert len(proposer.calls) == 1  # only the window's own draft call
        assert strategy.take(Acceptance(3, 9), 3) is None
        assert strategy.spent() == []

    asyncio.run(body())


def test_draft_ahead_drafts_after_the_whole_window_while_the_verification_runs() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer)
        window = await first_window(session)
        strategy, answer, seen = DraftAhead(session, constant(2), stats, lanes=0), verification(), []
        assert await strategy.verify(verifying(answer, seen=seen, proposer=proposer), window, COMMITTED) is answer
        assert seen == [2]  # the lanes' call was made before the verification answered
        ahead_call = proposer.calls[1]
        assert (ahead_call.session_id, ahead_call.gamma) == ("r", 2)
        # the session holds COMMITTED + [4, 5] (the window's last token is not fed): one lane, after 6 there
        assert (ahead_call.keep_len, ahead_call.new_tokens, ahead_call.lanes) == (5, [], (Lane(5, 6),))

        ahead = strategy.take(Acceptance(num_accepted=3, next_token=9), 3)
        assert ahead is not None
        assert ahead.base == len(COMMITTED) + 3
        assert ahead.proposal.draft_tokens == [7, 8]
        assert [len(p.lanes) for p in strategy.spent()] == [1]  # the lanes' call is the round's draft cost
        assert stats.num_lane_hits == 0
        assert (stats.num_outcomes_per_accepted, stats.num_outcome_hits_per_accepted) == ([0, 0, 0, 1], [0, 0, 0, 1])

    asyncio.run(body())


@pytest.mark.parametrize("num_accepted, next_token", [(0, 9), (1, 5), (2, 56)],
                         ids=["first-rejected", "second-rejected", "third-rejected-recovering-an-alternative"])
def test_draft_ahead_without_lanes_has_no_window_after_a_rejection(num_accepted: int, next_token: int) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer)
        window = await first_window(session)
        strategy = DraftAhead(session, constant(2), stats, lanes=0)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert strategy.take(Acceptance(num_accepted, next_token), 3) is None
        # drafted all the same: it cost its forwards
        assert [[lane.draft_tokens for lane in p.lanes] for p in strategy.spent()] == [[[7, 8]]]
        assert stats.num_lane_hits == 0
        assert stats.num_outcomes_per_accepted[num_accepted] == 1
        assert sum(stats.num_outcome_hits_per_accepted) == 0

    asyncio.run(body())


# The window after COMMITTED is [4, 5, 6] with alternatives (54, 55, 56). With two lanes (the fan-out's start)
# the likeliest premises under the prior are: all accepted (after 6), the first token rejected and 54
# recovered, the second rejected and 55 recovered.
@pytest.mark.parametrize(
    "acceptance, base, drafted, lane_hit",
    [
        pytest.param(Acceptance(3, 99), 6, [7, 8], False, id="all-accepted"),
        pytest.param(Acceptance(0, 54), 4, [55, 56], True, id="first-rejected-alternative-recovered"),
        pytest.param(Acceptance(1, 55), 5, [56, 57], True, id="second-rejected-alternative-recovered"),
        pytest.param(Acceptance(0, 9), 0, [], False, id="other-token-recovered"),
        pytest.param(Acceptance(1, 54), 0, [], False, id="an-alternative-at-the-wrong-position"),
        pytest.param(Acceptance(2, 56), 0, [], False, id="a-position-without-a-lane"),
    ],
)
def test_draft_ahead_hands_back_the_window_whose_premise_the_round_committed(
        acceptance: Acceptance, base: int, drafted: list[int], lane_hit: bool) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=2)
        window = await first_window(session)
        strategy = DraftAhead(session, constant(2), stats, lanes=2)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert proposer.calls[1].lanes == (Lane(5, 6), Lane(3, 54), Lane(4, 55))

        ahead = strategy.take(acceptance, 3)
        if not drafted:
            assert ahead is None
        else:
            assert ahead is not None
            assert (ahead.base, ahead.proposal.draft_tokens) == (base, drafted)
        assert stats.num_lane_hits == lane_hit
        assert stats.num_lane_draft_tokens == 4  # both rejection lanes' windows, used or not
        assert sum(stats.num_outcome_hits_per_accepted) == bool(drafted)

    asyncio.run(body())


def test_draft_ahead_plans_only_as_many_lanes_as_there_are_alternatives() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=3)
        window = await first_window(session, gamma=1)  # [4], one alternative (54)
        strategy = DraftAhead(session, constant(2), stats, lanes=3)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert proposer.calls[1].lanes == (Lane(3, 4), Lane(3, 54))
        assert strategy.take(Acceptance(0, 54), 1) is not None

    asyncio.run(body())


def test_draft_ahead_learns_the_likely_outcomes_of_the_request() -> None:
    """After rounds that all rejected the third token and recovered its alternative, that premise ranks first
    among the rejections and gets the fan-out's one lane."""
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=1)
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        committed = list(COMMITTED)
        for _ in range(6):
            window = Window(len(committed), await session.propose(committed, 3))
            await strategy.verify(verifying(verification(), delay=0.02), window, committed)  # the draft has time
            drafted = window.drafted(0)
            strategy.take(Acceptance(2, drafted[2] + ALTERNATIVE), 3)
            committed = committed + drafted[:2] + [drafted[2] + ALTERNATIVE]
            session.cache.settle(committed)
        base = len(committed) - 3
        assert proposer.calls[-1].lanes[1] == Lane(base + 2, committed[-1])
        assert stats.num_outcome_hits_per_accepted[2] >= 3

    asyncio.run(body())


@pytest.mark.parametrize(
    "fault, faults",
    [
        pytest.param(ServiceDown("draft down"), 1, id="draft-down"),
        pytest.param(SessionLost("draft restarted"), 2, id="session-lost-twice"),
    ],
)
def test_a_draft_fault_during_the_verification_drops_the_windows_ahead(fault: Exception, faults: int) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=1)
        window = await first_window(session)
        proposer.failures["r"] = fault
        answer = verification()
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        assert await strategy.verify(verifying(answer), window, COMMITTED) is answer
        assert stats.num_draft_faults == faults
        assert strategy.take(Acceptance(3, 9), 3) is None
        assert strategy.spent() == []

    asyncio.run(body())


def test_a_lost_session_is_given_the_premises_again_from_the_start() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=1)
        window = await first_window(session)
        proposer.caches.pop("r")  # the draft restarted: its next call is refused, the retry starts over
        original = proposer.propose

        async def lose_once(call: ProposeCall) -> Proposal:
            if call.keep_len and "r" not in proposer.caches:
                proposer.calls.append(call)
                raise SessionLost("draft restarted")
            return await original(call)

        proposer.propose = lose_once
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        retry = proposer.calls[-1]
        assert (retry.keep_len, retry.new_tokens) == (0, COMMITTED + [4, 5])
        assert strategy.take(Acceptance(3, 9), 3).proposal.draft_tokens == [7, 8]

    asyncio.run(body())


def test_any_other_draft_failure_fails_the_round() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=1)
        window = await first_window(session)
        proposer.failures["r"] = RuntimeError("a bug in the draft adapter")
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        with pytest.raises(RuntimeError, match="a bug in the draft adapter"):
            await strategy.verify(verifying(verification()), window, COMMITTED)
        assert stats.num_draft_faults == 0

    asyncio.run(body())


def test_a_failed_verification_fails_the_round_once_the_draft_has_settled() -> None:
    async def failing() -> Verification:
        await asyncio.sleep(0)
        raise ServiceDown("target down")

    async def body() -> None:
        proposer = CountingProposer(delay=0.02)
        session, stats = make_session(proposer, lanes=1)
        window = await first_window(session)
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        with pytest.raises(ServiceDown, match="target down"):
            await strategy.verify(failing(), window, COMMITTED)
        assert len(proposer.finished) == len(proposer.calls) == 2  # no draft call is left running

    asyncio.run(body())


@pytest.mark.parametrize("gamma", [0, 1, 3])
def test_draft_ahead_asks_gamma_after_the_whole_window_and_skips_a_zero(gamma: int) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=2)
        window = await first_window(session)
        asked: list[int] = []

        def gamma_for(length: int) -> int:
            asked.append(length)
            return gamma

        strategy = DraftAhead(session, gamma_for, stats, lanes=2)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert asked == [6]  # the length after the whole window, the longest premise
        assert [call.gamma for call in proposer.calls[1:]] == ([gamma] if gamma else [])
        ahead = strategy.take(Acceptance(3, 9), 3)
        assert (len(ahead.proposal.draft_tokens) if ahead else 0) == gamma

    asyncio.run(body())


def empty_window() -> Window:
    return Window(len(COMMITTED), Proposal(draft_tokens=[], draft_probs=None, cache_len=3, compute_seconds=0.0))


@pytest.mark.parametrize(
    "make_window, available",
    [
        pytest.param(lambda window: None, True, id="target-only-round"),
        pytest.param(lambda window: empty_window(), True, id="empty-window"),
        pytest.param(lambda window: window, False, id="draft-unavailable"),
    ],
)
def test_draft_ahead_starts_nothing_without_a_window_or_a_draft(
        make_window: Callable[[Window], Window | None], available: bool) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer, lanes=1)
        window = await first_window(session)
        proposer.available = available
        answer = verification()
        strategy = DraftAhead(session, constant(2), stats, lanes=1)
        assert await strategy.verify(verifying(answer), make_window(window), COMMITTED) is answer
        assert len(proposer.calls) == 1
        assert strategy.take(Acceptance(3, 9), 3) is None
        assert strategy.spent() == []

    asyncio.run(body())


@pytest.mark.parametrize(
    "draft_delay, verify_delay, at_least, below",
    [
        pytest.param(0.15, 0.0, 0.12, 10.0, id="draft-slower-than-the-verify-is-waited-for"),
        # below the verify's 0.15 s: a wait that counted the verify would reach it; a loaded machine has room
        pytest.param(0.0, 0.15, 0.0, 0.15, id="draft-faster-than-the-verify-costs-no-wait"),
    ],
)
def test_wait_seconds_counts_the_wait_for_the_draft_after_the_verify(draft_delay: float, verify_delay: float,
                                                                     at_least: float, below: float) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer)
        window = await first_window(session)
        proposer.delay = draft_delay
        strategy = DraftAhead(session, constant(2), stats, lanes=0)
        verifying_call: Awaitable[Verification] = verifying(verification(), delay=verify_delay)
        await strategy.verify(verifying_call, window, COMMITTED)
        assert at_least <= stats.wait_seconds < below

    asyncio.run(body())


def test_the_session_becomes_the_lane_whose_window_is_verified_next() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        session, stats = make_session(proposer)
        window: Window | None = await first_window(session)
        proposer.delay = 0.05
        strategy = DraftAhead(session, constant(2), stats, lanes=0)
        await strategy.verify(verifying(verification(), delay=0.0), window, COMMITTED)
        first = stats.wait_seconds
        window = strategy.take(Acceptance(3, 9), 3)
        assert window is not None
        committed = COMMITTED + [4, 5, 6]
        session.cache.settle(committed)
        await strategy.verify(verifying(verification(), delay=0.0), window, committed)
        assert first >= 0.04 and stats.wait_seconds >= first + 0.04
        # the lane held [1..6, 7] after drafting [7, 8]: the session adopts it and needs nothing fed
        adopting = proposer.calls[-1]
        assert (adopting.adopt_lane, adopting.keep_len, adopting.new_tokens) == (1, 7, [])
        assert adopting.lanes[0] == Lane(7, 8) and proposer.caches["r"] == [1, 2, 3, 4, 5, 6, 7]
        assert strategy.take(Acceptance(1, 9), 2) is None

    asyncio.run(body())


@pytest.mark.parametrize(
    "tokens, num_draft_sequences, expected",
    [
        pytest.param([4, 5, 6], 1, [[4, 5, 6]], id="one-window"),
        pytest.param([4, 5, 6, 7, 8, 9], 2, [[4, 5, 6], [7, 8, 9]], id="two-windows-sequence-major"),
        pytest.param([4, 5, 6, 7, 8, 9], 3, [[4, 5], [6, 7], [8, 9]], id="three-windows"),
    ],
)
def test_window_drafted_splits_the_sequences(tokens: list[int], num_draft_sequences: int,
                                             expected: list[list[int]]) -> None:
    window = Window(3, Proposal(tokens, None, 0, 0.0), num_draft_sequences)
    assert [window.drafted(index) for index in range(num_draft_sequences)] == expected
