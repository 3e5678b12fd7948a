"""Host a model service (draft or target) as a grpc.aio server: inside a Ray actor, or as a plain process.

The server runs as a tracked task on the actor's event loop; `ready()` waits for it and returns the
address, re-raising a failed start (a model that would not load, a port that would not bind). Model
compute runs on one worker thread, never on the event loop, with torch threads bounded to the CPUs the
actor was given. This module knows nothing about what the service computes: subclasses say that.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import torch

from specdec.errors import InvalidField
from specdec.memory import steady_allocator
from specdec.net.rpc import RpcLimits, format_address, start_server
from specdec.net.security import TlsFiles
from specdec.services.runtime.batcher import MAX_BATCH_TOKENS
from specdec.services.runtime.gpu_fit import check_fits_share
from specdec.services.runtime.host import advertised_host, gpu_ids, where
from specdec.services.runtime.model import DTYPES, CausalLM, LoadSpec
from specdec.services.runtime.model_servicer import ModelServicerBase


class ModelServiceActor:
    """Base for the draft and target actors. Subclasses implement `register(server, lm, executor)`."""

    service_name = ""
    role = ""  # "draft" or "target": the serve config's section for this service

    def __init__(self, spec: LoadSpec, host: str = "127.0.0.1", port: int = 0, threads: int = 1,
                 limits: RpcLimits | None = None, max_batch: int = 64, max_sessions: int = 0,
                 session_idle_s: float = 0.0, tls: TlsFiles | None = None, gpu_share: float = 0.0,
                 max_batch_tokens: int = MAX_BATCH_TOKENS):
        """`gpu_share`: the GPUs this service was given; below 1, its share of one GPU's memory (the rest is
        another service's), checked against the model before it loads and enforced where CUDA is available."""
        steady_allocator()  # before the model thread and the gRPC server start
        self._spec, self._host, self._port, self._threads = spec, host, port, threads
        self.gpu_share = gpu_share
        self.max_batch = max_batch  # calls of different sessions run as one batched forward, up to this many
        self.max_batch_tokens = max_batch_tokens  # tokens a forward feeds, about; longer prompts go in chunks
        self.max_sessions = max_sessions  # 0: no limit; beyond it new sessions get RESOURCE_EXHAUSTED
        self.session_idle_s = session_idle_s  # > 0: sessions unused this long are ended (abandoned clients)
        self._reaper: asyncio.Task | None = None
        self._tls = tls or TlsFiles()
        self._limits = limits or RpcLimits()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model",
                                            initializer=torch.set_num_threads, initargs=(threads,))
        self._start: asyncio.Task | None = None
        self._server: grpc.aio.Server | None = None
        self._lm: CausalLM | None = None
        self._address = ""
        self.servicer: ModelServicerBase | None = None

    async def ready(self) -> str:
        if self._start is None:
            self._start = asyncio.get_running_loop().create_task(self._serve())
        return await asyncio.shield(self._start)

    async def health(self) -> dict:
        """Answers from the event loop: proves it is not blocked."""
        sizes = self.servicer.batcher.batch_sizes if self.servicer else []
        return {"service": self.service_name, "serving": self._server is not None, "model": self._spec.model,
                "address": self._address, "device": self._lm.device_description if self._lm else "",
                "gpus": self.gpu_share, "gpu_ids": gpu_ids(),
                "forward": self._lm.forward_kind if self._lm else "",
                "sessions": len(self._lm.sessions) if self._lm else 0,
                "expired_sessions": self._lm.expired if self._lm else 0,
                "replayed_rounds": self.servicer.rounds.replays if self.servicer else 0,
                "batches": len(sizes), "largest_batch": max(sizes, default=0)} | where()

    async def _serve(self) -> str:
        torch.set_num_threads(self._threads)
        loop = asyncio.get_running_loop()
        try:
            if (0 < self.gpu_share < 1 and torch.cuda.is_available() and self._spec.resolved_device().startswith("cuda")
                    and self._spec.kind != "head"):  # a head is a fraction of its target's size
                await loop.run_in_executor(self._executor, check_fits_share, self._spec.model,
                                           DTYPES[self._spec.dtype], self.gpu_share, self.max_batch)
                torch.cuda.set_per_process_memory_fraction(self.gpu_share)
            self._lm = lm = await loop.run_in_executor(self._executor, self.load, self._spec, self.max_sessions)
        except InvalidField as exc:  # the GPUs it was given do not fit the model: name the config's field
            raise exc.within(self.role) from None

        def register(server: grpc.aio.Server) -> None:
            self.servicer = self.register(server, lm, self._executor)

        self._server, port = await start_server(register, self._host, self._port, self._limits, [self.service_name],
                                                self._tls.server_credentials())
        self._address = format_address(advertised_host(self._host), port)
        if self.session_idle_s > 0:
            self._reaper = loop.create_task(self._expire_idle_sessions())
        return self._address

    async def _expire_idle_sessions(self) -> None:
        """End abandoned sessions, on the model thread (the only one that touches the sessions), and forget
        their rounds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(30.0, self.session_idle_s / 4))
            expired = await loop.run_in_executor(self._executor, self._lm.expire_idle, self.session_idle_s)
            self.servicer.forget(expired)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop serving: calls in flight get `grace_s` to finish; then the model thread ends."""
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def load(self, spec: LoadSpec, max_sessions: int) -> CausalLM:
        """The service's model (on the model thread)."""
        return CausalLM(spec, max_sessions)

    def register(self, server: grpc.aio.Server, lm: CausalLM, executor: ThreadPoolExecutor) -> ModelServicerBase:
        raise NotImplementedError
