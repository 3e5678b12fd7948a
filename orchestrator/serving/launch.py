"""Start a deployment on a Ray cluster: draft and target service actors in one placement group, and
the named orchestrator actor. Ray glue only (`processes.py` starts the same parts without Ray); the
services and the round know nothing of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from specdec.config import ServeConfig
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.orchestrator.serving.components import SERVICE_CLASSES, service_arguments
from specdec.orchestrator.serving.core import check_defaults
from specdec.orchestrator.serving.placement import Layout, plan_layout

log = logging.getLogger(__name__)
PLACEMENT_TIMEOUT_S = 120.0
START_TIMEOUT_S = 600.0
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node 1 of this


@dataclass
class Deployment:
    address: str  # the orchestrator's gRPC address, what clients dial
    draft_addresses: list[str]
    target_addresses: list[str]
    layout: Layout  # where the services run, and why
    orchestrator: ray.actor.ActorHandle
    drafts: list[ray.actor.ActorHandle]
    targets: list[ray.actor.ActorHandle]
    placement_group: PlacementGroup
    http_address: str = ""  # the OpenAI-compatible HTTP API's base URL; empty when the http section is off

    def stop(self) -> None:
        for actor in (self.orchestrator, *self.drafts, *self.targets):
            ray.kill(actor, no_restart=True)
        remove_placement_group(self.placement_group)


def deploy(config: ServeConfig, detached: bool = False) -> Deployment:
    """Place and start the drafts, the targets and the orchestrator; return once it serves. Needs ray.init()."""
    check_defaults(config.defaults)
    layout = plan_layout(config, ray.cluster_resources().get("GPU", 0))
    kinds = [("draft", i, layout.draft_gpus, layout.draft_cpus) for i in range(config.placement.draft_replicas)]
    kinds += [("target", i, layout.target_gpus, layout.target_cpus) for i in range(config.placement.target_replicas)]
    bundles = [{"CPU": cpus} | ({"GPU": gpus} if gpus else {}) | config.placement.resources
               for _, _, gpus, cpus in kinds]
    lifetime = "detached" if detached else None
    group = placement_group(bundles, strategy=config.placement.strategy, lifetime=lifetime,
                            name=f"{config.orchestrator.name}-placement")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(group)
        raise RuntimeError(f"placement: could not reserve the bundles {bundles} ({layout.describe()}) with "
                           f"strategy {config.placement.strategy} within {PLACEMENT_TIMEOUT_S:.0f}s; cluster has "
                           f"{ray.cluster_resources()}")
    started: list[ray.actor.ActorHandle] = []
    try:
        for index, (role, replica, gpus, cpus) in enumerate(kinds):
            started.append(_start_service(role, replica, config, group, index, gpus, cpus, lifetime))
        addresses = ray.get([s.ready.remote() for s in started], timeout=START_TIMEOUT_S)
        drafts = config.placement.draft_replicas
        cfg = config.orchestrator
        # On the head node, where the job journal lives; Ray restarts it there after a crash.
        orchestrator = ray.remote(OrchestratorActor).options(
            name=cfg.name, namespace=cfg.namespace, lifetime=lifetime, num_cpus=cfg.num_cpus,
            max_restarts=cfg.max_restarts, resources={HEAD_NODE_RESOURCE: 0.001},
        ).remote(config, addresses[:drafts], addresses[drafts:], started[:drafts], started[drafts:],
                 layout.describe())
        started.append(orchestrator)
        address = ray.get(orchestrator.ready.remote(), timeout=START_TIMEOUT_S)
        http_address = ray.get(orchestrator.http_address.remote(), timeout=START_TIMEOUT_S)
    except BaseException:
        for handle in started:
            ray.kill(handle, no_restart=True)
        remove_placement_group(group)
        raise
    log.info("drafts at %s, targets at %s, orchestrator at %s", addresses[:drafts], addresses[drafts:], address)
    return Deployment(address, addresses[:drafts], addresses[drafts:], layout, orchestrator, started[:drafts],
                      started[drafts:-1], group, http_address)


def _start_service(role: str, replica: int, config: ServeConfig, group: PlacementGroup, bundle: int, gpus: float,
                   cpus: int, lifetime: str | None) -> ray.actor.ActorHandle:
    restarts = config.placement.max_restarts
    return ray.remote(SERVICE_CLASSES[role]).options(
        num_cpus=cpus, num_gpus=gpus, lifetime=lifetime, resources=dict(config.placement.resources),
        # `specdec status` finds services by this prefix
        name=f"{config.orchestrator.name}-{role}-{replica}", namespace=config.orchestrator.namespace,
        # Ray restarts a crashed service; calls to it (ready, health) wait for the restart and then run.
        max_restarts=restarts, max_task_retries=-1 if restarts else 0,
        scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle),
    ).remote(**service_arguments(config, role, cpus, gpus))


def find_orchestrator(config: ServeConfig) -> ray.actor.ActorHandle:
    """The running orchestrator actor of a cluster, by name."""
    return ray.get_actor(config.orchestrator.name, namespace=config.orchestrator.namespace)


def stop_deployment(config: ServeConfig) -> list[str]:
    """Kill every actor of the deployment named in `config` (detached ones included) and free its placement
    group; return the names of the actors killed."""
    namespace = config.orchestrator.namespace
    names = _deployment_actor_names(config)
    for name in names:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    try:
        remove_placement_group(ray.util.get_placement_group(f"{config.orchestrator.name}-placement"))
    except ValueError:  # no such group: already removed, or started by an older version
        pass
    return names


def _deployment_actor_names(config: ServeConfig) -> list[str]:
    namespace, prefix = config.orchestrator.namespace, config.orchestrator.name
    return sorted(entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
                  if entry["namespace"] == namespace
                  and (entry["name"] == prefix or entry["name"].startswith(f"{prefix}-")))


def deployment_status(config: ServeConfig, timeout_s: float = 10.0) -> list[dict]:
    """Every actor of the deployment named in `config` (orchestrator and services) with its health and
    where it runs; an actor that does not answer within `timeout_s` is listed as unreachable."""
    namespace = config.orchestrator.namespace
    rows = []
    for name in _deployment_actor_names(config):
        try:
            health = ray.get(ray.get_actor(name, namespace=namespace).health.remote(), timeout=timeout_s)
            rows.append({"name": name, "state": "ALIVE"} | health)
        except Exception as exc:  # a dead, restarting or hung actor is a row too, not a crash of the command
            rows.append({"name": name, "state": f"unreachable ({type(exc).__name__})"})
    return rows
