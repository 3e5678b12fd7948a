"""Where the services run: the layout that fits the cluster's GPUs, and why.

`plan_layout` is pure: from the serve config and the GPUs the cluster has, it gives each draft and target
replica its share of GPUs and its CPUs, names the layout and says why it was chosen; `launch.py` turns the
plan into a placement group. `placement.accelerator`:
- `auto`: one GPU per service when the cluster has that many; else draft and target sharing GPUs (each
  draft `DRAFT_SHARE` of a GPU, each target `TARGET_SHARE`) when those shares fit; else CPUs.
- `gpu`: the same GPU layouts, and a refusal rather than CPUs when neither fits.
- `cpu`: CPUs only.
A model's `num_gpus` overrides its share in any GPU layout: a fraction shares a GPU, a whole number above
one spans GPUs. A plan that needs more GPUs than the cluster has is refused naming the field to change.

Knows the serve config; nothing of Ray, models or devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from specdec.config import ModelConfig, ServeConfig
from specdec.errors import InvalidField

DRAFT_SHARE = 0.25  # of one GPU, for a draft that shares it with a target
TARGET_SHARE = 0.75


@dataclass(frozen=True)
class Layout:
    name: str  # "cpu", "one GPU each", "shared GPU" or "as configured"
    reason: str
    draft_gpus: float  # per draft replica
    target_gpus: float  # per target replica
    draft_cpus: int
    target_cpus: int

    @property
    def uses_gpus(self) -> bool:
        return self.draft_gpus > 0 or self.target_gpus > 0

    def describe(self) -> str:
        """One line for `specdec serve` and `specdec status`."""
        if not self.uses_gpus:
            return f"{self.name}: {self.reason}"
        return (f"{self.name}: draft {self.draft_gpus:g} GPU, target {self.target_gpus:g} GPU per replica "
                f"({self.reason})")


def plan_layout(config: ServeConfig, cluster_gpus: float) -> Layout:
    """The layout for `config` on a cluster with `cluster_gpus` GPUs. Raises InvalidField naming the field
    when the config asks for more than the cluster has."""
    placement = config.placement
    drafts, targets = placement.draft_replicas, placement.target_replicas
    services = drafts + targets
    cpus = (_cpus(config.draft, placement.cpus_per_service), _cpus(config.target, placement.cpus_per_service))
    if placement.accelerator == "cpu":
        for side, model in (("draft", config.draft), ("target", config.target)):
            if model.num_gpus:
                raise InvalidField(f"{side}.num_gpus", "placement.accelerator is cpu: set it to auto or gpu")
        return Layout("cpu", "placement.accelerator: cpu", 0.0, 0.0, *cpus)
    if cluster_gpus >= services:
        layout = Layout("one GPU each", f"{cluster_gpus:g} GPUs for {services} services", 1.0, 1.0, *cpus)
    elif 0 < cluster_gpus and drafts * DRAFT_SHARE + targets * TARGET_SHARE <= cluster_gpus:
        layout = Layout("shared GPU", f"{cluster_gpus:g} GPU(s) for {services} services: draft and target share",
                        DRAFT_SHARE, TARGET_SHARE, *cpus)
    elif placement.accelerator == "gpu":
        shared = drafts * DRAFT_SHARE + targets * TARGET_SHARE
        raise InvalidField("placement.accelerator", f"gpu, but the cluster has {cluster_gpus:g} GPU(s) for "
                                                    f"{services} services ({shared:g} are needed to share them)")
    else:
        layout = Layout("cpu", f"{cluster_gpus:g} GPU(s) in the cluster, too few for {services} services",
                        0.0, 0.0, *cpus)
    return _as_configured(layout, config, cluster_gpus)


def _as_configured(layout: Layout, config: ServeConfig, cluster_gpus: float) -> Layout:
    """`layout` with the models' own num_gpus in place of its shares, checked against the cluster."""
    draft_gpus, target_gpus = config.draft.num_gpus, config.target.num_gpus
    if draft_gpus is None and target_gpus is None:
        return layout
    draft_gpus = layout.draft_gpus if draft_gpus is None else draft_gpus
    target_gpus = layout.target_gpus if target_gpus is None else target_gpus
    placement = config.placement
    needed = placement.draft_replicas * draft_gpus + placement.target_replicas * target_gpus
    if needed > cluster_gpus:
        field = "target.num_gpus" if config.target.num_gpus is not None else "draft.num_gpus"
        raise InvalidField(field, f"the services need {needed:g} GPUs ({placement.draft_replicas} draft(s) x "
                                  f"{draft_gpus:g} + {placement.target_replicas} target(s) x {target_gpus:g}); "
                                  f"the cluster has {cluster_gpus:g}")
    return Layout("as configured", f"draft.num_gpus / target.num_gpus; {cluster_gpus:g} GPU(s) in the cluster",
                  draft_gpus, target_gpus, layout.draft_cpus, layout.target_cpus)


def _cpus(model: ModelConfig, default: int) -> int:
    return model.num_cpus if model.num_cpus is not None else default


def assign_gpus(services: list[tuple[str, float]], machine_gpus: int) -> list[list[int]]:
    """The GPU indices each (field, share) service gets on one machine with `machine_gpus` GPUs, packed as
    Ray packs bundles: whole shares take free GPUs of their own, largest first; a fraction goes to the first
    GPU with room left. Raises InvalidField naming the service's field when it does not fit."""
    room = [1.0] * machine_gpus
    assigned: list[list[int]] = [[] for _ in services]
    for index in sorted(range(len(services)), key=lambda i: -services[i][1]):
        field, share = services[index]
        if share >= 1:
            free = [gpu for gpu in range(machine_gpus) if room[gpu] == 1.0][: int(share)]
        else:
            free = [gpu for gpu in range(machine_gpus) if room[gpu] >= share - 1e-9][:1] if share else []
        if share and len(free) < max(1, int(share)):
            raise InvalidField(field, f"{share:g} GPU(s) do not fit on this machine's {machine_gpus} GPU(s) beside "
                                      f"the other services")
        for gpu in free:
            room[gpu] -= min(share, 1.0)
        assigned[index] = free
    return assigned
