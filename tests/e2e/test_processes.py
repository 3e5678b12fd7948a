"""The deployment as plain processes, with Ray made unimportable in them: `specdec serve --launcher
processes` starts `specdec service draft`, `specdec service target` and `specdec orchestrator` as children;
greedy output through them equals the target's own, the HTTP API answers, and SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from specdec.config import ServeConfig
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.serving.processes import ChildFailed, deploy_processes
from tests.helpers import TargetOracle

PROMPT = "def fibonacci(n):\n"
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def without_ray(tmp_path_factory) -> dict:
    """An environment in which `import ray` fails: what the children of these tests run in."""
    folder = tmp_path_factory.mktemp("noray")
    (folder / "ray.py").write_text("raise ImportError('ray is not installed here (a test without Ray)')\n")
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def served(without_ray, tmp_path_factory):
    """`specdec serve --launcher processes`, its gRPC and HTTP addresses, and its children's pids."""
    journal = tmp_path_factory.mktemp("jobs") / "jobs.sqlite"
    config = tmp_path_factory.mktemp("config") / "serve.yaml"
    config.write_text(f"jobs:\n  journal_path: {journal}\n")
    serve = subprocess.Popen([sys.executable, "-m", "specdec.orchestrator.cli", "serve", "--launcher", "processes",
                              "--config", str(config), "--port", "0", "--http-port", "0"],
                             env=without_ray, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in serve.stdout:
        lines.append(line.rstrip())
        if line.startswith("orchestrator listening on ") or line.startswith("serving"):
            break
    address = next((line.split()[-1] for line in lines if line.startswith("orchestrator listening on ")), None)
    if address is None:
        serve.kill()
        pytest.fail(f"serve did not start: {lines} {serve.stderr.read()[-3000:]}")
    http = next(re.search(r"(https?://\S+)/v1", line).group(1) for line in lines
                if line.startswith("OpenAI-compatible"))
    yield {"process": serve, "address": address, "http": http, "lines": lines}
    if serve.poll() is None:
        serve.kill()


def test_serve_with_processes_prints_the_layout_and_every_address(served):
    text = "\n".join(served["lines"])
    assert "layout: cpu" in text
    assert "draft  service at 127.0.0.1:" in text and "target service at 127.0.0.1:" in text


def test_greedy_output_through_plain_processes_equals_the_target(served):
    reference = TargetOracle().hf_generate(PROMPT, NEW_TOKENS)
    with Client(served["address"], timeout_s=120) as client:
        for gamma in (0, 3):
            out = client.generate(PROMPT, max_new_tokens=NEW_TOKENS, temperature=0.0, gamma=gamma, ignore_eos=True)
            assert out.token_ids == reference, f"gamma={gamma}"


def test_the_http_api_of_a_plain_process_orchestrator(served):
    body = json.dumps({"model": "demo:target", "prompt": PROMPT, "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(served["http"] + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["usage"]["completion_tokens"] == 4
    with urllib.request.urlopen(served["http"] + "/metrics", timeout=30) as response:
        assert b"specdec_num_draft_tokens" in response.read()


def test_sigterm_stops_serve_and_its_children(served):
    serve = served["process"]
    children = subprocess.run(["pgrep", "-P", str(serve.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 3  # draft, target, orchestrator
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(60) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_service_that_cannot_start_is_reported_with_its_log(tmp_path):
    config = ServeConfig.from_dict({"draft": {"model": str(tmp_path / "no-such-model")}})
    with pytest.raises(ChildFailed, match=r"(?s)specdec service draft.*exited.*no-such-model"):
        deploy_processes(config, machine_gpus=0)


def test_an_orchestrator_without_its_services_says_so_and_exits(without_ray):
    out = subprocess.run([sys.executable, "-m", "specdec.orchestrator.cli", "orchestrator", "--draft", "127.0.0.1:9",
                          "--target", "127.0.0.1:9", "--port", "0"], env=without_ray, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "specdec orchestrator: 127.0.0.1:9: GetInfo: UNAVAILABLE" in out.stderr and "Traceback" not in out.stderr


def test_a_service_that_dies_while_serving_is_reported_and_its_log_kept(tmp_path):
    deployment = deploy_processes(ServeConfig.from_dict({"orchestrator": {"port": 0},
                                                         "jobs": {"journal_path": str(tmp_path / "j.sqlite")}}),
                                  machine_gpus=0)
    try:
        assert deployment.exited() == []
        draft = deployment.children[0]
        draft.process.kill()
        draft.process.wait(30)
        assert deployment.exited() == [f"`specdec service draft` exited with -9; its log: {draft.log}"]
        assert deployment.exited() == []  # once
        with Client(deployment.address, timeout_s=120) as client:  # the orchestrator goes on, target-only
            assert len(client.generate(PROMPT, max_new_tokens=4, temperature=0.0, ignore_eos=True).token_ids) == 4
    finally:
        deployment.stop()
    assert draft.log.exists()  # kept: it says why the service ended
