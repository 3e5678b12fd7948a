"""`specdec loadtest`: drive an orchestrator at a given load and measure latency and throughput.

Two kinds of load. Closed loop: a fixed number of concurrent streams, each sending its next request as
soon as the last one finished. Open loop: requests arrive at a rate, with gamma-distributed gaps
(burstiness 1 is a Poisson process; below 1 burstier, above 1 more regular), whatever the server's
state. Every request streams; each stream chunk carries one round's tokens. The figures are defined as
vLLM's `bench serve` defines them, from the client's clock, request by request:
- TTFT: from sending the request to the first chunk that carries tokens;
- E2E: from sending the request to the last chunk that carries tokens;
- TPOT: (E2E - TTFT) / (output tokens - 1), over requests of more than one token (tokens counted, not
  chunks: speculation's several tokens a chunk lower it);
- ITL: the gap between consecutive chunks that carry tokens (a chunk of several tokens is one gap);
- output tokens/s and requests/s over the load's wall time; goodput: requests/s of those meeting every
  latency limit given (`--slo ttft=S tpot=S e2e=S`, seconds; vLLM's `--goodput` takes milliseconds).

The pure parts (arrival times, request records, summaries) are functions here; `run_load` is the thin
driver over a client: the gRPC `Client` (endpoint `grpc`) or, over the OpenAI-compatible HTTP API, the
`OpenAIClient` (endpoint `openai`), which stream the same deltas and stats. `LoadGenerator` runs a share
of a load as a Ray actor on another node.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.client.openai_client import HttpError, OpenAIClient
from specdec.orchestrator.jobs.inputs import json_lines

PERCENTILES = (50, 90, 99)
MAX_OPEN_LOOP_THREADS = 512
ENDPOINTS = ("grpc", "openai")


@dataclass(frozen=True)
class LoadSpec:
    """One load: `concurrency` streams (closed loop), or `rate` requests/s (open loop) when rate > 0."""

    concurrency: int = 0
    rate: float = 0.0
    burstiness: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.rate:g} req/s" if self.rate > 0 else f"{self.concurrency} streams"

    def share(self, part: int, parts: int) -> LoadSpec:
        """This load split over `parts` generators: streams dealt out, the rate divided."""
        if self.rate > 0:
            return LoadSpec(rate=self.rate / parts, burstiness=self.burstiness)
        return LoadSpec(concurrency=self.concurrency // parts + (part < self.concurrency % parts))


@dataclass(frozen=True)
class RequestPlan:
    prompt: str
    max_new_tokens: int
    seed: int | None  # None: the server draws one (a seeded sampled request gets a fixed gamma by default)


@dataclass
class RequestRecord:
    """What one request did, seen from the client. Times in seconds from the request's send."""

    ok: bool = False
    status: str = "OK"
    error: str = ""
    sent: float = 0.0  # seconds since the load started
    ttft: float = 0.0
    e2e: float = 0.0
    output_tokens: int = 0
    itl: list[float] = field(default_factory=list)  # one gap per token-carrying chunk after the first
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    num_drafts: int = 0

    @property
    def tpot(self) -> float:
        return (self.e2e - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


def arrival_times(count: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times (seconds from the start) of `count` requests at `rate`/s with gamma-distributed gaps of
    shape `burstiness` and mean 1/rate."""
    if rate <= 0 or burstiness <= 0:
        raise ValueError("rate and burstiness must be positive")
    rng = random.Random(seed)
    theta = 1.0 / (rate * burstiness)
    times, now = [], 0.0
    for _ in range(count):
        times.append(now)
        now += rng.gammavariate(burstiness, theta)
    return times


def chunk_gaps(chunks: list[tuple[float, int]]) -> list[float]:
    """Inter-token latencies as vLLM's `bench serve` measures them, from (arrival time, tokens) per chunk that
    carries tokens: the gap between each chunk and the one before, however many tokens it carries."""
    return [at - before for (before, _), (at, _) in zip(chunks, chunks[1:], strict=False)]


def connect(endpoint: str, address: str, connection: dict | None = None):
    """A context manager giving the client of `endpoint` at `address`; `connection`: TLS and token keyword
    arguments (tls_ca, token, and for gRPC mutual TLS cert and key)."""
    connection = connection or {}
    if endpoint == "openai":
        return contextlib.nullcontext(OpenAIClient(address, tls_ca=connection.get("tls_ca"),
                                                   token=connection.get("token")))
    return Client(address, timeout_s=None, **connection)


def run_request(client: Client | OpenAIClient, plan: RequestPlan, params: dict, load_started: float) -> RequestRecord:
    """Send one streaming request and time every chunk."""
    record = RequestRecord(sent=time.perf_counter() - load_started)
    started = time.perf_counter()
    chunks: list[tuple[float, int]] = []
    try:
        for delta in client.stream(plan.prompt, max_new_tokens=plan.max_new_tokens, seed=plan.seed, **params):
            if delta.token_ids:
                chunks.append((time.perf_counter() - started, len(delta.token_ids)))
            if delta.stats:
                record.num_draft_tokens = delta.stats["num_draft_tokens"]
                record.num_accepted_tokens = delta.stats["num_accepted_tokens"]
                record.num_drafts = delta.stats["num_drafts"]
        record.ok = True
    except grpc.RpcError as exc:
        record.status, record.error = exc.code().name, (exc.details() or "")[:200]
    except HttpError as exc:
        record.status, record.error = exc.status, exc.message[:200]
    record.e2e = chunks[-1][0] if chunks else time.perf_counter() - started
    record.output_tokens = sum(tokens for _, tokens in chunks)
    record.ttft = chunks[0][0] if chunks else 0.0
    record.itl = chunk_gaps(chunks)
    return record


def run_load(address: str, load: LoadSpec, plans: list[RequestPlan], params: dict, seed: int = 0,
             on_done=None, connection: dict | None = None, endpoint: str = "grpc"
             ) -> tuple[list[RequestRecord], float]:
    """Run `plans` against `address` under `load`; return the records (in plan order) and the duration.
    `connection`: the client's TLS and token keyword arguments (see `connect`)."""
    records: list[RequestRecord | None] = [None] * len(plans)
    with connect(endpoint, address, connection) as client:
        started = time.perf_counter()

        def one(index: int) -> None:
            records[index] = run_request(client, plans[index], params, started)
            if on_done:
                on_done()

        if load.rate > 0:
            times = arrival_times(len(plans), load.rate, load.burstiness, seed)
            with ThreadPoolExecutor(min(len(plans), MAX_OPEN_LOOP_THREADS) or 1) as pool:
                for index, at in enumerate(times):
                    delay = started + at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one, index)
        else:
            taken = iter(range(len(plans)))
            lock = threading.Lock()

            def stream() -> None:
                while True:
                    with lock:
                        index = next(taken, None)
                    if index is None:
                        return
                    one(index)

            with ThreadPoolExecutor(max(1, load.concurrency)) as pool:
                for _ in range(max(1, load.concurrency)):
                    pool.submit(stream)
        duration = time.perf_counter() - started
    return [r for r in records if r is not None], duration


class LoadGenerator:
    """A Ray actor that runs its share of a load, so that one client machine is not the bottleneck."""

    def run(self, address: str, load: LoadSpec, plans: list[RequestPlan], params: dict, seed: int,
            connection: dict | None = None, endpoint: str = "grpc") -> dict:
        records, duration = run_load(address, load, plans, params, seed, connection=connection, endpoint=endpoint)
        return {"records": [asdict(r) for r in records], "duration": duration}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, **{f"p{p}": 0.0 for p in PERCENTILES if p != 50}}
    ordered = sorted(values)
    out = {"mean": statistics.fmean(ordered), "median": statistics.median(ordered)}
    for p in PERCENTILES:
        if p != 50:
            out[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]  # nearest rank
    return out


