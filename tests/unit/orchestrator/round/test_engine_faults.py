"""The round loop through service faults, over Markov-chain models (no RPC, no Ray): a draft that goes
down, a target that goes down, services that restart and lose their sessions, calls that ran but whose
answer was lost. Greedy output must equal the target's own greedy output whatever fails."""

from __future__ import annotations

import asyncio

import pytest

from specdec.errors import ServiceDown, SessionLost
from specdec.orchestrator.adapters.local import LocalProposer, LocalScorer
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.round.engine import GenerationRequest, generate
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import make_rule
from specdec.services.draft.runner import DraftRunner
from specdec.services.target.runner import TargetRunner
from specdec.types import SamplingParams
from tests.fakes import MarkovLM, random_table

VOCAB = 6


class Faults:
    """Which calls fail: call numbers (counted from 0) that find the service down before running, that run
    but lose their answer, and before which the service restarts (losing every session)."""

    def __init__(self, down=(), lost_answer=(), restart=()):
        self.down, self.lost_answer, self.restart = set(down), set(lost_answer), set(restart)
        self.calls = 0

    def before(self, lm: MarkovLM, keep_len: int) -> int:
        number, self.calls = self.calls, self.calls + 1
        if number in self.restart:
            lm.sessions.clear()
        if number in self.down:
            raise ServiceDown(f"call {number}: down")
        return number

    def check_session(self, lm: MarkovLM, session_id: str, keep_len: int) -> None:
        if keep_len > 0 and session_id not in lm.sessions:
            raise SessionLost(f"{session_id}: unknown")


class FaultyProposer(LocalProposer):
    def __init__(self, runner: DraftRunner, faults: Faults):
        super().__init__(runner)
        self.faults = faults
        self.down_for = 0  # the next this many looks at `available` say no: a recovery under way

    @property
    def available(self) -> bool:
        self.down_for = max(0, self.down_for - 1)
        return self.down_for == 0

    async def propose(self, call):
        lm = self.runner.lm
        try:
            number = self.faults.before(lm, call.keep_len)
        except ServiceDown:
            self.down_for = 4
            raise
        self.faults.check_session(lm, call.session_id, call.keep_len)
        proposal = await super().propose(call)
        if number in self.faults.lost_answer:
            raise ServiceDown(f"call {number}: answer lost")
        return proposal


class FaultyScorer(LocalScorer):
    def __init__(self, runner: TargetRunner, faults: Faults):
        super().__init__(runner)
        self.faults = faults
        self.waited = 0

    async def verify(self, call):
        lm = self.runner.lm
        number = self.faults.before(lm, call.keep_len)
        self.faults.check_session(lm, call.session_id, call.keep_len)
        verification = await super().verify(call)
        if number in self.faults.lost_answer:
            raise ServiceDown(f"call {number}: answer lost")
        return verification

    async def recovered(self) -> None:
        self.waited += 1


def greedy_reference(table, length: int) -> list[int]:
    out, last = [], 0
    for _ in range(length):
        last = int(table[last].argmax())
        out.append(last)
    return out


def run(proposer, scorer, overlap: bool = False, lanes: int = 0, max_new_tokens: int = 40):
    request = GenerationRequest(request_id="r", prompt_ids=[0], max_new_tokens=max_new_tokens,
                                sampling=SamplingParams(0.0), seed=1, max_context=256, overlap=overlap,
                                speculation_lanes=lanes)
    stats = RequestStats("r", "greedy", 3, 1)

    async def collect():
        out = []
        async for emitted in generate(request, proposer, scorer, make_rule("greedy"), FixedGamma(3), stats):
            out += emitted
        return out

    return asyncio.run(collect()), stats


def pair(draft_faults: Faults, target_faults: Faults):
    target = MarkovLM(random_table(VOCAB, 5))
    draft = MarkovLM(random_table(VOCAB, 5) + random_table(VOCAB, 105, scale=1.0))
    return FaultyProposer(DraftRunner(draft), draft_faults), FaultyScorer(TargetRunner(target), target_faults), target


@pytest.mark.parametrize("overlap,lanes", [(False, 0), (True, 0), (True, 2)])
def test_draft_down_goes_target_only_then_rejoins(overlap, lanes):
    proposer, scorer, target = pair(Faults(down={2, 3}, lost_answer={6}, restart={9}), Faults())
    out, stats = run(proposer, scorer, overlap, lanes)
    assert out == greedy_reference(target.table, 40)
    assert stats.num_draft_faults >= 3  # two calls down, one answer lost, the restart's lost session
    assert stats.num_target_only_rounds >= 1  # rounds went on without the draft
    trace = stats.gamma_trace  # tokens drafted per round: 0 while the draft was down
    assert any(drafted > 0 for drafted in trace[trace.index(0) + 1:])  # and it rejoined afterwards
    assert stats.num_target_faults == 0


@pytest.mark.parametrize("overlap", [False, True])
def test_target_down_is_waited_for_and_retried_and_a_restart_re_prefills(overlap):
    proposer, scorer, target = pair(Faults(), Faults(down={1}, lost_answer={3}, restart={5, 8}))
    out, stats = run(proposer, scorer, overlap)
    assert out == greedy_reference(target.table, 40)
    assert scorer.waited == 2  # the call found down and the one whose answer was lost
    assert stats.num_target_faults == 4  # those two and one lost session per restart
    assert stats.num_draft_faults == 0


def test_both_services_failing_together():
    proposer, scorer, target = pair(Faults(down={1, 4}, restart={7}), Faults(lost_answer={2}, restart={4, 6}))
    out, stats = run(proposer, scorer, overlap=True, lanes=1, max_new_tokens=60)
    assert out == greedy_reference(target.table, 60)


def test_a_target_that_never_comes_back_fails_the_request():
    class DeadScorer(FaultyScorer):
        async def recovered(self) -> None:
            raise ServiceDown("target: did not come back within 1s")

    proposer, _, target = pair(Faults(), Faults())
    scorer = DeadScorer(TargetRunner(target), Faults(down={2}))
    with pytest.raises(ServiceDown, match="did not come back"):
        run(proposer, scorer)
