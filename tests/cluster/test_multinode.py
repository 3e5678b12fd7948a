"""Multi-node placement on a real two-node Ray cluster (`ray start` head + worker): STRICT_SPREAD puts
the draft and the target on different nodes and PACK on one; generation works across nodes; `specdec
serve --address auto`, `specdec status`, `specdec loadtest` with Ray load generators, and the
orchestrator's metrics on Ray's Prometheus endpoint, all against that cluster."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import yaml

from specdec.config import ServeConfig
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.serving.launch import deploy
from tests.cluster.conftest import ENV
from tests.helpers import TargetOracle

SPECDEC = [sys.executable, "-m", "specdec.orchestrator.cli"]
PROMPTS = [p.prompt for p in code_prompts(2, seed=5)]


def placed(strategy: str, name: str) -> ServeConfig:
    return ServeConfig.from_dict({"placement": {"strategy": strategy, "resources": {"accel": 1}},
                                  "orchestrator": {"port": 0, "name": name}})


@pytest.mark.parametrize("strategy, same_node", [("STRICT_SPREAD", False), ("PACK", True)])
def test_placement_strategy_decides_the_nodes(two_nodes, strategy, same_node, tmp_path):
    config = placed(strategy, f"placement-{strategy.lower()}")
    deadline = time.monotonic() + 60  # an earlier test's placement group is freed asynchronously
    while ray.available_resources().get("accel", 0) < 4:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.5)
    deployment = deploy(config)
    try:
        draft, target = ray.get([deployment.drafts[0].health.remote(), deployment.targets[0].health.remote()])
        assert (draft["node_id"] == target["node_id"]) == same_node, (draft, target)
        oracle = TargetOracle()
        with Client(deployment.address, timeout_s=300) as client:
            for prompt in PROMPTS:
                out = client.generate(prompt, max_new_tokens=16, temperature=0.0, gamma=3, ignore_eos=True)
                assert out.token_ids == oracle.hf_generate(prompt, 16)
        config_file = tmp_path / "serve.yaml"
        config_file.write_text(yaml.safe_dump({"orchestrator": {"name": config.orchestrator.name}}))
        status = subprocess.run([*SPECDEC, "status", "--address", two_nodes["address"], "--config", str(config_file),
                                 "--json"], capture_output=True, text=True, timeout=120, env=ENV)
        assert status.returncode == 0, status.stderr[-2000:]
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        name = config.orchestrator.name
        assert set(rows) == {name, f"{name}-draft-0", f"{name}-target-0"}
        assert all(row["state"] == "ALIVE" and row["serving"] for row in rows.values())
        assert rows[f"{name}-draft-0"]["node_id"] == draft["node_id"]
    finally:
        deployment.stop()


def scrape(ports: list[int]) -> str:
    text = ""
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text += response.read().decode()
        except OSError:
            continue
    return text


def test_serve_auto_loadtest_over_ray_generators_and_metrics(two_nodes, tmp_path):
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump({"placement": {"strategy": "STRICT_SPREAD", "host": "0.0.0.0"},
                                           "orchestrator": {"port": 0, "name": "detached-test"}}))
    env = ENV | {"RAY_ADDRESS": two_nodes["address"]}
    serve = subprocess.run([*SPECDEC, "serve", "--address", "auto", "--detach", "--config", str(config_file)],
                           capture_output=True, text=True, timeout=600, env=env)
    assert serve.returncode == 0, serve.stderr[-3000:]
    address = serve.stdout.strip().splitlines()[-1].split()[-1]
    try:
        out_dir = tmp_path / "report"
        loadtest = subprocess.run(
            [*SPECDEC, "loadtest", "--address", address, "--concurrency", "1", "4", "--num-requests", "4",
             "--output-tokens", "12", "--gamma", "3", "--compare-target-only", "--ray-generators", "2",
             "--ray-address", "auto",
             "--slo", "ttft=60", "--out", str(out_dir)], capture_output=True, text=True, timeout=600, env=env)
        assert loadtest.returncode == 0, loadtest.stderr[-3000:]
        rows = json.loads((out_dir / "loadtest.json").read_text())["rows"]
        assert [(r["mode"], r["load"]) for r in rows] == [
            ("speculative", "1 streams"), ("target-only", "1 streams"),
            ("speculative", "4 streams"), ("target-only", "4 streams")]
        for row in rows:
            assert row["completed"] == 4 and row["output_tokens"] == 48 and not row["failures"]
            assert row["ttft_s"]["p99"] >= row["ttft_s"]["median"] > 0 and row["goodput_requests_per_s"] > 0
        assert rows[0]["acceptance_rate"] > 0 and rows[1]["acceptance_rate"] == 0
        for name in ("loadtest.csv", "latency.png", "throughput.png"):
            assert (out_dir / name).stat().st_size > 0
        metrics = ("specdec_num_draft_tokens", "specdec_num_accepted_tokens", "specdec_num_drafts",
                   "specdec_num_accepted_tokens_per_pos", "specdec_gamma", "specdec_verify_latency_seconds",
                   "specdec_draft_latency_seconds", "specdec_rpc_latency_seconds",
                   "specdec_time_to_first_token_seconds", "specdec_time_per_output_token_seconds")
        deadline, text = time.monotonic() + 120, ""
        while not all(metric in text for metric in metrics) and time.monotonic() < deadline:
            time.sleep(3)  # Ray exports each metric on an interval of its own
            text = scrape(two_nodes["metrics_ports"])
        for metric in metrics:
            assert metric in text, f"{metric} is not on Ray's metrics endpoint"
        dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:  # the Grafana dashboard queries series that really exist
            for target in panel["targets"]:
                for series in re.findall(r"ray_(?:specdec|vllm)_\w+", target["expr"]):
                    assert f"{series}{{" in text or f"{series} " in text, f"{panel['title']}: no series {series}"
    finally:
        stop = subprocess.run([*SPECDEC, "stop", "--address", "auto", "--config", str(config_file)],
                              capture_output=True, text=True, timeout=120, env=env)
    assert stop.returncode == 0 and "detached-test-draft-0" in stop.stdout, stop.stderr[-2000:]
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("detached-test")]
