"""Chaos on a local Ray cluster: while 32 greedy generations run, kill the draft's process, then, while it is
still down, the target's. Ray restarts both (max_restarts); the
orchestrator goes target-only while the draft is down, waits for the target and re-prefills it. Every
request must complete with exactly the tokens of a fault-free run, serial and overlapped with speculation
lanes alike (a lanes' call cut by the kill is dropped, a session adopting a lane is fed again)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray

from specdec.config import ServeConfig
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.serving.launch import deploy

STREAMS = 32
NEW_TOKENS = 96
PROMPTS = [p.prompt for p in code_prompts(STREAMS, seed=11)]


@pytest.fixture(scope="module")
def chaos_deployment(ray_cluster):
    config = ServeConfig().with_overrides(orchestrator={"port": 0, "name": "specdec-chaos"},
                                          limits={"rpc_timeout_s": 10.0})
    dep = deploy(config)
    yield dep
    dep.stop()


class Progress:
    """Tokens streamed so far and requests finished, over every stream."""

    def __init__(self):
        self.tokens = self.finished = 0
        self._lock = threading.Lock()

    def add(self, tokens: int = 0, finished: int = 0) -> None:
        with self._lock:
            self.tokens += tokens
            self.finished += finished


MODES = {"serial": {"overlap": False}, "overlapped": {"overlap": True, "speculation_lanes": 8}}


def run_all(address: str, progress: Progress, mode: dict) -> list[tuple[list[int], dict]]:
    def one(prompt: str) -> tuple[list[int], dict]:
        tokens, stats = [], {}
        with Client(address, timeout_s=600) as client:
            for delta in client.stream(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0, gamma=4,
                                       ignore_eos=True, **mode):
                tokens += delta.token_ids
                stats = delta.stats or stats
                progress.add(tokens=len(delta.token_ids))
        progress.add(finished=1)
        return tokens, stats

    with ThreadPoolExecutor(STREAMS) as pool:
        return list(pool.map(one, PROMPTS))


def wait_for(condition, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def services_back(orchestrator, recoveries: int) -> bool:
    """Every service available again, after at least `recoveries` recoveries in all."""
    faults = ray.get(orchestrator.health.remote())["faults"]
    return all(f["available"] for f in faults.values()) and sum(f["recoveries"] for f in faults.values()) >= recoveries


@pytest.mark.parametrize("mode", MODES)
def test_killing_draft_then_target_loses_no_request_and_changes_no_token(chaos_deployment, mode):
    dep = chaos_deployment
    started = time.perf_counter()
    reference = run_all(dep.address, Progress(), MODES[mode])
    fault_free_s = time.perf_counter() - started
    total = STREAMS * NEW_TOKENS
    assert [len(tokens) for tokens, _ in reference] == [NEW_TOKENS] * STREAMS

    progress, results = Progress(), {}
    started = time.perf_counter()
    runner = threading.Thread(target=lambda: results.update(out=run_all(dep.address, progress, MODES[mode])))
    runner.start()
    pids = {}
    recovered = sum(f["recoveries"] for f in ray.get(dep.orchestrator.health.remote())["faults"].values())
    # The target is killed while the draft is still down (a restart can outlast the whole run on a slow machine,
    # and a target killed after the last request would never be noticed); the rounds between the kills are
    # target-only.
    for kind, handle, share in (("draft", dep.drafts[0], 0.15), ("target", dep.targets[0], 0.25)):
        wait_for(lambda share=share: progress.tokens >= total * share, f"progress before killing the {kind}")
        pids[kind] = ray.get(handle.health.remote())["pid"]
        in_flight = STREAMS - progress.finished
        os.kill(pids[kind], signal.SIGKILL)
        print(f"\nkilled the {kind} (pid {pids[kind]}) with {in_flight} requests in flight, {progress.tokens}/{total} "
              f"tokens streamed, {time.perf_counter() - started:.1f}s into the run")
        assert in_flight > 0
    wait_for(lambda: services_back(dep.orchestrator, recovered + 2), "the draft and the target back")
    print(f"both back after {time.perf_counter() - started:.1f}s of the run")
    runner.join(timeout=600)
    chaos_s = time.perf_counter() - started

    out = results["out"]
    assert len(out) == STREAMS  # every request completed (a failed one would have raised in its thread)
    mismatched = [i for i, ((tokens, _), (expected, _)) in enumerate(zip(out, reference, strict=True))
                  if tokens != expected]
    assert not mismatched, f"requests {mismatched} differ from the fault-free run"
    for kind, handle in (("draft", dep.drafts[0]), ("target", dep.targets[0])):
        assert ray.get(handle.health.remote())["pid"] != pids[kind]  # a new process: Ray restarted it
    sums = {key: sum(stats[key] for _, stats in out)
            for key in ("num_draft_faults", "num_target_faults", "num_target_only_rounds", "num_rounds",
                        "num_pre_drafted")}
    print(f"{mode}: fault-free run {fault_free_s:.1f}s, run with kills {chaos_s:.1f}s; {STREAMS}/{STREAMS} completed, "
          f"{STREAMS - len(mismatched)}/{STREAMS} equal to the fault-free run; {sums}")
    assert sums["num_draft_faults"] > 0 and sums["num_target_faults"] > 0 and sums["num_target_only_rounds"] > 0
    assert (sums["num_pre_drafted"] > 0) == (mode == "overlapped")


@pytest.mark.parametrize("mode", MODES)
def test_a_hung_target_is_detected_restarted_and_requests_finish(chaos_deployment, mode):
    """SIGSTOP leaves the target's process alive and listening but answering nothing: calls pass their
    deadline, the probe finds it hung, the orchestrator has Ray restart it, and the requests go on."""
    dep = chaos_deployment
    prompts = PROMPTS[:4]
    with Client(dep.address, timeout_s=600) as client:
        reference = [client.generate(p, max_new_tokens=24, temperature=0.0, ignore_eos=True,
                                     **MODES[mode]).token_ids for p in prompts]
        before = ray.get(dep.orchestrator.health.remote())["faults"]
        pid = ray.get(dep.targets[0].health.remote())["pid"]
        os.kill(pid, signal.SIGSTOP)
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(len(prompts)) as pool:
                out = list(pool.map(lambda p: client.generate(p, max_new_tokens=24, temperature=0.0,
                                                              ignore_eos=True, **MODES[mode]), prompts))
        finally:
            try:
                os.kill(pid, signal.SIGCONT)  # if it was not restarted, let it go on
            except ProcessLookupError:
                pass
    assert [o.token_ids for o in out] == reference
    after = ray.get(dep.orchestrator.health.remote())["faults"]
    assert sum(f["restarts"] for f in after.values()) == sum(f["restarts"] for f in before.values()) + 1
    assert ray.get(dep.targets[0].health.remote())["pid"] != pid
    print(f"\nhung target (pid {pid}, SIGSTOP) detected and restarted; 4/4 requests finished equal to the "
          f"fault-free output after {time.perf_counter() - started:.1f}s")
