"""TargetService over gRPC: a thin adapter, message -> dataclass -> TargetRunner -> message."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc

from specdec.runtime import messages
from specdec.runtime.model import CausalLM
from specdec.runtime.rpc import abort_on_bad_input
from specdec.runtime.service_actor import ModelServiceActor
from specdec.runtime.validation import InvalidField, check_sampling, check_session_id, check_token_ids
from specdec.services.target.runner import TargetRunner
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc

MAX_DRAFT_TOKENS = 64


class TargetServicer(pb_grpc.TargetServiceServicer):
    def __init__(self, lm: CausalLM, executor: ThreadPoolExecutor):
        self._lm, self._runner, self._executor = lm, TargetRunner(lm), executor

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return messages.info_to_pb(self._lm.info())

    @abort_on_bad_input
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext) -> pb.VerifyResponse:
        call = messages.verify_call_from_pb(request)
        check_session_id(call.session_id)
        if len(call.draft_tokens) > MAX_DRAFT_TOKENS:
            raise InvalidField("draft_tokens", f"at most {MAX_DRAFT_TOKENS} per call, got {len(call.draft_tokens)}")
        check_sampling(call.sampling, self._lm.vocab_size)
        check_token_ids("new_tokens", call.new_tokens, self._lm.vocab_size)
        check_token_ids("draft_tokens", call.draft_tokens, self._lm.vocab_size)
        verification = await asyncio.get_running_loop().run_in_executor(self._executor, self._runner.verify, call)
        return messages.verification_to_pb(verification)

    async def EndSession(self, request: pb.EndSessionRequest, context) -> pb.EndSessionResponse:
        existed = await asyncio.get_running_loop().run_in_executor(self._executor, self._lm.end_session,
                                                                   request.session_id)
        return pb.EndSessionResponse(existed=existed)


class TargetServiceActor(ModelServiceActor):
    service_name = "specdec.v1.TargetService"

    def register(self, server: grpc.aio.Server, lm: CausalLM, executor: ThreadPoolExecutor) -> None:
        pb_grpc.add_TargetServiceServicer_to_server(TargetServicer(lm, executor), server)
