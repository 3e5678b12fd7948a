"""The Python client of the orchestrator: blocking and streaming generation, and batch jobs, over gRPC.

    from specdec.orchestrator.client import Client
    with Client("127.0.0.1:50051") as client:
        print(client.generate("def fib(n):", max_new_tokens=64).text)
        for delta in client.stream("import os", temperature=0.8):
            print(delta.text, end="")
        job_id = client.submit(["def add(a, b):", {"prompt": "import re", "temperature": 0}], name="demo")
        client.wait(job_id)
        for result in client.results(job_id):
            print(result["index"], result.get("completion"))
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from specdec.errors import InvalidField
from specdec.net.rpc import RpcLimits
from specdec.net.security import TlsFiles
from specdec.orchestrator.jobs.inputs import request_from_dict
from specdec.renamed import REQUEST_FIELDS as RENAMED_REQUEST_FIELDS
from specdec.renamed import current_names
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


FINISHED_STATES = ("succeeded", "failed", "cancelled")


def result_to_dict(result: pb.JobResult) -> dict:
    """A job item's outcome as one JSONL record: index, prompt, then completion, token_ids and stats, or
    (for a failed item) error {code, message}."""
    record = {"index": result.index, "prompt": result.prompt}
    if result.HasField("error"):
        return record | {"error": {"code": result.error.code, "message": result.error.message}}
    return record | {"completion": result.completion, "token_ids": list(result.token_ids),
                     "stats": message_to_dict(result.stats)}


def job_request(item: str | dict | pb.GenerateRequest, index: int) -> pb.GenerateRequest:
    """A prompt, a dict of GenerateRequest fields (the JSONL line format) or a message. Raises InvalidField
    naming `requests[index].field`."""
    if isinstance(item, pb.GenerateRequest):
        return item
    try:
        return request_from_dict({"prompt": item} if isinstance(item, str) else item)
    except InvalidField as exc:
        raise exc.within(f"requests[{index}]") from exc


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
               controller_params: dict | None = None, num_draft_sequences: int = 0,
               overlap: bool | None = None, speculation_lanes: int | None = None,
               **renamed: Any) -> Iterator[Delta]:
        """Yield text deltas as they are committed, then one empty delta carrying the request's stats
        (also kept in `last_stats`, which concurrent streams on one client overwrite). Closing the
        iterator early (a `break`) cancels the request.

        max_new_tokens 0, rule "" and gamma_controller "" mean the server defaults; gamma None the server
        default, 0 target-only; num_draft_sequences is M draft sequences per round (0 or 1: one); overlap None is
        the server default, True drafts the next window while the target verifies; speculation_lanes
        (None: server default) is how many rejection outcomes overlapped mode also pre-drafts for. rule_params
        (threshold, divergence, divergence_top_k, divergence_on_warped, epsilon, delta) and
        controller_params (gamma_max, gamma_min, eta, delta, confidence_threshold, smoothing, probe_every)
        are dicts of the RuleParams / ControllerParams fields.
        Raises grpc.RpcError (INVALID_ARGUMENT naming the field) for bad input. `renamed`: deprecated spellings
        of these arguments (num_drafts), with a FutureWarning; any other keyword is a TypeError.
        """
        if renamed:
            given = renamed | ({"num_draft_sequences": num_draft_sequences} if num_draft_sequences else {})
            current = current_names(given, RENAMED_REQUEST_FIELDS)
            unknown = sorted(set(current) - {"num_draft_sequences"})
            if unknown:
                raise TypeError(f"stream() got an unexpected keyword argument {unknown[0]!r}")
            num_draft_sequences = current["num_draft_sequences"]
        request = pb.GenerateRequest(prompt=prompt, max_new_tokens=max_new_tokens, rule=rule, ignore_eos=ignore_eos,
                                     sampling=pb.SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p),
                                     rule_params=pb.RuleParams(**(rule_params or {})),
                                     gamma_controller=gamma_controller,
                                     controller_params=pb.ControllerParams(**(controller_params or {})),
                                     num_draft_sequences=num_draft_sequences)
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

    def submit(self, requests: Iterable[str | dict | pb.GenerateRequest], name: str = "") -> str:
        """Submit a batch job; return its id. Each request is a prompt, a dict of GenerateRequest fields by
        proto name (as in a `specdec submit` JSONL line: {"prompt": ..., "temperature": 0, "max_new_tokens":
        16, ...}) or a GenerateRequest. Items without a seed get one at submit, so a rerun after a restart
        of the orchestrator gives the same output. Raises InvalidField (here) or grpc.RpcError
        (INVALID_ARGUMENT naming `requests[i].field`) for bad input."""
        message = pb.SubmitJobRequest(requests=[job_request(item, i) for i, item in enumerate(requests)], name=name)
        return self._stub.SubmitJob(message, timeout=self.timeout_s, metadata=self._metadata).job_id

    def jobs(self) -> list[dict]:
        """Every job on the orchestrator, oldest first: job_id, name, state, total, done, failed, created_at,
        finished_at (see `job`)."""
        response = self._stub.ListJobs(pb.ListJobsRequest(), timeout=self.timeout_s, metadata=self._metadata)
        return [message_to_dict(status) for status in response.jobs]

    def job(self, job_id: str) -> dict:
        """A job's status: state (queued, running, succeeded, failed: finished with some items failed, or
        cancelled), total items, done (with a completion), failed, created_at and finished_at (Unix time, 0
        while unfinished). Raises grpc.RpcError NOT_FOUND for an unknown id."""
        return message_to_dict(self._stub.GetJob(pb.JobRequest(job_id=job_id), timeout=self.timeout_s,
                                                 metadata=self._metadata))

    def results(self, job_id: str) -> Iterator[dict]:
        """The finished items so far, by index (see `result_to_dict`); all of them once the job finished."""
        for result in self._stub.GetJobResults(pb.JobRequest(job_id=job_id), timeout=self.timeout_s,
                                               metadata=self._metadata):
            yield result_to_dict(result)

    def cancel(self, job_id: str) -> dict:
        """Cancel a job's unfinished items (results so far are kept); return its status."""
        return message_to_dict(self._stub.CancelJob(pb.JobRequest(job_id=job_id), timeout=self.timeout_s,
                                                    metadata=self._metadata))

    def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> dict:
        """Poll until the job has finished; return its status. Raises TimeoutError after timeout_s."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (status := self.job(job_id))["state"] not in FINISHED_STATES:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout_s}s "
                                   f"({status['done'] + status['failed']}/{status['total']} items finished)")
            time.sleep(poll_s)
        return status

    def server_info(self) -> dict:
        return message_to_dict(self._stub.GetServerInfo(pb.GetInfoRequest(), timeout=self.timeout_s,
                                                        metadata=self._metadata))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
