"""Ray clusters started the way users start them, with the `ray` command: `ray start` nodes here, `ray up`
in test_ray_up.py. These tests end with `ray stop`, which stops every Ray process on the machine, so
they run before the other layers (see tests/conftest.py) and never beside another Ray user.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

RAY = str(Path(sys.executable).parent / "ray")
# Ray token authentication on every node and client (Ray >= 2.59 turns it on for local clusters).
ENV = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_command(*args: str, timeout: float = 180) -> str:
    result = subprocess.run([RAY, *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    assert result.returncode == 0, f"ray {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and a worker node on this machine, each with 3 CPUs and 2 units of a custom `accel`
    resource standing in for GPUs; the head exports Prometheus metrics."""
    ray.shutdown()
    ray_command("get-auth-token", "--generate")  # the token every node and this driver present
    port, head_metrics, worker_metrics = free_port(), free_port(), free_port()
    node = ["--num-cpus=3", '--resources={"accel": 2}', "--disable-usage-stats"]
    try:
        ray_command("start", "--head", f"--port={port}", "--include-dashboard=false",
                    f"--metrics-export-port={head_metrics}", *node)
        ray_command("start", f"--address=127.0.0.1:{port}", f"--metrics-export-port={worker_metrics}", *node)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert time.monotonic() < deadline, "the worker node did not join"
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "metrics_ports": [head_metrics, worker_metrics]}
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=ENV, timeout=120)
