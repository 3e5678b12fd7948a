"""gRPC adapters that implement the engine's Proposer and Scorer protocols.

Channels are created lazily on the running event loop (grpc.aio channels belong to one loop); every
call carries a deadline and the channel message-size limits.
"""

from __future__ import annotations

import grpc

from specdec.runtime import messages
from specdec.runtime.rpc import RpcLimits, aio_channel
from specdec.types import ModelInfo, Proposal, ProposeCall, Verification, VerifyCall
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc


class _RemoteService:
    stub_class: type

    def __init__(self, address: str, limits: RpcLimits):
        self.address, self._limits = address, limits
        self._channel: grpc.aio.Channel | None = None
        self._stub = None

    @property
    def stub(self):
        if self._stub is None:
            self._channel = aio_channel(self.address, self._limits)
            self._stub = self.stub_class(self._channel)
        return self._stub

    async def info(self) -> ModelInfo:
        return messages.info_from_pb(await self.stub.GetInfo(pb.GetInfoRequest(), timeout=self._limits.timeout_s))

    async def end_session(self, session_id: str) -> None:
        await self.stub.EndSession(pb.EndSessionRequest(session_id=session_id), timeout=self._limits.timeout_s)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class RemoteProposer(_RemoteService):
    stub_class = pb_grpc.DraftServiceStub

    async def propose(self, call: ProposeCall) -> Proposal:
        response = await self.stub.Propose(messages.propose_call_to_pb(call), timeout=self._limits.timeout_s)
        return messages.proposal_from_pb(response, wire_bytes=response.ByteSize())


class RemoteScorer(_RemoteService):
    stub_class = pb_grpc.TargetServiceStub

    async def verify(self, call: VerifyCall) -> Verification:
        response = await self.stub.Verify(messages.verify_call_to_pb(call), timeout=self._limits.timeout_s)
        return messages.verification_from_pb(response, wire_bytes=response.ByteSize())
