"""The round ledger: a (session, round) is computed once, retries get the same answer, rounds increase."""

from __future__ import annotations

import asyncio

import pytest

from specdec.errors import SessionError
from specdec.services.runtime.rounds import RoundLedger
from specdec.v1 import specdec_pb2 as pb


class Counter:
    """A fake computation: counts its runs, can be held open or made to fail."""

    def __init__(self):
        self.runs = 0
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None

    async def __call__(self) -> pb.ProposeResponse:
        self.runs += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return pb.ProposeResponse(draft_tokens=[self.runs])


def request(round_index: int, session_id: str = "s", tokens: tuple[int, ...] = (1, 2)) -> pb.ProposeRequest:
    return pb.ProposeRequest(session_id=session_id, round=round_index, new_tokens=tokens, gamma=2)


async def ask(ledger: RoundLedger, compute: Counter, round_index: int, **fields) -> pb.ProposeResponse:
    message = request(round_index, **fields)
    return await ledger.answer(message.session_id, round_index, message, compute)


async def refusal(ledger: RoundLedger, compute: Counter, round_index: int, **fields) -> str:
    with pytest.raises(SessionError) as info:
        await ask(ledger, compute, round_index, **fields)
    assert info.value.field == "round" and info.value.code == "FAILED_PRECONDITION"
    return str(info.value)


def test_a_retried_round_gets_the_same_answer_without_recomputing():
    async def scenario():
        ledger, compute = RoundLedger(), Counter()
        first = await ask(ledger, compute, 0)
        assert await ask(ledger, compute, 0) == first and compute.runs == 1 and ledger.replays == 1
        assert await ask(ledger, compute, 5) != first and compute.runs == 2  # rounds may skip numbers

    asyncio.run(scenario())


def test_a_different_request_for_an_answered_round_and_an_older_round_are_refused():
    async def scenario():
        ledger, compute = RoundLedger(), Counter()
        await ask(ledger, compute, 3)
        assert "different request" in await refusal(ledger, compute, 3, tokens=(9,))
        assert "older than round 3" in await refusal(ledger, compute, 2)
        assert compute.runs == 1
        await ask(ledger, compute, 1, session_id="other")  # sessions count their rounds apart

    asyncio.run(scenario())


def test_a_retry_that_arrives_while_the_round_runs_awaits_the_same_computation():
    async def scenario():
        ledger, compute = RoundLedger(), Counter()
        compute.gate = asyncio.Event()
        first = asyncio.ensure_future(ask(ledger, compute, 0))
        retry = asyncio.ensure_future(ask(ledger, compute, 0))
        await asyncio.sleep(0)
        first.cancel()  # the first caller gives up (deadline): the computation goes on for the retry
        compute.gate.set()
        assert (await retry).draft_tokens == [1] and compute.runs == 1

    asyncio.run(scenario())


def test_a_failed_round_leaves_the_ledger_as_it_was():
    async def scenario():
        ledger, compute = RoundLedger(), Counter()
        answered = await ask(ledger, compute, 1)
        compute.error = SessionError("session_id", "gone", "NOT_FOUND")
        with pytest.raises(SessionError):
            await ask(ledger, compute, 2)
        compute.error = None
        assert await ask(ledger, compute, 1) == answered  # round 1 is still the last answered
        assert (await ask(ledger, compute, 2)).draft_tokens == [3]  # round 2 runs again
        compute.error = ValueError("boom")
        with pytest.raises(ValueError):
            await ask(ledger, compute, 0, session_id="new")
        assert len(ledger) == 1  # a session whose only round failed holds no entry

    asyncio.run(scenario())


def test_forgetting_a_session_lets_its_rounds_start_over():
    async def scenario():
        ledger, compute = RoundLedger(), Counter()
        await ask(ledger, compute, 7)
        ledger.forget(["s", "never-seen"])
        assert len(ledger) == 0 and (await ask(ledger, compute, 0)).draft_tokens == [2]

    asyncio.run(scenario())


def test_settled_waits_for_a_round_whose_caller_left():
    async def scenario():
        ledger, release, done = RoundLedger(), asyncio.Event(), []

        async def compute():
            await release.wait()
            done.append(True)
            return "answer"

        caller = asyncio.ensure_future(ledger.answer("s", 0, pb.EndSessionRequest(session_id="s"), compute))
        await asyncio.sleep(0)
        caller.cancel()  # the client gave up; the round runs on
        waiter = asyncio.ensure_future(ledger.settled("s"))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        release.set()
        await waiter
        assert done == [True]
        await ledger.settled("never-seen")  # nothing to wait for

    asyncio.run(scenario())
