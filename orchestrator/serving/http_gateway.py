"""The OpenAI-compatible HTTP API: a FastAPI app over an `Orchestrator`, served by uvicorn on the
orchestrator's own event loop, so that a request calls `Orchestrator.stream` directly and a client that
goes away cancels it and frees its sessions exactly as a cancelled gRPC call does.

Routes, with the conventions of vLLM's OpenAI-compatible server: POST /v1/completions and
/v1/chat/completions (server-sent events with `stream: true`, ending with `data: [DONE]`), GET /v1/models,
GET /health, GET /metrics (Prometheus text, vLLM's names beside specdec's). The /v1 routes need the bearer
token (`Authorization: Bearer <API key>`) when one is configured; /health and /metrics never do.

Errors in OpenAI's shape, mapped from the core's in one place (`refusal`): InvalidField is 400 naming the
field (404 for an unknown model, 429 when admission refuses), ServiceDown or a failed service call 503,
as is a request that arrives while every target is being recovered; 401 without the token. A request
starts (and may be refused) before its response does: its first output is awaited, so a refusal is an
HTTP status, not a broken stream; a failure after that is an `error` event in the stream.

Knows FastAPI, uvicorn and, through `openai_api`, the OpenAI shapes; knows nothing of Ray or of the
gRPC servers (the orchestrator actor starts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Annotated

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from specdec.errors import InvalidField, ModelServiceError
from specdec.net.security import TlsFiles
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.serving import openai_api as api
from specdec.orchestrator.serving.core import Orchestrator, TextDelta
from specdec.orchestrator.serving.metrics import CONTENT_TYPE
from specdec.orchestrator.serving.openai_api import ChoiceOutput, Identity, Plan
from specdec.orchestrator.serving.stop_strings import StopStrings

log = logging.getLogger(__name__)
STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNIMPLEMENTED": 400, "NOT_FOUND": 404,
          "RESOURCE_EXHAUSTED": 429}
KINDS = {400: ("invalid_request_error", "invalid_value"), 401: ("invalid_request_error", "invalid_api_key"),
         404: ("invalid_request_error", "not_found"), 405: ("invalid_request_error", "method_not_allowed"),
         429: ("rate_limit_error", "rate_limit_exceeded"), 503: ("server_error", "service_unavailable")}
RETRY_AFTER_S = "1"  # what a 429 or 503 tells the client to wait
STARTUP_POLL_S = 0.01
BEARER = HTTPBearer(auto_error=False)  # the API key, when the request has one


class Refused(Exception):
    """A refusal of the gateway's own (no token, targets recovering)."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    param: str | None = None
    code: str | None = None

    def body(self) -> dict:
        kind, code = KINDS.get(self.status, ("server_error", None))
        return api.error_body(self.message, kind, self.param, self.code or code)

    def response(self) -> JSONResponse:
        retry = {"Retry-After": RETRY_AFTER_S} if self.status in (429, 503) else None
        return JSONResponse(self.body(), self.status, headers=retry)


def refusal(exc: Exception, chat: bool = False) -> Refusal:
    """Every error a request can meet, as the HTTP status and OpenAI error it gets."""
    if isinstance(exc, InvalidField):
        param = api.http_field(exc.field, chat)
        message = f"{param}: {exc.reason}"
        return Refusal(STATUS.get(exc.code, 400), message, param, "model_not_found" if param == "model" else None)
    if isinstance(exc, Refused):
        return Refusal(exc.status, str(exc), exc.param)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return Refusal(400, f"body: not JSON: {first['msg']}")
        param = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return Refusal(400, f"{param}: {first['msg']}", param)
    if isinstance(exc, ModelServiceError):
        return Refusal(503, exc.summary)
    if isinstance(exc, HTTPException):
        return Refusal(exc.status_code, str(exc.detail))
    log.exception("unexpected error in the HTTP gateway", exc_info=exc)
    return Refusal(500, f"internal error: {type(exc).__name__}")


