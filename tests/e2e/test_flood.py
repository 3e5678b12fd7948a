"""A flood: 256 streams at once through the OpenAI-compatible HTTP API of a whole deployment on the local Ray
cluster, four times the requests the orchestrator admits at once. The rest wait in its queue (which its
health and vLLM's num_requests_waiting gauge show), and nothing is lost: every request completes with
every token it asked for, and both services hold no session at the end."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import ray

from specdec.config import ServeConfig
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.openai_client import OpenAIClient
from specdec.orchestrator.serving.launch import deploy

STREAMS = 256
ADMITTED = 64  # limits.max_active_requests of this deployment
TOKENS = 8
PROMPTS = [p.prompt[:120] for p in code_prompts(32, seed=5)]


def test_a_flood_of_256_http_streams_waits_its_turn_and_loses_nothing(ray_cluster, tmp_path):
    config = ServeConfig().with_overrides(
        orchestrator={"port": 0, "name": "flood-test"}, http={"enabled": True, "port": 0},
        limits={"max_active_requests": ADMITTED, "max_waiting_requests": 1024},
        jobs={"journal_path": str(tmp_path / "jobs.sqlite")})
    deployment = deploy(config)
    try:
        client = OpenAIClient(ray.get(deployment.orchestrator.http_address.remote()), timeout_s=600)
        most_active = most_waiting = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal most_active, most_waiting
            while not done.is_set():
                health = ray.get(deployment.orchestrator.health.remote())
                most_active = max(most_active, health["active_requests"])
                most_waiting = max(most_waiting, health["waiting_requests"])
                time.sleep(0.05)

        def one(index: int) -> tuple[int, str]:
            try:
                tokens = sum(len(delta.token_ids) for delta in client.stream(
                    PROMPTS[index % len(PROMPTS)], max_new_tokens=TOKENS, temperature=index % 2, ignore_eos=True))
                return tokens, ""
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, not raised in a thread
                return 0, repr(exc)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(STREAMS) as pool:
                outcomes = list(pool.map(one, range(STREAMS)))
        finally:
            done.set()
            watcher.join()
        errors = [error for _, error in outcomes if error]
        assert not errors, errors[:5]
        assert [tokens for tokens, _ in outcomes] == [TOKENS] * STREAMS
        assert 0 < most_waiting and most_active <= ADMITTED  # past its limit it queued, and refused none
        time.sleep(0.5)  # the sessions of the last requests end as their streams wind down
        for service in (*deployment.drafts, *deployment.targets):
            assert ray.get(service.health.remote())["sessions"] == 0
        with urllib.request.urlopen(client.base_url + "/metrics", timeout=30) as response:
            assert "vllm:num_requests_waiting" in response.read().decode()
    finally:
        deployment.stop()