@dataclass(frozen=True)
class Slo:
    """Latency limits a request must meet to count toward goodput (0: no limit)."""

    ttft: float = 0.0
    tpot: float = 0.0
    e2e: float = 0.0

    def met(self, record: RequestRecord) -> bool:
        return record.ok and all(not limit or value <= limit for limit, value in
                                 ((self.ttft, record.ttft), (self.tpot, record.tpot), (self.e2e, record.e2e)))


def summarize(records: list[RequestRecord], duration: float, slo: Slo) -> dict:
    """The figures of one load: latencies, throughput, goodput, failures and the server's acceptance."""
    done = [r for r in records if r.ok]
    drafted = sum(r.num_draft_tokens for r in done)
    accepted = sum(r.num_accepted_tokens for r in done)
    drafts = sum(r.num_drafts for r in done)
    return {
        "requests": len(records), "completed": len(done), "duration_s": duration,
        "output_tokens": sum(r.output_tokens for r in done),
        "output_tokens_per_s": sum(r.output_tokens for r in done) / duration if duration else 0.0,
        "requests_per_s": len(done) / duration if duration else 0.0,
        "goodput_requests_per_s": sum(slo.met(r) for r in records) / duration if duration else 0.0,
        "failures": dict(Counter(r.status for r in records if not r.ok)),
        "ttft_s": percentiles([r.ttft for r in done]),
        "tpot_s": percentiles([r.tpot for r in done if r.output_tokens > 1]),
        "itl_s": percentiles([gap for r in done for gap in r.itl]),
        "e2e_s": percentiles([r.e2e for r in done]),
        "acceptance_rate": accepted / drafted if drafted else 0.0,
        "mean_acceptance_length": 1 + accepted / drafts if drafts else 1.0,
    }


