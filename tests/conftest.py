"""Test order: the cluster tests first, and Ray's token authentication on. The cluster tests start and
stop Ray with the `ray` command, and `ray stop` stops every Ray process on the machine, so they must not
run while another layer holds a Ray cluster."""

from __future__ import annotations

import os

import pytest

# Ray token authentication for every cluster the tests start or join, as `specdec` sets it. Ray reads
# this when it is first imported, so it is set here, before any test module imports ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# One torch thread in the tests' own process and in the Ray workers it starts (they inherit this): each
# service runs on one thread, and on 2 cores a second thread per process only spins against the others.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items):
    """Cluster tests first; every test under tests/e2e/ and tests/cluster/ carries the `e2e` mark, so that
    `-m "not e2e"` runs the quick tier (unit and service tests); every test under tests/cuda/ carries the
    `cuda` mark and is skipped, saying why, where torch sees no CUDA device."""
    cuda = None
    for item in items:
        if "/tests/e2e/" in str(item.path) or "/tests/cluster/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
        if "/tests/cuda/" in str(item.path):
            item.add_marker(pytest.mark.cuda)
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device (none here): scripts/gpu_check.sh "
                                                        "runs these on a GPU machine"))
    items.sort(key=lambda item: 0 if "/tests/cluster/" in str(item.path) else 1)  # stable: keeps the rest in order
