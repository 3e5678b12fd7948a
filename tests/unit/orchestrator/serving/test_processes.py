"""Plain-process deployments: which GPUs a child sees."""

from __future__ import annotations

import pytest

from specdec.orchestrator.serving.processes import visible_devices


@pytest.mark.parametrize("own, gpu_ids, expected", [
    (None, [0, 1], "0,1"),  # this process sees every GPU: the children get the same numbers
    ("2,3", [1], "3"),  # confined to GPUs 2 and 3: the second of them
    ("2,3", [], ""),  # a service on CPUs sees no GPU
])
def test_a_child_sees_the_gpus_it_was_given_as_this_process_numbers_them(monkeypatch, own, gpu_ids, expected):
    if own is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", own)
    assert visible_devices(gpu_ids) == expected
