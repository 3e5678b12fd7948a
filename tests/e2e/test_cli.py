"""`specdec serve` (with the HTTP API and vLLM's speculative config) and `specdec generate` as a user runs
them, and start-up refusing a mismatched pair."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import yaml

from specdec.config import ServeConfig, resolve_model
from specdec.demo_pair.train import DRAFT_SHAPE, build_model, train_tokenizer
from specdec.orchestrator.serving.launch import deploy

SPECDEC = [sys.executable, "-m", "specdec.orchestrator.cli"]


def test_serve_then_generate(tmp_path: Path):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"orchestrator": {"port": 0, "name": "cli-test-orchestrator"},
                                      "jobs": {"journal_path": str(tmp_path / "jobs.sqlite")}}))
    serve = subprocess.Popen([*SPECDEC, "serve", "--config", str(config), "--http-port", "0",
                              "--speculative-config", '{"method": "draft_model", "num_speculative_tokens": 3}'],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=os.environ | {"RAY_ADDRESS": ""})
    try:
        address, http_url, lines, deadline = None, None, [], time.time() + 300
        while address is None and time.time() < deadline:
            line = serve.stdout.readline()
            if not line and serve.poll() is not None:
                break
            lines.append(line)
            if match := re.search(r"OpenAI-compatible HTTP API at (\S+) ", line):
                http_url = match.group(1)
            if match := re.search(r"orchestrator listening on (\S+)", line):
                address = match.group(1)
        assert address and http_url, "serve never printed its addresses:\n" + "".join(lines)
        request = urllib.request.Request(f"{http_url}/completions", json.dumps(
            {"model": "demo:target", "prompt": "def add(a, b):", "max_tokens": 12, "temperature": 0,
             "ignore_eos": True}).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            completion = json.loads(response.read())
        assert completion["usage"]["completion_tokens"] == 12
        assert completion["spec_decode_stats"]["gamma"] == 3  # num_speculative_tokens became defaults.gamma
        result = subprocess.run([*SPECDEC, "generate", "def add(a, b):", "--address", address, "--temperature", "0",
                                 "--max-new-tokens", "12", "--ignore-eos", "--stats"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "output_tokens: 12" in result.stderr and "rule: greedy" in result.stderr
        bad = subprocess.run([*SPECDEC, "generate", "x", "--address", address, "--top-p", "7"],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and "INVALID_ARGUMENT: sampling.top_p" in bad.stderr
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()


def test_help_describes_every_subcommand():
    import argparse

    from specdec.orchestrator.cli.main import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subcommands.choices) >= {"serve", "generate", "demo", "bench", "loadtest", "status", "stop", "certs",
                                        "submit", "jobs", "results", "cancel"}
    for name, sub in subcommands.choices.items():
        assert sub.description, f"specdec {name} has no description"
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and action.help.strip(), f"specdec {name} {action.option_strings} has no help"
    for command in ([], ["serve"], ["generate"], ["demo"], ["bench"], ["loadtest"], ["status"], ["stop"], ["certs"],
                    ["submit"], ["jobs"], ["results"], ["cancel"]):
        result = subprocess.run([*SPECDEC, *command, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage: specdec" in result.stdout


@pytest.fixture
def foreign_draft(tmp_path: Path) -> Path:
    """A draft-sized model with a tokenizer of its own: a pair that must be refused."""
    texts = ["def f(x):\n    return x + 1\n" * 20, "import os\nprint(os.getcwd())\n" * 20]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    build_model(DRAFT_SHAPE, tokenizer, context=128).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_mismatched_tokenizers_are_refused_at_start(ray_cluster, foreign_draft: Path):
    config = ServeConfig.from_dict({"draft": {"model": str(foreign_draft)}, "target": {"model": "demo:target"},
                                    "orchestrator": {"port": 0, "name": "mismatch-test"}})
    with pytest.raises(Exception, match="tokenizers do not match") as info:
        deploy(config)
    assert resolve_model("demo:target") in str(info.value)
    deadline = time.time() + 60  # the refused start gives its placement group back (asynchronously)
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) >= 2


def test_demo_runs_end_to_end():
    result = subprocess.run([*SPECDEC, "demo", "--prompts", "2", "--max-new-tokens", "12"], capture_output=True,
                            text=True, timeout=600, env=os.environ | {"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    for expected in ("greedy target-only", "greedy speculative", "T=1 target-only", "T=1 speculative",
                     "measured c =", "greedy speculative output identical to target-only output: yes",
                     "against Hugging Face assisted generation", "HF assisted (best)", "(a feature head)",
                     "assisted generation runs with"):
        assert expected in result.stdout