def create_app(orchestrator: Orchestrator, served_model: str, draft_model: str, token: str = "") -> FastAPI:
    """The app: `served_model` is the model id clients send and /v1/models lists, `draft_model` the draft it
    names there; `token`, when set, is the API key every /v1 route requires."""
    app = FastAPI(title="specdec", description="OpenAI-compatible API over speculative decoding")
    started = int(time.time())

    async def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if not token:
            return
        if credentials is None:
            raise Refused(401, "authorization: a bearer token (API key) is required")
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise Refused(401, "authorization: the API key is not valid")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @v1.post("/completions")
    async def completions(body: api.CompletionRequest, request: Request) -> Response:
        api.check_model(body.model, served_model)
        plan = api.completion_plan(body)
        return await _answer(request, orchestrator, plan, api.new_identity("cmpl", served_model), chat=False)

    @v1.post("/chat/completions")
    async def chat_completions(body: api.ChatCompletionRequest, request: Request) -> Response:
        api.check_model(body.model, served_model)
        plan = api.chat_plan(body, orchestrator.tokenizer)
        return await _answer(request, orchestrator, plan, api.new_identity("chatcmpl", served_model), chat=True)

    @v1.get("/models")
    async def models() -> dict:
        card = {"id": served_model, "object": "model", "created": started, "owned_by": "specdec",
                "root": orchestrator.target_info.model, "parent": None, "max_model_len": orchestrator.max_context,
                "speculative_config": {"method": "draft_model", "model": draft_model,
                                       "num_speculative_tokens": orchestrator.defaults.gamma}}
        return {"object": "list", "data": [card]}

    @app.get("/health")
    async def health() -> Response:
        if orchestrator.targets_recovering:
            return Refusal(503, "every target service is being recovered").response()
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(orchestrator.metrics.exposition(), media_type=CONTENT_TYPE)

    app.include_router(v1)
    for error in (InvalidField, Refused, ModelServiceError, HTTPException, RequestValidationError,
                  Exception):
        app.add_exception_handler(error, _handle)
    return app


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return refusal(exc, chat=request.url.path.endswith("/chat/completions")).response()


async def _answer(request: Request, orchestrator: Orchestrator, plan: Plan, identity: Identity,
                  chat: bool) -> Response:
    if plan.ignored:
        log.info("%s: ignored unknown fields %s", request.url.path, ", ".join(plan.ignored))
    if orchestrator.targets_recovering:
        raise Refused(503, "every target service is being recovered; retry shortly")
    started = await _cancelled_on_disconnect(request, _start(orchestrator, plan))
    if started is None:
        return Response(status_code=499)  # the client left; nobody reads this
    if plan.stream:
        events = _events(identity, plan, started.choices(plan.stops), chat)
        # Run after the stream, also when a disconnect cancelled it: the requests end at once, not at collection.
        return EventSourceResponse(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                   background=BackgroundTask(_close, events, started))
    try:
        outputs = await _cancelled_on_disconnect(request, _collect(started.choices(plan.stops)))
    finally:
        await started.close()
    if outputs is None:
        return Response(status_code=499)
    respond = api.chat_response if chat else api.completion_response
    return JSONResponse(respond(identity, outputs, plan))


@dataclass
class Started:
    """The orchestrator streams of one request's choices, each past its first output."""

    streams: list[AsyncIterator]
    firsts: list[TextDelta | RequestStats]

    def choices(self, stops: tuple[str, ...]) -> list[AsyncIterator[ChoiceOutput]]:
        return [_choice(index, first, stream, StopStrings(stops))
                for index, (first, stream) in enumerate(zip(self.firsts, self.streams, strict=True))]

    async def close(self) -> None:
        """End every choice's request that is still open (its sessions are freed)."""
        await asyncio.gather(*(stream.aclose() for stream in self.streams), return_exceptions=True)


async def _start(orchestrator: Orchestrator, plan: Plan) -> Started:
    """Start every choice's request and await its first output (a refusal raises here, before any response).
    Each choice takes a place of its own and holds it until the response streams: more choices than the
    orchestrator admits at once could never all start, so such a request is refused naming `n`."""
    if len(plan.choices) > orchestrator.limits.max_active_requests:
        raise InvalidField("n", f"{len(plan.choices)} choices (prompts x n) need as many places at once; the "
                                f"orchestrator admits {orchestrator.limits.max_active_requests} "
                                f"(limits.max_active_requests)")
    streams = [orchestrator.stream(params) for params in plan.choices]
    try:
        firsts = await asyncio.gather(*(anext(stream) for stream in streams), return_exceptions=True)
        failed = next((first for first in firsts if isinstance(first, BaseException)), None)
        if failed is not None:
            raise failed
    except BaseException:
        await asyncio.gather(*(stream.aclose() for stream in streams), return_exceptions=True)
        raise
    return Started(streams, firsts)


async def _close(events: AsyncIterator[bytes], started: Started) -> None:
    await events.aclose()  # stops its choices' pumps first: a stream being read cannot be closed
    await started.close()


