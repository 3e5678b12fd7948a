"""Clients of a running orchestrator: `Client` over gRPC (the one users import), and a small client of the
OpenAI-compatible HTTP API for specdec's own load tests."""

from specdec.orchestrator.client.grpc_client import Client

__all__ = ["Client"]
