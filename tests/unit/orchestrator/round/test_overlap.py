"""Drafting strategies around a round, without the round loop: real draft sessions over an in-process proposer
whose draft tokens follow from the tokens it is fed, and verifications that are plain awaitables. Serial waits
and drafts nothing ahead; DraftAhead drafts the likely next windows while the verification runs and hands back
the one whose premise is the round's outcome."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from specdec.errors import ServiceDown, SessionLost
from specdec.orchestrator.round.overlap import DraftAhead, Serial, Window
from specdec.orchestrator.round.sessions import CallSettings, DraftLanes, DraftSession
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules.base import Acceptance
from specdec.types import Proposal, ProposeCall, SamplingParams, Verification

COMMITTED = [1, 2, 3]
ALTERNATIVE = 50  # the proposer's other guess at each position: its draft token + ALTERNATIVE


class CountingProposer:
    """A draft service in-process: after a sequence ending in token t it drafts t + 1, t + 2, ... and, at each
    position, the alternative token + ALTERNATIVE. Holds each session's tokens as a draft does (the window's
    last token is not fed), checks keep_len against them, and can be slow or fail for chosen sessions."""

    def __init__(self, delay: float = 0.0) -> None:
        self.available = True
        self.delay = delay
        self.failures: dict[str, Exception] = {}  # session id -> raised at each of its calls
        self.calls: list[ProposeCall] = []
        self.finished: list[ProposeCall] = []
        self.caches: dict[str, list[int]] = {}

    async def propose(self, call: ProposeCall) -> Proposal:
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if call.session_id in self.failures:
                raise self.failures[call.session_id]
            held = self.caches.setdefault(call.session_id, [])
            assert call.keep_len <= len(held), "keep_len past the cached tokens"
            last = call.new_tokens[-1]
            drafted = [last + i + 1 for i in range(call.gamma)]
            self.caches[call.session_id] = held[:call.keep_len] + call.new_tokens + drafted[:-1]
            return Proposal(draft_tokens=drafted, draft_probs=None, cache_len=len(self.caches[call.session_id]),
                            compute_seconds=0.001, alternative_tokens=tuple(t + ALTERNATIVE for t in drafted))
        finally:
            self.finished.append(call)

    async def end_session(self, session_id: str) -> None:
        self.caches.pop(session_id, None)


def make_drafts(proposer: CountingProposer, lanes: int = 0) -> tuple[DraftLanes, RequestStats]:
    """A request's draft sessions as the round loop makes them: its own ("r"), then one per lane."""
    stats = RequestStats("r", "greedy", 3, len(COMMITTED), overlap=True, speculation_lanes=lanes)
    settings = CallSettings(SamplingParams(0.0), seed=7, want_probs=False, want_raw_probs=False,
                            want_alternatives=lanes > 0)
    rounds = itertools.count()
    ids = ["r"] + [f"r/lane{j}" for j in range(1, lanes + 1)]
    return DraftLanes([DraftSession(proposer, session_id, settings, rounds, stats) for session_id in ids]), stats


async def first_window(drafts: DraftLanes, gamma: int = 3) -> Window:
    """The window under verification: drafted on the main session after COMMITTED ([4, 5, 6] for gamma 3)."""
    proposal = await drafts.main.propose(COMMITTED, gamma)
    return Window(len(COMMITTED), proposal, drafts.main)


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
        drafts, _ = make_drafts(proposer, lanes=2)
        window = await first_window(drafts)
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
        drafts, stats = make_drafts(proposer)
        window = await first_window(drafts)
        strategy, answer, seen = DraftAhead(drafts, constant(2), stats), verification(), []
        assert await strategy.verify(verifying(answer, seen=seen, proposer=proposer), window, COMMITTED) is answer
        assert seen == [2]  # the draft call was made before the verification answered
        ahead_call = proposer.calls[1]
        assert (ahead_call.session_id, ahead_call.gamma) == ("r", 2)
        # the main session's cache holds COMMITTED + [4, 5]: only the window's last token is fed
        assert (ahead_call.keep_len, ahead_call.new_tokens) == (5, [6])

        ahead = strategy.take(Acceptance(num_accepted=3, next_token=9), 3)
        assert ahead is not None
        assert ahead.base == len(COMMITTED) + 3
        assert ahead.proposal.draft_tokens == [7, 8]
        assert ahead.session is drafts.main and drafts.main.session_id == "r"
        assert strategy.spent() == [ahead.proposal]  # the pre-drafted window is the round's draft cost
        assert stats.num_lane_hits == 0

    asyncio.run(body())


@pytest.mark.parametrize("num_accepted, next_token", [(0, 9), (1, 5), (2, 56)],
                         ids=["first-rejected", "second-rejected", "third-rejected-recovering-an-alternative"])
def test_draft_ahead_without_lanes_has_no_window_after_a_rejection(num_accepted: int, next_token: int) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer)
        window = await first_window(drafts)
        strategy = DraftAhead(drafts, constant(2), stats)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert strategy.take(Acceptance(num_accepted, next_token), 3) is None
        assert [p.draft_tokens for p in strategy.spent()] == [[7, 8]]  # drafted all the same: it cost its forwards
        assert stats.num_lane_hits == 0

    asyncio.run(body())


