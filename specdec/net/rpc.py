"""gRPC plumbing shared by every service: limits, server start-up, channels, error mapping.

Every server and channel gets message size limits; every client call gets a deadline (`RpcLimits`).
Handlers raise `InvalidField` or `SessionError` for bad input; `abort_on_bad_input` turns those into a
status code with a message naming the field, and the server keeps serving. Requests that do not even
parse get INVALID_ARGUMENT too (`RefuseUndecodable`, on every server).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from specdec.errors import InvalidField, SessionError


@dataclass(frozen=True)
class RpcLimits:
    max_message_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 60.0

    def options(self) -> list[tuple[str, int]]:
        return [("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.max_receive_message_length", self.max_message_bytes)]


def status_code(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name)


def abort_on_bad_input(handler: Callable) -> Callable:
    """Wrap an async unary handler: InvalidField / SessionError become an aborted call naming the field."""

    @functools.wraps(handler)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await handler(self, request, context)
        except InvalidField as exc:
            await context.abort(status_code(exc.code), str(exc))
        except SessionError as exc:
            await context.abort(status_code(exc.code), str(exc))

    return wrapper


class RefuseUndecodable(grpc.aio.ServerInterceptor):
    """Answer a request that does not parse (truncated bytes, invalid UTF-8 in a string field) with
    INVALID_ARGUMENT naming its message type, where grpc would answer INTERNAL "Exception deserializing
    request!". The handler gets raw bytes and decodes them itself, so the failure can be answered."""

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler  # streaming requests (server reflection only) keep grpc's own answer
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        behavior = _decoding(getattr(handler, kind), handler.request_deserializer)
        return handler._replace(request_deserializer=None, **{kind: behavior})


def _decoding(behavior: Callable, decode: Callable[[bytes], Message]) -> Callable:
    """`behavior` (an async function or async generator function of (request, context)) taking raw bytes."""
    message_type = decode.__self__.DESCRIPTOR.full_name  # decode is a message class's FromString

    async def parse(raw: bytes, context: grpc.aio.ServicerContext) -> Message:
        try:
            return decode(raw)
        except (DecodeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {message_type} ({exc})")

    if inspect.isasyncgenfunction(behavior):
        async def stream(raw: bytes, context: grpc.aio.ServicerContext):
            async for response in behavior(await parse(raw, context), context):
                yield response

        return stream

    async def unary(raw: bytes, context: grpc.aio.ServicerContext):
        return await behavior(await parse(raw, context), context)

    return unary


async def start_server(register: Callable[[grpc.aio.Server], None], host: str, port: int, limits: RpcLimits,
                       service_names: list[str], credentials: grpc.ServerCredentials | None = None,
                       interceptors: tuple = ()) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server on the running loop with the standard health and reflection services (so
    grpcurl and grpc_health_probe work against it); return it and its port."""
    # Innermost, so that a refused caller (TokenCheck) is refused before its bytes are parsed.
    server = grpc.aio.server(options=limits.options(), interceptors=(*interceptors, RefuseUndecodable()))
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind a gRPC server to {host}:{port}")
    await server.start()
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound


def aio_channel(address: str, limits: RpcLimits,
                credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=limits.options())
    return grpc.aio.insecure_channel(address, options=limits.options())


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
