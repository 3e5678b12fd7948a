"""The orchestrator as a Ray actor (or a plain process, `specdec orchestrator`): connects to the draft and
target services, checks that they can work together, and serves OrchestratorService over grpc.aio on
the actor's event loop.

With several targets (and drafts), each target is paired with draft number (target index mod drafts),
so several targets may share one draft; each request runs on the least-loaded pair. `ready()` returns
the client address or re-raises a failed start (for example a pair whose tokenizers differ).

Given the services' actor handles, a service that fails is brought back through Ray: a crashed one is
restarted by Ray (max_restarts) and re-located by asking its new incarnation for its address; a hung one
is killed so that Ray restarts it (see `remote.Recovery`).

With the serve config's `http` section on, the OpenAI-compatible HTTP API (`http_gateway`) runs beside the
gRPC server on this actor's event loop, over the same `Orchestrator`; `http_address()` returns its base URL.

Batch jobs live in a SQLite journal (jobs.journal_path) that this actor opens on start. In Ray the start
begins in the constructor, so an actor that Ray restarts after a crash resumes the unfinished jobs at
once, before any client calls `ready()` again.
"""

from __future__ import annotations

import asyncio

import grpc
from transformers import AutoTokenizer

from specdec.config import ServeConfig, resolve_model
from specdec.memory import steady_allocator
from specdec.net.rpc import RpcLimits, format_address, start_server
from specdec.net.security import TokenCheck, read_token
from specdec.orchestrator.adapters.remote import Recovery, RemoteProposer, RemoteScorer
from specdec.orchestrator.jobs.items import JobItems
from specdec.orchestrator.jobs.journal import Journal
from specdec.orchestrator.jobs.runner import JobRunner
from specdec.orchestrator.serving.core import Orchestrator, Route, check_pair
from specdec.orchestrator.serving.http_gateway import HttpServer, create_app, serve_http
from specdec.orchestrator.serving.metrics import OrchestratorMetrics
from specdec.orchestrator.serving.servicer import OrchestratorServicer
from specdec.services.runtime.host import advertised_host, where
from specdec.v1 import specdec_pb2_grpc as pb_grpc

SERVICE_NAME = "specdec.v1.OrchestratorService"
GAUGE_REFRESH_S = 1.0  # Ray drops a gauge not set again within two of its export intervals (2 s at the least)


