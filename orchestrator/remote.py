"""gRPC adapters that implement the engine's Proposer and Scorer protocols.

Channels are created lazily on the running event loop (grpc.aio channels belong to one loop); every
call carries a deadline and the channel message-size limits. An optional `on_call(method, seconds,
compute_seconds)` hears of every propose and verify call (the orchestrator's latency metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from specdec.runtime import messages
from specdec.runtime.rpc import RpcLimits, aio_channel
from specdec.types import ModelInfo, Proposal, ProposeCall, Verification, VerifyCall
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc


class _RemoteService:
    stub_class: type

    def __init__(self, address: str, limits: RpcLimits, on_call: Callable[[str, float, float], None] | None = None,
                 credentials: grpc.ChannelCredentials | None = None):
        self.address, self._limits, self._on_call, self._credentials = address, limits, on_call, credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub = None

    @property
    def stub(self):
        if self._stub is None:
            self._channel = aio_channel(self.address, self._limits, self._credentials)
            self._stub = self.stub_class(self._channel)
        return self._stub

    async def info(self) -> ModelInfo:
        return messages.info_from_pb(await self.stub.GetInfo(pb.GetInfoRequest(), timeout=self._limits.timeout_s))

    async def end_session(self, session_id: str) -> None:
        await self.stub.EndSession(pb.EndSessionRequest(session_id=session_id), timeout=self._limits.timeout_s)

    def _observe(self, method: str, started: float, compute_seconds: float) -> None:
        if self._on_call is not None:
            self._on_call(method, time.perf_counter() - started, compute_seconds)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class RemoteProposer(_RemoteService):
    stub_class = pb_grpc.DraftServiceStub

    async def propose(self, call: ProposeCall) -> Proposal:
        started = time.perf_counter()
        response = await self.stub.Propose(messages.propose_call_to_pb(call), timeout=self._limits.timeout_s)
        self._observe("Propose", started, response.compute_seconds)
        return messages.proposal_from_pb(response, wire_bytes=response.ByteSize())


class RemoteScorer(_RemoteService):
    stub_class = pb_grpc.TargetServiceStub

    async def verify(self, call: VerifyCall) -> Verification:
        started = time.perf_counter()
        response = await self.stub.Verify(messages.verify_call_to_pb(call), timeout=self._limits.timeout_s)
        self._observe("Verify", started, response.compute_seconds)
        return messages.verification_from_pb(response, wire_bytes=response.ByteSize())
