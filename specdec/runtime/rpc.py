"""gRPC plumbing shared by every service: limits, server start-up, channels, error mapping.

Every server and channel gets message size limits; every client call gets a deadline (`RpcLimits`).
Handlers raise `InvalidField` or `SessionError` for bad input; `abort_on_bad_input` turns those into a
status code with a message naming the field, and the server keeps serving.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from specdec.runtime.model import SessionError
from specdec.runtime.validation import InvalidField


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


async def start_server(register: Callable[[grpc.aio.Server], None], host: str, port: int, limits: RpcLimits,
                       service_names: list[str], credentials: grpc.ServerCredentials | None = None,
                       interceptors: tuple = ()) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server on the running loop with the standard health and reflection services (so
    grpcurl and grpc_health_probe work against it); return it and its port."""
    server = grpc.aio.server(options=limits.options(), interceptors=interceptors)
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