class OrchestratorActor:
    def __init__(self, config: ServeConfig, draft_addresses: list[str], target_addresses: list[str],
                 draft_actors: list | None = None, target_actors: list | None = None, layout: str = ""):
        """`layout`: where the services were placed and why (`Layout.describe()`), for `specdec status`."""
        steady_allocator()  # before the gRPC server starts
        self._config = config
        self._layout = layout
        self._limits = RpcLimits(config.limits.max_message_bytes, config.limits.rpc_timeout_s)
        self._drafts, self._targets = list(draft_addresses), list(target_addresses)
        self._draft_actors = draft_actors or [None] * len(self._drafts)
        self._target_actors = target_actors or [None] * len(self._targets)
        self._start: asyncio.Task | None = None
        self._orchestrator: Orchestrator | None = None
        self._server: grpc.aio.Server | None = None
        self._jobs: JobRunner | None = None
        self._http: HttpServer | None = None
        self._gauges: asyncio.Task | None = None
        self._resumed_items = 0
        self._address = ""
        self._http_address = ""
        try:  # a Ray async actor is constructed on its running loop: start now (and resume jobs) unasked
            self._start = asyncio.get_running_loop().create_task(self._serve())
        except RuntimeError:  # constructed outside a loop (in-process tests): start on the first ready()
            pass

    async def ready(self) -> str:
        if self._start is None:
            self._start = asyncio.get_running_loop().create_task(self._serve())
        return await asyncio.shield(self._start)

    async def http_address(self) -> str:
        """The HTTP API's base URL (http[s]://host:port) once started; empty when the http section is off."""
        await self.ready()
        return self._http_address

    async def health(self) -> dict:
        o = self._orchestrator
        return {"service": SERVICE_NAME, "serving": self._server is not None, "address": self._address,
                "http_address": self._http_address, "layout": self._layout,
                "active_requests": o.active_requests if o else 0,
                "waiting_requests": o.admission.waiting if o else 0,
                "routes": {r.name: r.active for r in o.routes} if o else {},
                "faults": {service.address: {"available": service.available, "failures": service.failures,
                                             "recoveries": service.recoveries, "restarts": service.restarts}
                           for route in (o.routes if o else []) for service in (route.proposer, route.scorer)},
                "governor": {"arm": o.governor.arm, "tokens_per_second": o.governor.rates} if o else {},
                "jobs": {"journal": str(self._jobs.journal.path), "queued_items": self._jobs.queued_items,
                         "running_items": self._jobs.running_items, "resumed_items": self._resumed_items}
                if self._jobs else {}} | where()

    async def _serve(self) -> str:
        metrics = OrchestratorMetrics(self._config.served_model_name)
        tls = self._config.tls
        credentials = tls.channel_credentials()  # mutual TLS to the services when tls.cert/key are set too
        timeout_s = self._config.limits.recovery_timeout_s
        # A restarted orchestrator asks the service actors where they are now (they may have restarted too).
        self._drafts = await current_addresses(self._drafts, self._draft_actors)
        self._targets = await current_addresses(self._targets, self._target_actors)
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
        cfg, jobs = self._config.orchestrator, self._config.jobs
        self._jobs = JobRunner(Journal(jobs.resolved_path(cfg.name)), JobItems(self._orchestrator), jobs.concurrency,
                               jobs.max_attempts, self._config.limits.max_job_items)
        self._resumed_items = self._jobs.start()
        token = read_token(cfg.token_file) if cfg.token_file else ""
        try:
            self._server, port = await start_server(
                lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(
                    OrchestratorServicer(self._orchestrator, self._jobs), server),
                cfg.host, cfg.port, self._limits, [SERVICE_NAME], tls.server_credentials(client_api=True),
                (TokenCheck(token),) if token else ())
            if self._config.http.enabled:
                self._http_address = await self._serve_http(token)
        except BaseException:  # a failed start runs no jobs: the next start resumes them
            if self._server is not None:
                await self._server.stop(None)
                self._server = None
            await self._jobs.close()
            raise
        self._address = format_address(advertised_host(cfg.host), port)
        self._gauges = asyncio.get_running_loop().create_task(self._refresh_gauges())
        return self._address

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop serving: the APIs stop taking calls, those in flight get `grace_s`, the job workers stop (the
        journal keeps their items for the next start)."""
        if self._gauges is not None:
            self._gauges.cancel()
        if self._http is not None:
            self._http.server.should_exit = True
            await asyncio.wait([self._http.task], timeout=grace_s)
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        if self._jobs is not None:
            await self._jobs.close()

    async def _refresh_gauges(self) -> None:
        while True:
            await asyncio.sleep(GAUGE_REFRESH_S)
            self._orchestrator.metrics.running(self._orchestrator.active_requests)
            self._orchestrator.metrics.waiting(self._orchestrator.admission.waiting)

    async def _serve_http(self, token: str) -> str:
        http, tls = self._config.http, self._config.tls
        app = create_app(self._orchestrator, self._config.served_model_name, self._config.draft.model, token)
        self._http = await serve_http(app, http.host, http.port, tls)
        scheme = "https" if tls.enabled else "http"
        return f"{scheme}://{format_address(advertised_host(http.host), self._http.port)}"


async def current_addresses(addresses: list[str], actors: list) -> list[str]:
    """Each service's address: from its actor when there is one (a restarted service has a new port)."""
    return list(await asyncio.gather(*(actor.ready.remote() if actor is not None else _known(address)
                                       for address, actor in zip(addresses, actors, strict=True))))


async def _known(address: str) -> str:
    return address


def recovery(actor, timeout_s: float) -> Recovery:
    """How to bring back a service hosted by a Ray actor (None: a fixed address, nothing to restart)."""
    if actor is None:
        return Recovery(timeout_s=timeout_s)

    async def locate() -> str:
        return await actor.ready.remote()  # waits while Ray restarts it; a new incarnation binds a new port

    async def restart() -> None:
        import ray  # only a deployment on Ray has actors to restart

        ray.kill(actor, no_restart=False)  # Ray starts it again (max_restarts)

    return Recovery(locate, restart, timeout_s)
