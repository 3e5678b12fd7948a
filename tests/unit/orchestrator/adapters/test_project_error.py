"""How the remote adapter reads a failed call: a lost session, a service that is down (including a
transport that broke under a killed peer), or a call the service answered with an error."""

from __future__ import annotations

import grpc
import pytest

from specdec.errors import ServiceDown, ServiceFailed, SessionLost
from specdec.orchestrator.adapters.remote import project_error


def failed(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize("code, details, kind", [
    (grpc.StatusCode.NOT_FOUND, "session_id: not held", SessionLost),
    (grpc.StatusCode.UNAVAILABLE, "Socket closed", ServiceDown),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", ServiceDown),
    (grpc.StatusCode.INTERNAL, "Internal error from Core", ServiceDown),  # a peer killed mid-stream
    (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2", ServiceDown),
    (grpc.StatusCode.INTERNAL, "CUDA error: out of memory", ServiceFailed),  # the service's own error
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "no room for a new session", ServiceFailed),
])
def test_a_failed_call_becomes_the_projects_error(code, details, kind):
    assert type(project_error("127.0.0.1:1", "Verify", failed(code, details))) is kind
