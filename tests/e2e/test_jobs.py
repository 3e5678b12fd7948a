"""Batch jobs on a local Ray cluster: a job survives the orchestrator being killed mid-job (every item
finishes exactly once, with the target's own greedy output), and the job commands of the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import ray

from specdec.config import ServeConfig
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.serving.launch import deploy, find_orchestrator
from tests.helpers import TargetOracle

SPECDEC = [sys.executable, "-m", "specdec.orchestrator.cli"]
ITEMS, NEW_TOKENS = 24, 16
RESTART_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def jobs_deployment(ray_cluster, tmp_path_factory):
    journal = tmp_path_factory.mktemp("jobs") / "jobs.sqlite"
    config = ServeConfig().with_overrides(orchestrator={"port": 0, "name": "jobs-test-orchestrator"},
                                          jobs={"journal_path": str(journal), "concurrency": 4})
    dep = deploy(config)
    yield config, dep
    dep.stop()


def current_address(config: ServeConfig) -> str:
    """The orchestrator's client address now: after a restart on port 0 it may have changed."""
    return ray.get(find_orchestrator(config).ready.remote(), timeout=RESTART_TIMEOUT_S)


def wait_for_restart(config: ServeConfig, old_pid: int) -> dict:
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while True:
        try:
            current_address(config)
            health = ray.get(find_orchestrator(config).health.remote(), timeout=30)
            if health["pid"] != old_pid:
                return health
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ValueError):
            pass  # dead, restarting, or not yet registered under its name again
        assert time.monotonic() < deadline, "Ray did not restart the orchestrator"
        time.sleep(0.5)


def test_a_job_survives_the_orchestrator_being_killed(jobs_deployment, oracle: TargetOracle):
    config, dep = jobs_deployment
    prompts = [p.prompt for p in code_prompts(ITEMS, seed=11)]
    requests = [{"prompt": p, "temperature": 0, "max_new_tokens": NEW_TOKENS, "ignore_eos": True} for p in prompts]
    started = time.monotonic()
    with Client(dep.address, timeout_s=120) as client:
        job_id = client.submit(requests, name="kill test")
        while client.job(job_id)["done"] < ITEMS // 3:  # then some items are running and some queued
            time.sleep(0.05)
        kept = {r["index"]: r for r in client.results(job_id)}  # recorded before the kill
        old_pid = ray.get(dep.orchestrator.health.remote())["pid"]
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
    health = wait_for_restart(config, old_pid)
    restarted_at = time.monotonic()
    with Client(current_address(config), timeout_s=120) as client:
        status = client.wait(job_id, timeout_s=600, poll_s=0.5)
        results = list(client.results(job_id))
    finished_at = time.monotonic()

    resumed = health["jobs"]["resumed_items"]  # unfinished (queued or cut off while running) at the kill
    indexes = [r["index"] for r in results]
    assert status["state"] == "succeeded" and (status["done"], status["failed"]) == (ITEMS, 0)
    assert sorted(indexes) == list(range(ITEMS)) and len(indexes) == len(set(indexes))  # none lost, none twice
    assert ITEMS // 3 <= len(kept) <= ITEMS - resumed < ITEMS
    for result in results:
        if result["index"] in kept:  # finished before the kill: kept as it was (same request id), not run again
            assert result == kept[result["index"]]
        assert result["token_ids"] == oracle.hf_generate(prompts[result["index"]], NEW_TOKENS), result["index"]
        assert result["prompt"] == prompts[result["index"]] and result["stats"]["output_tokens"] == NEW_TOKENS
    print(f"\nkill test: {ITEMS - resumed} of {ITEMS} items done before the kill, {resumed} after the restart, "
          f"{len(indexes) - len(set(indexes))} duplicates; killed {killed_at - started:.1f}s after submit, serving "
          f"again {restarted_at - killed_at:.1f}s later, job done {finished_at - restarted_at:.1f}s after that "
          f"(pid {old_pid} -> {health['pid']})")


def specdec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SPECDEC, *args], capture_output=True, text=True, timeout=300)


def test_job_commands(jobs_deployment, tmp_path: Path, oracle: TargetOracle):
    config, _ = jobs_deployment
    address = current_address(config)
    prompts = [p.prompt for p in code_prompts(3, seed=5)]
    job_file = tmp_path / "prompts.jsonl"
    job_file.write_text("".join(json.dumps({"prompt": p, "temperature": 0, "max_new_tokens": 8, "ignore_eos": True})
                                + "\n" for p in prompts))
    submitted = specdec("submit", str(job_file), "--address", address, "--name", "cli")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.startswith("job-") and "submitted 3 requests" in submitted.stderr
    listed = specdec("jobs", "--address", address, "--json")
    assert listed.returncode == 0 and job_id in [job["job_id"] for job in json.loads(listed.stdout)]
    with Client(address) as client:
        client.wait(job_id, timeout_s=300, poll_s=0.5)
    status = specdec("status", job_id, "--orchestrator", address)
    assert status.returncode == 0 and "state: succeeded" in status.stdout and "done: 3" in status.stdout
    out = tmp_path / "results.jsonl"
    results = specdec("results", job_id, "--address", address, "--out", str(out))
    assert results.returncode == 0, results.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert [r["token_ids"] for r in records] == [oracle.hf_generate(p, 8) for p in prompts]
    assert [json.loads(line) for line in specdec("results", job_id, "--address", address).stdout.splitlines()] \
        == records

    long_job = tmp_path / "long.jsonl"
    long_job.write_text("".join(json.dumps({"prompt": p, "max_new_tokens": 400, "ignore_eos": True}) + "\n"
                                for p in prompts * 4))
    long_id = specdec("submit", str(long_job), "--address", address).stdout.strip()
    cancelled = specdec("cancel", long_id, "--address", address)
    assert cancelled.returncode == 0 and "state: cancelled" in cancelled.stdout
    with Client(address) as client:
        assert client.job(long_id)["state"] == "cancelled"


def test_bad_jobs_are_refused_naming_the_field(jobs_deployment, tmp_path: Path):
    config, _ = jobs_deployment
    address = current_address(config)
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"prompt": "a"}\n{"prompt": "b", "max_new_tokens": "ten"}\n')
    result = specdec("submit", str(bad_line), "--address", address)
    assert result.returncode == 2 and f"{bad_line}:2: max_new_tokens" in result.stderr
    out_of_range = tmp_path / "range.jsonl"
    out_of_range.write_text('{"prompt": "a"}\n{"prompt": "b", "top_p": 7}\n')
    result = specdec("submit", str(out_of_range), "--address", address)
    assert result.returncode == 1 and "INVALID_ARGUMENT: requests[1].sampling.top_p" in result.stderr
    result = specdec("status", "job-nope", "--orchestrator", address)
    assert result.returncode == 1 and "NOT_FOUND: job_id" in result.stderr and "job-nope" in result.stderr
    with Client(address) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.submit([])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "requests" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            client.cancel("job-nope")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