async def _choice(index: int, first: TextDelta | RequestStats, stream: AsyncIterator, stops: StopStrings
                  ) -> AsyncIterator[ChoiceOutput]:
    """One choice's pieces: new text and token ids as rounds commit; the last has the finish reason and stats.
    A stop string ends the request at once (its sessions are freed before the last piece goes out)."""
    event = first
    try:
        while isinstance(event, TextDelta):
            text, stopped = stops.push(event.text)
            if stopped:
                event.stats.finish_reason = "stop"  # what the request finished for, in the metrics too
                await stream.aclose()
                yield ChoiceOutput(index, text, event.token_ids, "stop", event.stats)
                return
            yield ChoiceOutput(index, text, event.token_ids)
            event = await anext(stream)
        yield ChoiceOutput(index, stops.flush(), [], event.finish_reason, event)
    finally:
        await stream.aclose()


async def _merged(choices: list[AsyncIterator[ChoiceOutput]]) -> AsyncIterator[ChoiceOutput]:
    """The pieces of every choice as they come. Closing this (a client that left) cancels every request."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(choice: AsyncIterator[ChoiceOutput]) -> None:
        async with contextlib.aclosing(choice):
            try:
                async for piece in choice:
                    queue.put_nowait(piece)
                queue.put_nowait(done)
            except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
                queue.put_nowait(exc)

    tasks = [asyncio.get_running_loop().create_task(pump(choice)) for choice in choices]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _collect(choices: list[AsyncIterator[ChoiceOutput]]) -> list[ChoiceOutput]:
    outputs = [ChoiceOutput(index) for index in range(len(choices))]
    async with contextlib.aclosing(_merged(choices)) as pieces:
        async for piece in pieces:
            _add(outputs[piece.index], piece)
    return outputs


async def _events(identity: Identity, plan: Plan, choices: list[AsyncIterator[ChoiceOutput]],
                  chat: bool) -> AsyncIterator[bytes]:
    """The SSE stream: each choice's chunks as its rounds commit, the usage chunk when asked, then [DONE]."""
    outputs = [ChoiceOutput(index) for index in range(len(choices))]
    chunk = api.chat_chunk if chat else api.completion_chunk
    try:
        for output in outputs:
            if chat:
                yield _event(api.chat_chunk(identity, output, plan, role=True))
            elif plan.echo:
                yield _event(chunk(identity, ChoiceOutput(output.index, plan.prompts[output.index // plan.n]), plan))
        async with contextlib.aclosing(_merged(choices)) as pieces:
            async for piece in pieces:
                _add(outputs[piece.index], piece)
                if piece.text or piece.finish_reason or (plan.return_token_ids and piece.token_ids):
                    yield _event(chunk(identity, piece, plan))
        if plan.include_usage:
            kind = "chat.completion.chunk" if chat else "text_completion"
            yield _event(api.usage_chunk(identity, kind, outputs, plan))
    except Exception as exc:  # noqa: BLE001 - the response has started: the error travels as an event
        yield _event(refusal(exc, chat).body())
    yield format_sse_event(data_str="[DONE]")


def _event(payload: dict) -> bytes:
    return format_sse_event(data_str=json.dumps(payload))


def _add(output: ChoiceOutput, piece: ChoiceOutput) -> None:
    output.text += piece.text
    output.token_ids += piece.token_ids
    if piece.finish_reason is not None:
        output.finish_reason, output.stats = piece.finish_reason, piece.stats


async def _cancelled_on_disconnect(request: Request, work: Awaitable):
    """The result of `work`, or None once the client has disconnected (then `work` is cancelled): a
    request the client gave up on stops decoding and frees its sessions."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if not task.cancelled() else None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@dataclass
class HttpServer:
    """A running uvicorn server (kept so that its task is not collected) and the port it bound."""

    server: uvicorn.Server
    task: asyncio.Task
    port: int


async def serve_http(app: FastAPI, host: str, port: int, tls: TlsFiles) -> HttpServer:
    """Serve `app` on the running loop (HTTPS with tls.cert and tls.key when set); return once it accepts.
    The socket is bound here so that a port in use is an OSError, not uvicorn's exit of the process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=tls.cert or None, ssl_keyfile=tls.key or None)
    try:
        config.load()  # reads the TLS files
    except OSError as exc:
        sock.close()
        raise ValueError(f"tls: cannot load {tls.cert} and {tls.key} for HTTPS: {exc}") from exc
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the HTTP server stopped while starting")
        await asyncio.sleep(STARTUP_POLL_S)
    return HttpServer(server, task, sock.getsockname()[1])