def load_plans(source: str, count: int, max_new_tokens: int, seed: int, input_chars: int = 0,
               seeded: bool = False) -> list[RequestPlan]:
    """`count` requests from the held-out code ("heldout") or a JSONL file of {"prompt", optional
    "max_new_tokens"} lines, cycled as needed; `input_chars` > 0 keeps the last that many characters;
    `seeded`: request i carries the seed seed + i."""
    if source == "heldout":
        from specdec.demo_pair.heldout import code_prompts

        entries = [{"prompt": p.prompt} for p in code_prompts(min(count, 256), seed=seed)]
    else:
        try:
            lines = Path(source).read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--dataset: cannot read {source}: {exc.strerror}") from exc
        entries = []
        for number, entry in json_lines(lines, source):
            if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str) or not entry["prompt"]:
                raise ValueError(f"{source}:{number}: prompt: each line needs a non-empty string field 'prompt'")
            entries.append(entry)
        if not entries:
            raise ValueError(f"{source}: no prompts")
    plans = []
    for index in range(count):
        entry = entries[index % len(entries)]
        prompt = entry["prompt"][-input_chars:] if input_chars > 0 else entry["prompt"]
        plans.append(RequestPlan(prompt, int(entry.get("max_new_tokens", max_new_tokens)),
                                 seed + index if seeded else None))
    return plans


def run_sweep(address: str, loads: list[LoadSpec], modes: dict[str, dict], plans_for: callable, slo: Slo,
              generators: list | None = None, progress=None, seed: int = 0,
              connection: dict | None = None, endpoint: str = "grpc") -> list[dict]:
    """Every mode (name -> request parameters) at every load; one summary row each. With Ray generator
    actors, each load is split over them and their records merged."""
    rows = []
    for load in loads:
        plans = plans_for(load)
        for mode, params in modes.items():
            task = progress.add_task(f"{mode} at {load.label}", total=len(plans)) if progress else None
            advance = (lambda task=task: progress.advance(task)) if progress else None
            if generators:
                import ray

                shares = [plans[i::len(generators)] for i in range(len(generators))]
                results = ray.get([g.run.remote(address, load.share(i, len(generators)), share, params, seed + i,
                                                connection, endpoint)
                                   for i, (g, share) in enumerate(zip(generators, shares, strict=True)) if share])
                records = [RequestRecord(**r) for result in results for r in result["records"]]
                duration = max(result["duration"] for result in results)
            else:
                records, duration = run_load(address, load, plans, params, seed, advance, connection, endpoint)
            if progress:
                progress.remove_task(task)
            rows.append({"mode": mode, "load": load.label, "concurrency": load.concurrency, "rate": load.rate,
                         "burstiness": load.burstiness} | summarize(records, duration, slo))
    return rows
