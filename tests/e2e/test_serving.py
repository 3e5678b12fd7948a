"""End to end on a local Ray cluster: greedy speculative output equals target-only output through the
system and the target's own generate(), token for token; concurrency, seeds, bad input, placement."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import ray

from specdec.config import ServeConfig
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.serving.launch import find_orchestrator
from tests.helpers import TargetOracle

PROMPTS = [p.prompt for p in code_prompts(4, seed=3)]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def client(deployment):
    with Client(deployment.address, timeout_s=300) as c:
        yield c


def test_greedy_speculative_equals_target_only_and_generate(client: Client, oracle: TargetOracle):
    for prompt in PROMPTS:
        reference = oracle.hf_generate(prompt, NEW_TOKENS)
        for gamma in (0, 1, 3, 6):
            out = client.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0, gamma=gamma, ignore_eos=True)
            assert out.token_ids == reference, f"gamma={gamma} diverged from the target for prompt {prompt[:40]!r}"


def test_many_requests_in_flight_each_with_own_sessions(client: Client, deployment):
    def greedy(prompt: str) -> list[int]:
        return client.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.0, gamma=3,
                               ignore_eos=True).token_ids

    def sampled(seed: int) -> list[int]:
        return client.generate(PROMPTS[0], max_new_tokens=NEW_TOKENS, temperature=1.0, gamma=3, seed=seed,
                               ignore_eos=True).token_ids

    sequential = [greedy(p) for p in PROMPTS] + [sampled(s) for s in range(4)]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(greedy, PROMPTS)) + list(pool.map(sampled, range(4)))
    assert concurrent == sequential
    health = ray.get([actor.health.remote() for actor in (*deployment.drafts, *deployment.targets)])
    assert [h["sessions"] for h in health] == [0, 0]


def test_sampled_generation_reports_acceptance(client: Client):
    out = client.generate(PROMPTS[1], max_new_tokens=NEW_TOKENS, temperature=1.0, gamma=4, seed=1, ignore_eos=True)
    stats = out.stats
    assert stats["output_tokens"] == NEW_TOKENS and stats["rule"] == "sd"
    assert 0 <= stats["acceptance_rate"] <= 1 and stats["num_drafts"] > 0
    assert sum(stats["num_accepted_tokens_per_pos"]) == stats["num_accepted_tokens"]


def test_bad_input_through_the_system(client: Client):
    with pytest.raises(grpc.RpcError) as info:
        client.generate("def f():", gamma=-3)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gamma" in info.value.details()
    assert client.generate("def f():", max_new_tokens=3, ignore_eos=True).stats["output_tokens"] == 3


def test_orchestrator_is_a_named_actor_with_placement(deployment):
    handle = find_orchestrator(ServeConfig())
    assert ray.get(handle.health.remote())["serving"]
    assert deployment.layout.name == "cpu" and not deployment.layout.uses_gpus  # no GPU here: CPUs each


def test_bench_writes_its_report(deployment, tmp_path):
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "specdec.orchestrator.cli", "bench", "--address", deployment.address, "--prompts", "2",
         "--max-new-tokens", "8", "--gammas", "1", "3", "--gamma", "3", "--controllers", "cost", "--divergences", "tv",
         "--thresholds", "0.3", "--epsilons", "0.1", "--num-draft-sequences", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    labels = [row["label"] for row in report["rows"]]
    assert labels == ["target-only", "sd gamma=1", "sd gamma=3", "sd gamma=3 overlapped",
                      "sd gamma=3 overlapped, 2 lanes", "sd cost", "fsd tv T=0.3",
                      "opt eps=0.1",
                      "uno eps=0.1", "typical", "sd M=2"]
    assert all(row["output_tokens"] == 16 for row in report["rows"])
    assert report["rows"][0]["speedup"] == 1.0 and report["findings"]["best_fixed"].startswith("sd gamma=")
    for name in ("bench.csv", "speed_quality.png", "controllers.png", "gamma_trace.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_load_bench_reports_every_mode_at_every_load(deployment, tmp_path):
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "specdec.orchestrator.cli", "bench", "--address", deployment.address, "--concurrency",
         "1", "3", "--requests-per-stream", "1", "--min-requests", "2", "--max-new-tokens", "8", "--gamma", "3",
         "--speculation-lanes", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "load.json").read_text())["rows"]
    modes = ["target-only", "default config", "serial gamma=3", "overlapped gamma=3, 1 lanes", "cost"]
    assert [(r["mode"], r["concurrency"]) for r in rows] == [(m, c) for c in (1, 3) for m in modes]
    assert [r["requests"] for r in rows] == [2] * 5 + [3] * 5  # light loads get more requests a stream
    assert all(r["tokens"] == 8 * r["requests"] and r["tokens_per_second"] > 0 for r in rows)
    speculative = [r for r in rows if r["mode"] not in ("target-only", "default config", "cost")]
    assert all(0 < r["efficiency"] and r["rounds"] > 0 for r in speculative)  # (the adaptive ones may not draft)
    assert all(r["pre_drafted"] == 0 for r in rows if r["mode"].startswith("serial"))
    for name in ("load.png", "load.csv", "tradeoff.png"):
        assert (tmp_path / name).stat().st_size > 0
    governor = ray.get(deployment.orchestrator.health.remote())["governor"]
    assert governor["arm"] in ("speculate", "target-only") and governor["tokens_per_second"]  # it measured


def test_two_targets_share_one_draft_and_split_the_load(ray_cluster, oracle: TargetOracle):
    from specdec.orchestrator.serving.launch import deploy

    config = ServeConfig.from_dict({"placement": {"draft_replicas": 1, "target_replicas": 2},
                                    "orchestrator": {"port": 0, "name": "replica-test"}})
    dep = deploy(config)
    try:
        assert len(dep.drafts) == 1 and len(dep.targets) == 2
        with Client(dep.address, timeout_s=300) as replica_client, ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(lambda p: replica_client.generate(p, max_new_tokens=16, temperature=0.0, gamma=3,
                                                                      ignore_eos=True).token_ids, PROMPTS))
        assert outputs == [oracle.hf_generate(p, 16) for p in PROMPTS]
        served = [h["batches"] for h in ray.get([t.health.remote() for t in dep.targets])]
        assert all(count > 0 for count in served), served  # the least-loaded routing used both targets
    finally:
        dep.stop()
