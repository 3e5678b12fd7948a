"""What the draft and target servicers share: model info, session end, idempotent rounds, running model
work off the event loop on the service's one worker thread (batched across sessions by a `Batcher`), and
the long-lived call streams (`serve_stream`), whose calls run concurrently and are answered as they finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from specdec.errors import InvalidField, SessionError
from specdec.net.rpc import abort_on_bad_input
from specdec.services.runtime.batcher import Batcher
from specdec.services.runtime.model import CausalLM
from specdec.services.runtime.rounds import RoundLedger
from specdec.v1 import specdec_pb2 as pb
from specdec.wire import messages
from specdec.wire.held_settings import HeldSettings
from specdec.wire.validation import check_range, check_session_id

T = TypeVar("T")


class ModelServicerBase:
    batcher: Batcher
    settings_fields: tuple[str, ...] = ()  # the request fields a session sends once (`held_settings`)

    def __init__(self, lm: CausalLM, executor: ThreadPoolExecutor, max_batch: int):
        self._lm, self._executor, self.max_batch = lm, executor, max_batch
        self.rounds: RoundLedger[Message] = RoundLedger()
        self.settings = HeldSettings(self.settings_fields)

    async def run_model(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def check_session_call(self, session_id: str, keep_len: int) -> None:
        """The checks every propose and verify shares: a well-formed session id and a keep_len that could fit."""
        check_session_id(session_id)
        check_range("keep_len", keep_len, 0, self._lm.max_context)

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return messages.info_to_pb(self._lm.info())

    @abort_on_bad_input
    async def EndSession(self, request: pb.EndSessionRequest, context) -> pb.EndSessionResponse:
        check_session_id(request.session_id)
        await self.rounds.settled(request.session_id)  # a round still running would otherwise outlive the end
        self.forget([request.session_id])
        return pb.EndSessionResponse(existed=await self.run_model(self._lm.end_session, request.session_id))

    def forget(self, session_ids: list[str]) -> None:
        """Drop what the servicer keeps of ended or expired sessions: their last round and their settings."""
        self.rounds.forget(session_ids)
        self.settings.forget(session_ids)

    async def serve_stream(self, calls: AsyncIterator[Message], context: grpc.aio.ServicerContext,
                           answer: Callable[[Message], Awaitable[Message]], result_type: type[Message]) -> None:
        """Answer every call of a stream (`call_id` + `request`) with `result_type(call_id, response | error)`.
        Calls run concurrently, so calls of different sessions batch as unary calls do; a bad call gets its
        error as the unary RPC would have answered it, and the stream carries on."""
        writing = asyncio.Lock()
        running: set[asyncio.Task] = set()

        async def one(call: Message) -> None:
            try:
                result = result_type(call_id=call.call_id, response=await answer(call.request))
            except (InvalidField, SessionError) as exc:
                result = result_type(call_id=call.call_id, error=pb.CallError(code=exc.code, message=str(exc)))
            async with writing:
                await context.write(result)

        try:
            async for call in calls:
                task = asyncio.get_running_loop().create_task(one(call))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

