"""GPU layouts on a Ray cluster started with declared GPUs (`ray start --num-gpus N`) on a machine that has
none: each service is given the GPUs its layout says (Ray's accelerator ids), while the models run on the
CPU (`device: cpu`). One GPU: draft and target share it; two: one each; five: a target spanning four and
a draft on the fifth. A layout the cluster cannot hold is refused naming the field, before anything starts."""

from __future__ import annotations

import subprocess

import pytest
import ray

from specdec.config import ServeConfig
from specdec.errors import InvalidField
from specdec.orchestrator.serving.launch import deploy
from specdec.orchestrator.serving.placement import DRAFT_SHARE, TARGET_SHARE
from tests.cluster.conftest import ENV, RAY, free_port, ray_command


@pytest.fixture
def gpu_cluster(request):
    """A one-node cluster declaring `request.param` GPUs (none of them real)."""
    ray.shutdown()
    ray_command("get-auth-token", "--generate")
    port = free_port()
    try:
        ray_command("start", "--head", f"--port={port}", "--include-dashboard=false", "--num-cpus=6",
                    f"--num-gpus={request.param}", "--disable-usage-stats")
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield request.param
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=ENV, timeout=120)


def on_cpu(name: str, target: dict | None = None, accelerator: str = "auto") -> ServeConfig:
    return ServeConfig.from_dict({
        "draft": {"model": "demo:draft", "device": "cpu"},
        "target": {"model": "demo:target", "device": "cpu"} | (target or {}),
        "placement": {"accelerator": accelerator}, "orchestrator": {"port": 0, "name": name}})


@pytest.mark.parametrize("gpu_cluster, target, layout_name, draft_gpus, target_gpus, target_ids, shared", [
    (1, None, "shared GPU", DRAFT_SHARE, TARGET_SHARE, 1, True),
    (2, None, "one GPU each", 1, 1, 1, False),
    (5, {"num_gpus": 4}, "as configured", 1, 4, 4, False),
], indirect=["gpu_cluster"])
def test_each_service_gets_the_gpus_its_layout_says(gpu_cluster, target, layout_name, draft_gpus, target_gpus,
                                                    target_ids, shared):
    deployment = deploy(on_cpu(f"gpus-{gpu_cluster}", target))
    try:
        assert (deployment.layout.name, deployment.layout.draft_gpus, deployment.layout.target_gpus) == \
            (layout_name, draft_gpus, target_gpus)
        draft, target_row = ray.get([deployment.drafts[0].health.remote(), deployment.targets[0].health.remote()])
        assert (draft["gpus"], target_row["gpus"]) == (draft_gpus, target_gpus)
        assert len(draft["gpu_ids"]) == 1 and len(target_row["gpu_ids"]) == target_ids
        assert (set(draft["gpu_ids"]) == set(target_row["gpu_ids"])) == shared  # shared: the same GPU
        assert shared or not set(draft["gpu_ids"]) & set(target_row["gpu_ids"])  # else: disjoint GPUs
        assert draft["device"] == target_row["device"] == "cpu" and draft["serving"] and target_row["serving"]
        assert ray.get(deployment.orchestrator.health.remote())["layout"] == deployment.layout.describe()
    finally:
        deployment.stop()


@pytest.mark.parametrize("gpu_cluster, target, accelerator, field", [
    (5, {"num_gpus": 8}, "auto", "target.num_gpus"),
    (1, {"num_gpus": 1}, "gpu", "target.num_gpus"),  # the draft's share does not fit beside a whole GPU
], indirect=["gpu_cluster"])
def test_a_layout_the_cluster_cannot_hold_is_refused_before_anything_starts(gpu_cluster, target, accelerator,
                                                                            field):
    with pytest.raises(InvalidField) as refused:
        deploy(on_cpu(f"refused-{gpu_cluster}", target, accelerator))
    assert refused.value.field == field
    assert not ray.util.placement_group_table() or all(
        group["state"] == "REMOVED" for group in ray.util.placement_group_table().values())
    assert ray.available_resources().get("GPU", 0) == gpu_cluster
