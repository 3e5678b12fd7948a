"""Soak: 600 requests at 32 concurrent streams through the whole deployment on a local Ray cluster,
a mix of greedy, sampled, overlapped and cost-controlled requests, one in 25 cancelled by its client after
the first delta. No request may fail, both services must hold no session at the end, and the resident
memory of the services and the orchestrator must not grow by more than a few percent after warm-up."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import ray

from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client

REQUESTS = 600
WARMUP = 100  # requests before the first memory reading (caches, allocator pools and code paths warm up)
STREAMS = 32
MAX_RSS_GROWTH = 0.03  # the allocator is steadied (specdec.memory)
PROMPTS = [p.prompt[:240] for p in code_prompts(64, seed=21)]


def request_kwargs(index: int) -> dict:
    """The index-th request of the mix: cycles greedy / sampled / cost controller / overlapped."""
    common = {"max_new_tokens": 6 + index % 7, "ignore_eos": index % 3 == 0}
    kinds = [{"temperature": 0.0, "gamma": 4}, {"temperature": 1.0, "seed": index},
             {"temperature": 0.0, "gamma_controller": "cost"}, {"temperature": 0.8, "overlap": True}]
    return common | kinds[index % len(kinds)]


def run(client: Client, indices: range) -> tuple[int, int, list[str]]:
    """Run requests; return (completed, cancelled, errors)."""

    def one(index: int) -> str:
        try:
            deltas = client.stream(PROMPTS[index % len(PROMPTS)], **request_kwargs(index))
            if index % 25 == 24:  # the client walks away after the first delta
                next(deltas)
                deltas.close()
                return "cancelled"
            stats = [d.stats for d in deltas if d.stats][-1]
            return "completed" if stats["output_tokens"] > 0 else "empty output"
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, not raised in a thread
            return f"error: {exc!r}"

    with ThreadPoolExecutor(STREAMS) as pool:
        outcomes = list(pool.map(one, indices))
    errors = [o for o in outcomes if o not in ("completed", "cancelled")]
    return outcomes.count("completed"), outcomes.count("cancelled"), errors


def memory_and_sessions(deployment) -> dict:
    actors = {"orchestrator": deployment.orchestrator, "draft": deployment.drafts[0], "target": deployment.targets[0]}
    health = {name: ray.get(actor.health.remote()) for name, actor in actors.items()}
    return {name: (h["rss_bytes"], h.get("sessions", 0)) for name, h in health.items()}


def test_soak_six_hundred_requests(deployment):
    with Client(deployment.address, timeout_s=600) as client:
        started = time.perf_counter()
        completed, cancelled, errors = run(client, range(WARMUP))
        warm = memory_and_sessions(deployment)
        more_completed, more_cancelled, more_errors = run(client, range(WARMUP, REQUESTS))
        seconds = time.perf_counter() - started
    completed, cancelled, errors = completed + more_completed, cancelled + more_cancelled, errors + more_errors
    time.sleep(0.5)  # cancelled requests' sessions are ended as their streams wind down
    end = memory_and_sessions(deployment)
    print(f"\nsoak: {REQUESTS} requests at {STREAMS} streams in {seconds:.0f}s: {completed} completed, {cancelled} "
          f"cancelled by the client, {len(errors)} errors")
    for name in warm:
        (rss0, sessions0), (rss1, sessions1) = warm[name], end[name]
        print(f"  {name}: RSS after warm-up {rss0 / 2**20:.1f} MiB, at the end {rss1 / 2**20:.1f} MiB "
              f"({(rss1 - rss0) / rss0:+.1%}); sessions after warm-up {sessions0}, at the end {sessions1}")
    assert not errors, errors[:5]
    assert completed + cancelled == REQUESTS and cancelled == REQUESTS // 25
    assert end["draft"][1] == 0 and end["target"][1] == 0
    for name in warm:
        assert end[name][0] <= warm[name][0] * (1 + MAX_RSS_GROWTH), f"{name} memory grew: {warm[name]} -> {end[name]}"
