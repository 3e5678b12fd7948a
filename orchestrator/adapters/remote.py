"""gRPC adapters that implement the engine's Proposer and Scorer protocols, and bring a failed service back.

Channels are created lazily on the running event loop (grpc.aio channels belong to one loop); every call
carries a deadline and the channel message-size limits. Proposes and verifies travel over one
long-lived bidirectional stream per channel (`CallStream`), which costs well under half of a unary call
per round trip in grpc's Python stack; a stream that breaks fails its calls in flight and is opened
again by the next call. A propose or verify that finds its service
unreachable or past the deadline raises ServiceDown and starts one recovery, shared by every request on
the adapter: probe the service; one that still listens but does not answer is hung and is restarted;
then re-locate it (a Ray actor restarted after a crash listens on a new port) and probe it again, until
it answers or `Recovery.timeout_s` passes. NOT_FOUND from a service means it no longer holds the
session (SessionLost). A call whose caller is cancelled still runs to its answer, and a session is
ended only after its calls in flight: a late call that starts a session would otherwise recreate it after
its end. An optional `on_call(method, seconds, compute_seconds)` hears of every propose and verify (the
orchestrator's latency metrics).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from specdec.errors import ServiceDown, ServiceFailed, SessionLost
from specdec.net.rpc import RpcLimits, aio_channel
from specdec.types import ModelInfo, Proposal, ProposeCall, Verification, VerifyCall
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from specdec.wire import messages

log = logging.getLogger(__name__)
DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# INTERNAL with one of these details is gRPC's transport failing (a peer killed mid-stream resets it), not
# the service answering with an error: the service is down.
BROKEN_TRANSPORT = ("Internal error from Core", "RST_STREAM")
PROBE_TIMEOUT_S = 5.0  # a service that listens but does not answer GetInfo within this is hung
END_SESSION_TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True)
class Recovery:
    """How to bring a service back. `locate()` returns its current address, waiting while it restarts;
    `restart()` restarts a hung one. Without them the address is fixed and nothing is restarted."""

    locate: Callable[[], Awaitable[str]] | None = None
    restart: Callable[[], Awaitable[None]] | None = None
    timeout_s: float = 120.0


class CallStream:
    """Calls over one bidirectional stream: each written with a fresh call id, its answer matched by id."""

    def __init__(self, open_stream: Callable[[], grpc.aio.StreamStreamCall]):
        self._open_stream = open_stream
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._writing = asyncio.Lock()

    async def call(self, request: Message, call_type: type[Message], timeout_s: float) -> Message:
        """The response to `request`; a call error or a broken stream raises grpc.aio.AioRpcError, a call
        unanswered within timeout_s raises one with DEADLINE_EXCEEDED."""
        stream = self._stream
        if stream is None:
            stream = self._stream = self._open_stream()
            self._reader = asyncio.get_running_loop().create_task(self._read(stream))
        call_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())  # a caller may have left
        self._pending[call_id] = answer
        try:
            # Shielded: grpc cancels the whole stream when a write is cancelled, and a caller may be (its
            # request cancelled by its client) without that touching the other calls on the stream.
            await asyncio.shield(self._send(stream, call_type(call_id=call_id, request=request)))
            return await asyncio.wait_for(answer, timeout_s)
        except asyncio.TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout_s:g}s") from None
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:  # written after the stream ended
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE, f"stream closed: {exc}") from exc
        finally:
            self._pending.pop(call_id, None)

    async def _send(self, stream: grpc.aio.StreamStreamCall, message: Message) -> None:
        async with self._writing:
            await stream.write(message)

    async def _read(self, stream: grpc.aio.StreamStreamCall) -> None:
        failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, "stream ended")
        try:
            async for result in stream:
                answer = self._pending.pop(result.call_id, None)
                if answer is None or answer.done():
                    continue  # its caller gave up
                if result.HasField("error"):
                    code = getattr(grpc.StatusCode, result.error.code, grpc.StatusCode.UNKNOWN)
                    answer.set_exception(_rpc_error(code, result.error.message))
                else:
                    answer.set_result(result.response)
        except grpc.aio.AioRpcError as exc:
            # A stream cut by the service's death may end INTERNAL ("Internal error from Core") rather than
            # UNAVAILABLE; the calls' own errors travel as results, so either way the service is down.
            failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, f"stream broke: {exc.code().name}: {exc.details()}") \
                if exc.code() == grpc.StatusCode.INTERNAL else exc
        except asyncio.CancelledError:
            failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, "stream closed")
            raise
        finally:
            if self._stream is stream:
                self._stream = None
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(failure)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None


def project_error(address: str, method: str, exc: grpc.aio.AioRpcError) -> Exception:
    """The project's error for a failed call, the one place a gRPC status becomes one: NOT_FOUND a lost
    session, UNAVAILABLE or DEADLINE_EXCEEDED (or a broken transport) a service that is down, any other
    status a failed call."""
    if exc.code() == grpc.StatusCode.NOT_FOUND:
        return SessionLost(f"{address}: {exc.details()}")
    broken = exc.code() == grpc.StatusCode.INTERNAL and any(text in (exc.details() or "") for text in BROKEN_TRANSPORT)
    if exc.code() in DOWN_CODES or broken:
        return ServiceDown(f"{address}: {method}: {exc.code().name}: {exc.details()}")
    return ServiceFailed(address, exc.code().name, exc.details())


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _RemoteService:
    stub_class: type
    stream_method: str  # the stub's bidirectional call stream
    call_type: type[Message]

    def __init__(self, address: str, limits: RpcLimits, on_call: Callable[[str, float, float], None] | None = None,
                 credentials: grpc.ChannelCredentials | None = None, recovery: Recovery | None = None):
        self.address, self._limits, self._on_call, self._credentials = address, limits, on_call, credentials
        self._recovery = recovery or Recovery()
        self._channel: grpc.aio.Channel | None = None
        self._stub = None
        self._calls: CallStream | None = None
        # Calls still running on the service, by session, their callers gone or not: a session is ended
        # only after them, or a late call that starts the session (keep_len 0) would recreate it for good.
        self._in_flight: dict[str, set[asyncio.Future]] = {}
        self._recovering: asyncio.Task | None = None
        self.failures = 0  # calls that found the service down
        self.recoveries = 0  # times it answered again after that
        self.restarts = 0  # hung services restarted

    @property
    def stub(self):
        if self._stub is None:
            self._channel = aio_channel(self.address, self._limits, self._credentials)
            self._stub = self.stub_class(self._channel)
        return self._stub

    @property
    def available(self) -> bool:
        """False while a recovery is under way."""
        return self._recovering is None

    async def info(self) -> ModelInfo:
        try:
            response = await self.stub.GetInfo(pb.GetInfoRequest(), timeout=self._limits.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise project_error(self.address, "GetInfo", exc) from exc
        return messages.info_from_pb(response)

    async def end_session(self, session_id: str) -> None:
        if self.available:  # a service being recovered has lost its sessions, or will expire them
            running = self._in_flight.get(session_id)
            if running:
                await asyncio.wait(set(running), timeout=END_SESSION_TIMEOUT_S)
            try:
                await self.stub.EndSession(pb.EndSessionRequest(session_id=session_id),
                                           timeout=min(END_SESSION_TIMEOUT_S, self._limits.timeout_s))
            except grpc.aio.AioRpcError as exc:
                raise project_error(self.address, "EndSession", exc) from exc

    async def recovered(self) -> None:
        """Wait for the recovery under way, if any; raises ServiceDown if the service did not come back."""
        if self._recovering is not None:
            await asyncio.shield(self._recovering)

    async def _call(self, method: str, request):
        started = time.perf_counter()
        if self._calls is None:
            stub = self.stub
            self._calls = CallStream(lambda: getattr(stub, self.stream_method)())
        try:
            response = await asyncio.shield(self._track(request.session_id, self._calls.call(
                request, self.call_type, self._limits.timeout_s)))
        except grpc.aio.AioRpcError as exc:
            error = project_error(self.address, method, exc)
            if isinstance(error, ServiceDown):
                self.failures += 1
                if self._recovering is None:
                    log.warning("%s: %s failed (%s); recovering", self.address, method, exc.code().name)
                    self._recovering = asyncio.get_running_loop().create_task(self._recover())
                    self._recovering.add_done_callback(lambda task: task.cancelled() or task.exception())
            raise error from exc
        if self._on_call is not None:
            self._on_call(method, time.perf_counter() - started, response.compute_seconds)
        return response

    def _track(self, session_id: str, call: Awaitable[Message]) -> asyncio.Future:
        """The call as a task that runs to its answer even if its caller is cancelled, held in `_in_flight`
        until then."""
        task = asyncio.ensure_future(call)
        running = self._in_flight.setdefault(session_id, set())
        running.add(task)

        def settled(done: asyncio.Future) -> None:
            running.discard(done)
            if not running and self._in_flight.get(session_id) is running:
                del self._in_flight[session_id]
            if not done.cancelled():
                done.exception()  # retrieved: a caller that left does not leave it unobserved

        task.add_done_callback(settled)
        return task

    async def _recover(self) -> None:
        deadline = time.monotonic() + self._recovery.timeout_s
        try:
            while True:
                try:
                    await self._bring_back(deadline)
                    self.recoveries += 1
                    log.warning("%s: answering again", self.address)
                    return
                except Exception as exc:  # noqa: BLE001 - any way of not answering means: try again until the deadline
                    if time.monotonic() >= deadline:
                        raise ServiceDown(f"{self.address}: did not come back within "
                                          f"{self._recovery.timeout_s:.0f}s: {exc!r}") from exc
                await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            self._recovering = None

    async def _bring_back(self, deadline: float) -> None:
        """Probe the service; restart it if it is hung; re-locate it; probe again."""
        try:
            await self._probe(deadline)
            return
        except grpc.aio.AioRpcError as exc:
            hung = exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if self._recovery.locate is None:
                raise ServiceDown(f"{self.address}: {exc.code().name}: {exc.details()}") from exc
        if hung and self._recovery.restart is not None:
            log.warning("%s: listening but not answering; restarting it", self.address)
            self.restarts += 1
            await self._recovery.restart()
        address = await asyncio.wait_for(self._recovery.locate(), max(0.1, deadline - time.monotonic()))
        if address != self.address:
            await self.close()
            self.address = address
        await self._probe(deadline)

    async def _probe(self, deadline: float) -> None:
        await self.stub.GetInfo(pb.GetInfoRequest(),
                                timeout=max(0.1, min(PROBE_TIMEOUT_S, deadline - time.monotonic())))

    async def close(self) -> None:
        if self._calls is not None:
            self._calls.close()
            self._calls = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


class RemoteProposer(_RemoteService):
    stub_class = pb_grpc.DraftServiceStub
    stream_method = "ProposeStream"
    call_type = pb.ProposeCallEnvelope

    async def propose(self, call: ProposeCall) -> Proposal:
        response = await self._call("Propose", messages.propose_call_to_pb(call))
        return messages.proposal_from_pb(response, wire_bytes=response.ByteSize())


class RemoteScorer(_RemoteService):
    stub_class = pb_grpc.TargetServiceStub
    stream_method = "VerifyStream"
    call_type = pb.VerifyCallEnvelope

    async def verify(self, call: VerifyCall) -> Verification:
        response = await self._call("Verify", messages.verify_call_to_pb(call))
        return messages.verification_from_pb(response, wire_bytes=response.ByteSize())