# The window after COMMITTED is [4, 5, 6] with alternatives (54, 55, 56). With two lanes the main session drafts
# after [4, 5, 6], lane 1 after [54] (the first token rejected, 54 recovered) and lane 2 after [4, 55].
@pytest.mark.parametrize(
    "acceptance, session_id, base, drafted, order",
    [
        pytest.param(Acceptance(3, 99), "r", 6, [7, 8], ["r", "r/lane1", "r/lane2"], id="all-accepted-main"),
        pytest.param(Acceptance(0, 54), "r/lane1", 4, [55, 56], ["r/lane1", "r", "r/lane2"],
                     id="first-rejected-alternative-recovered-lane1"),
        pytest.param(Acceptance(1, 55), "r/lane2", 5, [56, 57], ["r/lane2", "r", "r/lane1"],
                     id="second-rejected-alternative-recovered-lane2"),
        pytest.param(Acceptance(0, 9), None, 0, [], ["r", "r/lane1", "r/lane2"], id="other-token-recovered"),
        pytest.param(Acceptance(1, 54), None, 0, [], ["r", "r/lane1", "r/lane2"],
                     id="an-alternative-at-the-wrong-position"),
        pytest.param(Acceptance(2, 56), None, 0, [], ["r", "r/lane1", "r/lane2"], id="a-position-without-a-lane"),
    ],
)
def test_draft_ahead_hands_back_the_window_whose_premise_the_round_committed(
        acceptance: Acceptance, session_id: str | None, base: int, drafted: list[int], order: list[str]) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=2)
        window = await first_window(drafts)
        strategy = DraftAhead(drafts, constant(2), stats)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        premises = {call.session_id: call.new_tokens for call in proposer.calls[1:]}
        assert premises == {"r": [6], "r/lane1": [1, 2, 3, 54], "r/lane2": [1, 2, 3, 4, 55]}

        ahead = strategy.take(acceptance, 3)
        if session_id is None:
            assert ahead is None
        else:
            assert ahead is not None
            assert (ahead.session.session_id, ahead.base, ahead.proposal.draft_tokens) == (session_id, base, drafted)
            assert ahead.session is drafts.main  # the session whose window is used becomes the main one
        assert [session.session_id for session in drafts] == order
        assert stats.num_lane_hits == (session_id is not None and session_id != "r")
        assert stats.num_lane_draft_tokens == 4  # both lanes' windows, used or not
        assert [p.draft_tokens for p in strategy.spent()] == [[7, 8]]  # the main session's window only

    asyncio.run(body())


def test_a_lane_proposes_only_as_many_premises_as_there_are_alternatives() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=3)
        window = await first_window(drafts, gamma=1)  # [4], one alternative (54): one lane has a premise
        strategy = DraftAhead(drafts, constant(2), stats)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert sorted(call.session_id for call in proposer.calls[1:]) == ["r", "r/lane1"]  # spare lanes idle
        assert strategy.take(Acceptance(0, 54), 1) is not None

    asyncio.run(body())


@pytest.mark.parametrize(
    "failing, fault, acceptance, taken, faults",
    [
        pytest.param("r", ServiceDown("draft down"), Acceptance(3, 9), None, 1, id="main-down"),
        pytest.param("r", SessionLost("draft restarted"), Acceptance(3, 9), None, 2,
                     id="main-session-lost-twice"),
        pytest.param("r/lane1", ServiceDown("draft down"), Acceptance(0, 54), None, 1, id="lane-down"),
        pytest.param("r/lane1", ServiceDown("draft down"), Acceptance(3, 9), "r", 1,
                     id="lane-down-main-still-taken"),
        pytest.param("r", ServiceDown("draft down"), Acceptance(0, 54), "r/lane1", 1,
                     id="main-down-lane-still-taken"),
    ],
)
def test_a_draft_fault_during_the_verification_drops_that_window(
        failing: str, fault: Exception, acceptance: Acceptance, taken: str | None, faults: int) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=1)
        window = await first_window(drafts)
        proposer.failures[failing] = fault
        answer = verification()
        strategy = DraftAhead(drafts, constant(2), stats)
        assert await strategy.verify(verifying(answer), window, COMMITTED) is answer
        assert stats.num_draft_faults == faults
        ahead = strategy.take(acceptance, 3)
        assert (ahead.session.session_id if ahead else None) == taken
        assert [p.draft_tokens for p in strategy.spent()] == ([] if failing == "r" else [[7, 8]])

    asyncio.run(body())


@pytest.mark.parametrize("failing", ["r", "r/lane1"])
def test_any_other_draft_failure_fails_the_score(failing: str) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=1)
        window = await first_window(drafts)
        proposer.failures[failing] = RuntimeError("a bug in the draft adapter")
        strategy = DraftAhead(drafts, constant(2), stats)
        with pytest.raises(RuntimeError, match="a bug in the draft adapter"):
            await strategy.verify(verifying(verification()), window, COMMITTED)
        assert stats.num_draft_faults == 0

    asyncio.run(body())


