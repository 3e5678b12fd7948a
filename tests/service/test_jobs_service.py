"""Batch jobs over real gRPC with the real services (no Ray): items run through the same path as online
requests, so a seeded item gives exactly what the same streaming request gives."""

from __future__ import annotations

import grpc
import pytest

from specdec.orchestrator.client import Client
from tests.helpers import TargetOracle

PROMPT = "def fib(n):\n"


@pytest.fixture(scope="module")
def client(servers):
    with Client(servers["orchestrator"], timeout_s=120) as c:
        yield c


def test_job_items_equal_online_requests(client: Client, oracle: TargetOracle):
    sampled = {"prompt": PROMPT, "temperature": 1.0, "top_p": 0.9, "seed": 3, "max_new_tokens": 12,
               "ignore_eos": True}
    job_id = client.submit([sampled, {"prompt": PROMPT, "temperature": 0, "max_new_tokens": 12, "ignore_eos": True}],
                           name="service")
    status = client.wait(job_id, timeout_s=120, poll_s=0.2)
    assert (status["state"], status["done"], status["total"], status["name"]) == ("succeeded", 2, 2, "service")
    assert status["finished_at"] >= status["created_at"] > 0
    first, second = client.results(job_id)
    online = client.generate(PROMPT, temperature=1.0, top_p=0.9, seed=3, max_new_tokens=12, ignore_eos=True)
    assert (first["completion"], first["token_ids"]) == (online.text, online.token_ids)
    assert second["token_ids"] == oracle.hf_generate(PROMPT, 12)
    assert job_id in [job["job_id"] for job in client.jobs()]
    assert client.cancel(job_id)["state"] == "succeeded"  # a finished job keeps its state


def test_an_invalid_item_is_refused_at_submit(client: Client):
    with pytest.raises(grpc.RpcError) as info:
        client.submit(["def f():", {"prompt": "x", "gamma": 99}])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("requests[1].gamma: must be in [0, 32]")
    with pytest.raises(grpc.RpcError) as info:
        list(client.results("job-unknown"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "job-unknown" in info.value.details()
