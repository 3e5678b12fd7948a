"""The orchestrator as a Ray actor: connects to the draft and target services, checks that they can
work together, and serves OrchestratorService over grpc.aio on the actor's event loop.

With several targets (and drafts), each target is paired with draft number (target index mod drafts),
so several targets may share one draft; each request runs on the least-loaded pair. `ready()` returns
the client address or re-raises a failed start (for example a pair whose tokenizers differ).

Given the services' actor handles, a service that fails is brought back through Ray: a crashed one is
restarted by Ray (max_restarts) and re-located by asking its new incarnation for its address; a hung one
is killed so that Ray restarts it (see `remote.Recovery`).
"""

from __future__ import annotations

import asyncio

import grpc
import ray
from transformers import AutoTokenizer

from specdec.config import ServeConfig, resolve_model
from specdec.orchestrator.core import Orchestrator, Route, check_pair
from specdec.orchestrator.metrics import OrchestratorMetrics
from specdec.orchestrator.remote import Recovery, RemoteProposer, RemoteScorer
from specdec.orchestrator.servicer import OrchestratorServicer
from specdec.runtime.rpc import RpcLimits, format_address, start_server
from specdec.runtime.security import TokenCheck, read_token
from specdec.runtime.service_actor import advertised_host, where
from specdec.v1 import specdec_pb2_grpc as pb_grpc

SERVICE_NAME = "specdec.v1.OrchestratorService"


class OrchestratorActor:
    def __init__(self, config: ServeConfig, draft_addresses: list[str], target_addresses: list[str],
                 draft_actors: list | None = None, target_actors: list | None = None):
        self._config = config
        self._limits = RpcLimits(config.limits.max_message_bytes, config.limits.rpc_timeout_s)
        self._drafts, self._targets = list(draft_addresses), list(target_addresses)
        self._draft_actors = draft_actors or [None] * len(self._drafts)
        self._target_actors = target_actors or [None] * len(self._targets)
        self._start: asyncio.Task | None = None
        self._orchestrator: Orchestrator | None = None
        self._server: grpc.aio.Server | None = None
        self._address = ""

    async def ready(self) -> str:
        if self._start is None:
            self._start = asyncio.get_running_loop().create_task(self._serve())
        return await asyncio.shield(self._start)

    async def health(self) -> dict:
        o = self._orchestrator
        return {"service": SERVICE_NAME, "serving": self._server is not None, "address": self._address,
                "active_requests": o.active_requests if o else 0,
                "routes": {r.name: r.active for r in o.routes} if o else {},
                "faults": {service.address: {"available": service.available, "failures": service.failures,
                                             "recoveries": service.recoveries, "restarts": service.restarts}
                           for route in (o.routes if o else []) for service in (route.proposer, route.scorer)},
                "governor": {"arm": o.governor.arm, "tokens_per_second": o.governor.rates} if o else {}} | where()

    async def _serve(self) -> str:
        metrics = OrchestratorMetrics()
        tls = self._config.tls
        credentials = tls.channel_credentials()  # mutual TLS to the services when tls.cert/key are set too
        timeout_s = self._config.limits.recovery_timeout_s
        proposers = [RemoteProposer(address, self._limits, metrics.rpc, credentials, recovery(actor, timeout_s))
                     for address, actor in zip(self._drafts, self._draft_actors, strict=True)]
        scorers = [RemoteScorer(address, self._limits, metrics.rpc, credentials, recovery(actor, timeout_s))
                   for address, actor in zip(self._targets, self._target_actors, strict=True)]
        infos = await asyncio.gather(*(service.info() for service in [*proposers, *scorers]))
        draft_infos, target_infos = infos[: len(proposers)], infos[len(proposers):]
        routes = []
        for index, scorer in enumerate(scorers):
            proposer = proposers[index % len(proposers)]
            routes.append(Route(proposer, scorer, f"{proposer.address}->{scorer.address}"))
        tokenizer = await asyncio.get_running_loop().run_in_executor(
            None, AutoTokenizer.from_pretrained, resolve_model(self._config.target.model))
        for index, target_info in enumerate(target_infos):  # every pair must be able to work together
            check_pair(draft_infos[index % len(proposers)], target_info)
        self._orchestrator = Orchestrator(routes, tokenizer, draft_infos[0], target_infos[0], self._config.defaults,
                                          self._config.limits, metrics)
        cfg = self._config.orchestrator
        self._server, port = await start_server(
            lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(
                OrchestratorServicer(self._orchestrator), server),
            cfg.host, cfg.port, self._limits, [SERVICE_NAME], tls.server_credentials(client_api=True),
            (TokenCheck(read_token(cfg.token_file)),) if cfg.token_file else ())
        self._address = format_address(advertised_host(cfg.host), port)
        return self._address


def recovery(actor, timeout_s: float) -> Recovery:
    """How to bring back a service hosted by a Ray actor (None: a fixed address, nothing to restart)."""
    if actor is None:
        return Recovery(timeout_s=timeout_s)

    async def locate() -> str:
        return await actor.ready.remote()  # waits while Ray restarts it; a new incarnation binds a new port

    async def restart() -> None:
        ray.kill(actor, no_restart=False)  # Ray starts it again (max_restarts)

    return Recovery(locate, restart, timeout_s)