def test_a_failed_verification_fails_the_score_once_the_drafts_have_settled() -> None:
    async def failing() -> Verification:
        await asyncio.sleep(0)
        raise ServiceDown("target down")

    async def body() -> None:
        proposer = CountingProposer(delay=0.02)
        drafts, stats = make_drafts(proposer, lanes=1)
        window = await first_window(drafts)
        strategy = DraftAhead(drafts, constant(2), stats)
        with pytest.raises(ServiceDown, match="target down"):
            await strategy.verify(failing(), window, COMMITTED)
        assert len(proposer.finished) == len(proposer.calls) == 3  # no draft call is left running

    asyncio.run(body())


@pytest.mark.parametrize(
    "gammas, acceptance, calls, taken",
    [
        pytest.param({6: 0, 4: 0, 5: 0}, Acceptance(3, 9), [], None, id="zero-everywhere-starts-nothing"),
        pytest.param({6: 0, 4: 2, 5: 2}, Acceptance(3, 9), ["r/lane1", "r/lane2"], None,
                     id="zero-after-the-whole-window-leaves-the-lanes"),
        pytest.param({6: 0, 4: 2, 5: 0}, Acceptance(0, 54), ["r/lane1"], "r/lane1",
                     id="zero-for-one-lane-leaves-the-other"),
        pytest.param({6: 1, 4: 3, 5: 2}, Acceptance(3, 9), ["r", "r/lane1", "r/lane2"], "r",
                     id="each-premise-gets-its-own-gamma"),
    ],
)
def test_draft_ahead_asks_gamma_for_each_premise_and_skips_a_zero(
        gammas: dict[int, int], acceptance: Acceptance, calls: list[str], taken: str | None) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=2)
        window = await first_window(drafts)
        asked: list[int] = []

        def gamma_for(length: int) -> int:
            asked.append(length)
            return gammas[length]

        strategy = DraftAhead(drafts, gamma_for, stats)
        await strategy.verify(verifying(verification()), window, COMMITTED)
        assert asked == [6, 4, 5]  # the lengths after the whole window, after [54] and after [4, 55]
        assert sorted(call.session_id for call in proposer.calls[1:]) == calls
        assert all(call.gamma == gammas[call.keep_len + len(call.new_tokens)] for call in proposer.calls[1:])
        ahead = strategy.take(acceptance, 3)
        assert (ahead.session.session_id if ahead else None) == taken
        assert len(strategy.spent()) == ("r" in calls)  # the main session's window, when it drafted one

    asyncio.run(body())


def empty_window(drafts: DraftLanes) -> Window:
    return Window(len(COMMITTED), Proposal(draft_tokens=[], draft_probs=None, cache_len=3, compute_seconds=0.0),
                  drafts.main)


@pytest.mark.parametrize(
    "make_window, available",
    [
        pytest.param(lambda drafts, window: None, True, id="target-only-round"),
        pytest.param(lambda drafts, window: empty_window(drafts), True, id="empty-window"),
        pytest.param(lambda drafts, window: window, False, id="draft-unavailable"),
    ],
)
def test_draft_ahead_starts_nothing_without_a_window_or_a_draft(
        make_window: Callable[[DraftLanes, Window], Window | None], available: bool) -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer, lanes=1)
        window = await first_window(drafts)
        proposer.available = available
        answer = verification()
        strategy = DraftAhead(drafts, constant(2), stats)
        assert await strategy.verify(verifying(answer), make_window(drafts, window), COMMITTED) is answer
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
        drafts, stats = make_drafts(proposer)
        window = await first_window(drafts)
        proposer.delay = draft_delay
        strategy = DraftAhead(drafts, constant(2), stats)
        verifying_call: Awaitable[Verification] = verifying(verification(), delay=verify_delay)
        await strategy.verify(verifying_call, window, COMMITTED)
        assert at_least <= stats.wait_seconds < below

    asyncio.run(body())


def test_wait_seconds_add_up_over_rounds() -> None:
    async def body() -> None:
        proposer = CountingProposer()
        drafts, stats = make_drafts(proposer)
        window: Window | None = await first_window(drafts)
        proposer.delay = 0.05
        strategy = DraftAhead(drafts, constant(2), stats)
        await strategy.verify(verifying(verification(), delay=0.0), window, COMMITTED)
        first = stats.wait_seconds
        window = strategy.take(Acceptance(3, 9), 3)
        assert window is not None
        committed = COMMITTED + [4, 5, 6]
        await strategy.verify(verifying(verification(), delay=0.0), window, committed)
        assert first >= 0.04 and stats.wait_seconds >= first + 0.04
        ahead = strategy.take(Acceptance(1, 9), 2)
        assert ahead is None
        assert proposer.calls[-1].new_tokens == [8]  # drafted after 7, 8 on the main session's own window

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
    drafts, _ = make_drafts(CountingProposer())
    window = Window(3, Proposal(tokens, None, 0, 0.0), drafts.main, num_draft_sequences)
    assert [window.drafted(index) for index in range(num_draft_sequences)] == expected
