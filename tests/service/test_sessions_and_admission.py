"""Sessions and admission over real gRPC: abandoned sessions expire, a service refuses sessions beyond its
limit with RESOURCE_EXHAUSTED (not an out-of-memory), the orchestrator queues requests beyond its limit and
refuses them beyond its queue, and a client that cancels frees its sessions in both services at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from specdec.config import ServeConfig, resolve_model
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from tests.helpers import BackgroundLoop

GREEDY = pb.SamplingParams(temperature=0.0)


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_service_expires_idle_sessions_and_refuses_sessions_beyond_its_limit():
    loop = BackgroundLoop()
    draft = DraftServiceActor(LoadSpec(resolve_model("demo:draft")), max_sessions=2, session_idle_s=0.6)
    try:
        with grpc.insecure_channel(loop.run(draft.ready())) as channel:
            stub = pb_grpc.DraftServiceStub(channel)

            def propose(session_id: str) -> pb.ProposeResponse:
                return stub.Propose(pb.ProposeRequest(session_id=session_id, keep_len=0, new_tokens=[5, 6, 7],
                                                      gamma=2, sampling=GREEDY))

            propose("a"), propose("b")
            with pytest.raises(grpc.RpcError) as info:
                propose("c")
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limits.max_sessions" in info.value.details() and info.value.details().startswith("session_id")
            assert len(propose("a").draft_tokens) == 2  # sessions it holds are still served
            wait_for(lambda: loop.run(draft.health())["sessions"] == 0)  # nobody came back: both expired
            assert loop.run(draft.health())["expired_sessions"] == 2
            assert len(propose("c").draft_tokens) == 2  # room again
    finally:
        loop.stop()


@pytest.fixture(scope="module")
def small_orchestrator(servers, tmp_path_factory):
    """An orchestrator that admits one request at a time and queues one more, over the shared services."""
    config = ServeConfig().with_overrides(orchestrator={"port": 0},
                                          limits={"max_active_requests": 1, "max_waiting_requests": 1},
                                          jobs={"journal_path": str(tmp_path_factory.mktemp("jobs") / "j.sqlite")})
    actor = OrchestratorActor(config, [servers["draft"]], [servers["target"]])
    yield actor, servers["loop"].run(actor.ready())  # the actor object must live as long as its server


def test_the_orchestrator_queues_past_its_limit_and_refuses_past_its_queue(small_orchestrator, servers):
    actor, address = small_orchestrator

    def queued() -> int:
        return servers["loop"].run(actor.health())["waiting_requests"]

    with Client(address) as first, Client(address) as second, Client(address) as third, ThreadPoolExecutor(1) as pool:
        stream = first.stream("def f(x):", max_new_tokens=64, temperature=0.0, ignore_eos=True)
        first_delta = next(stream)  # one request in flight
        waiting = pool.submit(second.generate, "import os", max_new_tokens=4, ignore_eos=True)
        wait_for(lambda: queued() == 1)
        with pytest.raises(grpc.RpcError) as info:
            third.generate("import sys", max_new_tokens=4)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details().startswith("max_waiting_requests")
        assert not waiting.done()  # it waits its turn
        rest = list(stream)  # the first request finishes undisturbed, and hands its place on
        assert len(first_delta.token_ids) + sum(len(d.token_ids) for d in rest) == 64
        assert waiting.result(timeout=60).stats["output_tokens"] == 4
        assert queued() == 0


def test_a_cancelled_stream_frees_its_sessions_in_both_services(servers):
    loop = servers["loop"]
    with Client(servers["orchestrator"]) as client:
        request = pb.GenerateRequest(prompt="class Stack:", max_new_tokens=200, ignore_eos=True, gamma=3,
                                     sampling=pb.SamplingParams(temperature=1.0))
        call = client._stub.Generate(request)
        next(call)
        assert any(loop.run(servers[name].health())["sessions"] for name in ("draft_actor", "target_actor"))
        call.cancel()
        wait_for(lambda: all(loop.run(servers[name].health())["sessions"] == 0
                             for name in ("draft_actor", "target_actor")))


def test_a_session_is_ended_only_after_its_cancelled_call_has_run(servers):
    """A caller cancelled before its call reached the service (here: held behind another call's write) must
    not have its session ended first, or the late call would start the session again and leave it behind."""
    import asyncio

    from specdec.net.rpc import RpcLimits
    from specdec.orchestrator.adapters.remote import RemoteProposer
    from specdec.types import ProposeCall, SamplingParams

    loop, draft = servers["loop"], servers["draft_actor"]

    def first_call(session_id: str) -> ProposeCall:
        return ProposeCall(session_id, 0, 0, [5, 6, 7], 2, SamplingParams(temperature=0.0), seed=0, want_probs=False)

    async def race() -> None:
        proposer = RemoteProposer(servers["draft"], RpcLimits())
        try:
            await proposer.propose(first_call("late-opener"))  # opens the call stream
            await proposer.end_session("late-opener")
            sessions = (await draft.health())["sessions"]
            async with proposer._calls._writing:  # another call is being written: this one waits its turn
                late = asyncio.ensure_future(proposer.propose(first_call("late-call")))
                await asyncio.sleep(0.05)
                late.cancel()  # its client walked away
                ending = asyncio.ensure_future(proposer.end_session("late-call"))
                await asyncio.sleep(0.05)
            await ending
            await asyncio.sleep(0.5)  # time for a late call to have run, had it been sent after the end
            assert (await draft.health())["sessions"] == sessions  # nothing left behind
        finally:
            await proposer.close()

    loop.run(race())
