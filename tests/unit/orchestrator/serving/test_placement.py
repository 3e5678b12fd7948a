"""The layout that fits the cluster's GPUs: one GPU each, draft and target sharing, CPUs, or the models' own
num_gpus; every refusal names the field to change."""

from __future__ import annotations

import pytest

from specdec.config import ServeConfig
from specdec.errors import InvalidField
from specdec.orchestrator.serving.placement import DRAFT_SHARE, TARGET_SHARE, assign_gpus, plan_layout


def config(accelerator: str = "auto", drafts: int = 1, targets: int = 1, draft: dict | None = None,
           target: dict | None = None, cpus: int = 1) -> ServeConfig:
    return ServeConfig.from_dict({
        "placement": {"accelerator": accelerator, "draft_replicas": drafts, "target_replicas": targets,
                      "cpus_per_service": cpus},
        "draft": {"model": "demo:draft"} | (draft or {}), "target": {"model": "demo:target"} | (target or {})})


@pytest.mark.parametrize("served, cluster_gpus, name, draft_gpus, target_gpus", [
    (config(), 0, "cpu", 0, 0),
    (config(), 1, "shared GPU", DRAFT_SHARE, TARGET_SHARE),
    (config(), 2, "one GPU each", 1, 1),
    (config(), 8, "one GPU each", 1, 1),
    (config(drafts=1, targets=2), 2, "shared GPU", DRAFT_SHARE, TARGET_SHARE),  # 0.25 + 2 x 0.75 <= 2
    (config(drafts=1, targets=2), 1, "cpu", 0, 0),  # 1.75 GPUs would be needed
    (config(drafts=2, targets=2), 4, "one GPU each", 1, 1),
    (config(accelerator="gpu"), 1, "shared GPU", DRAFT_SHARE, TARGET_SHARE),
    (config(accelerator="cpu"), 4, "cpu", 0, 0),
    (config(target={"num_gpus": 4}), 5, "as configured", 1, 4),  # a target spanning 4 GPUs, the draft on one
    (config(target={"num_gpus": 4}, draft={"num_gpus": 0.5}), 5, "as configured", 0.5, 4),
    (config(draft={"num_gpus": 0.1}, target={"num_gpus": 0.9}), 1, "as configured", 0.1, 0.9),
    (config(draft={"num_gpus": 0}), 1, "as configured", 0, TARGET_SHARE),  # draft on CPU, target on the GPU
])
def test_the_layout_fits_the_cluster(served, cluster_gpus, name, draft_gpus, target_gpus):
    layout = plan_layout(served, cluster_gpus)
    assert (layout.name, layout.draft_gpus, layout.target_gpus) == (name, draft_gpus, target_gpus)
    assert layout.uses_gpus == bool(draft_gpus or target_gpus)
    assert layout.reason and layout.name in layout.describe()


def test_cpus_come_from_each_model_or_the_placement_default():
    layout = plan_layout(config(cpus=2, target={"num_cpus": 6}), 0)
    assert (layout.draft_cpus, layout.target_cpus) == (2, 6)


@pytest.mark.parametrize("served, cluster_gpus, field", [
    (config(accelerator="gpu"), 0, "placement.accelerator"),
    (config(accelerator="gpu", drafts=1, targets=2), 1, "placement.accelerator"),
    (config(target={"num_gpus": 4}), 4, "target.num_gpus"),  # 4 + the draft's 1 > 4
    (config(target={"num_gpus": 1}), 0, "target.num_gpus"),
    (config(draft={"num_gpus": 1}, drafts=2, targets=2), 1, "draft.num_gpus"),
    (config(accelerator="cpu", draft={"num_gpus": 0.5}), 1, "draft.num_gpus"),
])
def test_a_layout_the_cluster_cannot_hold_is_refused_naming_the_field(served, cluster_gpus, field):
    with pytest.raises(InvalidField) as refused:
        plan_layout(served, cluster_gpus)
    assert refused.value.field == field


@pytest.mark.parametrize("model, field", [
    ({"num_gpus": 1.5}, "target.num_gpus"),  # above 1: whole GPUs only
    ({"num_gpus": -1}, "target.num_gpus"),
    ({"num_gpus": float("nan")}, "target.num_gpus"),
    ({"num_gpus": "two"}, "target.num_gpus"),
    ({"num_cpus": 0}, "target.num_cpus"),
])
def test_bad_gpu_and_cpu_counts_are_refused_by_the_config(model, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        config(target=model)


@pytest.mark.parametrize("shares, machine_gpus, expected", [
    ([("draft.num_gpus", 1.0), ("target.num_gpus", 1.0)], 2, [[0], [1]]),
    ([("draft.num_gpus", 0.25), ("target.num_gpus", 0.75)], 1, [[0], [0]]),  # sharing GPU 0
    ([("draft.num_gpus", 1.0), ("target.num_gpus", 4.0)], 5, [[4], [0, 1, 2, 3]]),  # a target spanning four
    ([("draft.num_gpus", 0.25), ("draft.num_gpus", 0.25), ("target.num_gpus", 0.75), ("target.num_gpus", 0.75)], 2,
     [[0], [1], [0], [1]]),
    ([("draft.num_gpus", 0.0), ("target.num_gpus", 0.0)], 0, [[], []]),  # CPUs
])
def test_gpus_are_assigned_on_one_machine_as_ray_packs_them(shares, machine_gpus, expected):
    assert assign_gpus(shares, machine_gpus) == expected


def test_a_service_that_does_not_fit_beside_the_others_is_refused_naming_its_field():
    with pytest.raises(InvalidField) as refused:
        assign_gpus([("draft.num_gpus", 0.5), ("target.num_gpus", 1.0)], 1)  # the target takes the only GPU
    assert refused.value.field == "draft.num_gpus"

