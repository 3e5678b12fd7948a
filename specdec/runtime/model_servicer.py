"""What the draft and target servicers share: model info, session end, and running model work off the
event loop on the service's one worker thread (batched across sessions by a `Batcher`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc

from specdec.runtime import messages
from specdec.runtime.batcher import Batcher
from specdec.runtime.model import CausalLM
from specdec.v1 import specdec_pb2 as pb

T = TypeVar("T")


class ModelServicerBase:
    batcher: Batcher

    def __init__(self, lm: CausalLM, executor: ThreadPoolExecutor, max_batch: int):
        self._lm, self._executor, self.max_batch = lm, executor, max_batch

    async def run_model(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return messages.info_to_pb(self._lm.info())

    async def EndSession(self, request: pb.EndSessionRequest, context) -> pb.EndSessionResponse:
        return pb.EndSessionResponse(existed=await self.run_model(self._lm.end_session, request.session_id))
