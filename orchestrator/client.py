"""The Python client of the orchestrator: blocking and streaming generation over gRPC.

    from specdec.orchestrator.client import Client
    with Client("127.0.0.1:50051") as client:
        print(client.generate("def fib(n):", max_new_tokens=64).text)
        for delta in client.stream("import os", temperature=0.8):
            print(delta.text, end="")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message

from specdec.runtime.rpc import RpcLimits
from specdec.runtime.security import TlsFiles
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Delta:
    text: str
    token_ids: list[int]
    stats: dict | None = None  # set on the last event of a stream only: the request's stats


@dataclass
class Completion:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # RequestStats as a dict (snake_case keys)


def message_to_dict(message: Message) -> dict:
    """Every field by its proto name, with Python values (ints stay ints, repeated fields become lists)."""
    out = {}
    for descriptor in message.DESCRIPTOR.fields:
        value = getattr(message, descriptor.name)
        if descriptor.message_type is not None and not descriptor.is_repeated:
            value = message_to_dict(value)
        elif descriptor.is_repeated:
            value = list(value)
        out[descriptor.name] = value
    return out


class Client:
    def __init__(self, address: str, timeout_s: float | None = 600.0, limits: RpcLimits | None = None,
                 tls_ca: str | None = None, token: str | None = None, cert: str | None = None, key: str | None = None):
        """`tls_ca`: PEM CA file that signed the orchestrator's certificate (TLS; plaintext without);
        `cert`/`key`: this client's certificate for mutual TLS; `token`: the client API's bearer token."""
        self.address, self.timeout_s = address, timeout_s
        options = (limits or RpcLimits()).options()
        if tls_ca:
            credentials = TlsFiles(cert=cert or "", key=key or "", ca=tls_ca).channel_credentials()
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.OrchestratorServiceStub(self._channel)
        self.last_stats: dict = {}

    def stream(self, prompt: str, *, max_new_tokens: int = 0, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, rule: str = "", gamma: int | None = None, seed: int | None = None,
               ignore_eos: bool = False, rule_params: dict | None = None, gamma_controller: str = "",
               controller_params: dict | None = None, num_drafts: int = 0,
               overlap: bool | None = None, speculation_lanes: int | None = None) -> Iterator[Delta]:
        """Yield text deltas as they are committed, then one empty delta carrying the request's stats
        (also kept in `last_stats`, which concurrent streams on one client overwrite). Closing the
        iterator early (a `break`) cancels the request.

        max_new_tokens 0, rule "" and gamma_controller "" mean the server defaults; gamma None the server
        default, 0 target-only; num_drafts is M draft sequences per round (0 or 1: one); overlap None is
        the server default, True drafts the next window while the target verifies; speculation_lanes
        (None: server default) is how many rejection outcomes overlapped mode also pre-drafts for. rule_params
        (threshold, divergence, divergence_top_k, divergence_on_warped, epsilon, delta) and
        controller_params (gamma_max, gamma_min, eta, delta, confidence_threshold, smoothing, probe_every)
        are dicts of the RuleParams / ControllerParams fields.
        Raises grpc.RpcError (INVALID_ARGUMENT naming the field) for bad input.
        """
        request = pb.GenerateRequest(prompt=prompt, max_new_tokens=max_new_tokens, rule=rule, ignore_eos=ignore_eos,
                                     sampling=pb.SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p),
                                     rule_params=pb.RuleParams(**(rule_params or {})),
                                     gamma_controller=gamma_controller,
                                     controller_params=pb.ControllerParams(**(controller_params or {})),
                                     num_drafts=num_drafts)
        if gamma is not None:
            request.gamma = gamma
        if seed is not None:
            request.seed = seed
        if overlap is not None:
            request.overlap = overlap
        if speculation_lanes is not None:
            request.speculation_lanes = speculation_lanes
        self.last_stats = {}
        call = self._stub.Generate(request, timeout=self.timeout_s, metadata=self._metadata)
        try:
            for response in call:
                if response.HasField("delta"):
                    yield Delta(response.delta.text, list(response.delta.token_ids))
                else:
                    self.last_stats = stats = message_to_dict(response.stats)
                    yield Delta("", [], stats)
        finally:
            call.cancel()  # a caller that stops reading early cancels the request, freeing its sessions at once

    def generate(self, prompt: str, **kwargs) -> Completion:
        """Blocking generation: the whole completion and its stats. Takes the keyword arguments of `stream`."""
        completion = Completion()
        for delta in self.stream(prompt, **kwargs):
            completion.text += delta.text
            completion.token_ids += delta.token_ids
            completion.stats = delta.stats or completion.stats
        return completion

    def server_info(self) -> dict:
        return message_to_dict(self._stub.GetServerInfo(pb.GetInfoRequest(), timeout=self.timeout_s,
                                                        metadata=self._metadata))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
