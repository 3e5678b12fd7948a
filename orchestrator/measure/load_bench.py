"""`specdec bench --concurrency ...`: aggregate throughput under load.

For each number of concurrent streams, each decoding mode (target-only, the server's default
configuration as a user who sets nothing gets it, serial speculation at a fixed gamma, overlapped
speculation with speculation lanes, the `cost` controller with the server's load governor) runs that
many client streams at once, each sending requests back to back, and the aggregate output
tokens/s is measured over the wall time of the whole load. Every mode sees the same prompts, in one run;
requests carry no seed, as a user's load does (a seeded sampled request would get a fixed gamma by
default, not the adaptive controller).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from specdec.demo_pair.heldout import CodePrompt
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.measure.bench import BenchConfig, BenchRow


DEFAULT = "default config"  # the mode that sets nothing: the server's defaults


def load_modes(gamma: int, lanes: int) -> list[BenchConfig]:
    return [BenchConfig("target-only", "baseline", "sd", 0),
            BenchConfig(DEFAULT, "default", "", None, controller="", overlap=None, speculation_lanes=None),
            BenchConfig(f"serial gamma={gamma}", "fixed", "sd", gamma),
            BenchConfig(f"overlapped gamma={gamma}, {lanes} lanes", "overlap", "sd", gamma, overlap=True,
                        speculation_lanes=lanes),
            BenchConfig("cost", "controller", "sd", gamma, controller="cost")]


@dataclass
class LoadRow:
    mode: BenchConfig
    concurrency: int
    totals: BenchRow  # the requests' stats summed
    wall_seconds: float = 0.0
    settled_gammas: list[float] = field(default_factory=list)  # mean gamma of each request's second half

    @property
    def tokens_per_second(self) -> float:
        """Aggregate output tokens/s over the wall time of the load."""
        return self.totals.output_tokens / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def settled_gamma(self) -> float:
        return statistics.mean(self.settled_gammas) if self.settled_gammas else 0.0

    def record(self) -> dict:
        t = self.totals
        return {"mode": self.mode.label, "concurrency": self.concurrency, "requests": t.prompts,
                "tokens": t.output_tokens,
                "wall_seconds": self.wall_seconds, "tokens_per_second": self.tokens_per_second,
                "stream_tokens_per_second": t.tokens_per_second, "acceptance_rate": t.acceptance_rate,
                "mean_acceptance_length": t.mean_acceptance_length, "efficiency": t.efficiency,
                "draft_ms_per_token": t.draft_ms_per_token, "verify_ms_per_forward": t.verify_ms_per_forward,
                "rounds": t.num_rounds, "pre_drafted": t.num_pre_drafted, "lane_hits": t.num_lane_hits,
                "settled_gamma": self.settled_gamma}


def requests_per_stream(concurrency: int, per_stream: int, min_requests: int) -> int:
    """At least `per_stream` requests a stream and `min_requests` over the load, so light loads are timed too."""
    return max(per_stream, math.ceil(min_requests / concurrency))


def run_load(client: Client, prompts: list[CodePrompt], modes: list[BenchConfig], concurrencies: list[int],
             per_stream: int, min_requests: int, max_new_tokens: int, temperature: float,
             progress: Progress) -> list[LoadRow]:
    rows = []
    task = progress.add_task("load", total=len(modes) * len(concurrencies))
    for concurrency in concurrencies:
        count = requests_per_stream(concurrency, per_stream, min_requests)
        for mode in modes:
            progress.update(task, description=f"{mode.label} x {concurrency} streams")
            row = LoadRow(mode, concurrency, BenchRow(mode))
            adding = threading.Lock()  # the streams' threads add to one row

            def stream(index: int, mode: BenchConfig = mode, row: LoadRow = row, count: int = count,
                       adding: threading.Lock = adding) -> None:
                for k in range(count):
                    prompt = prompts[(index * count + k) % len(prompts)]
                    out = client.generate(prompt.prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                          gamma=mode.gamma, gamma_controller=mode.controller, overlap=mode.overlap,
                                          speculation_lanes=mode.speculation_lanes, ignore_eos=True)
                    trace = out.stats["gamma_trace"]
                    with adding:
                        row.totals.add(out.stats, out.token_ids)
                        if trace:
                            row.settled_gammas.append(statistics.mean(trace[len(trace) // 2:]))

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(stream, range(concurrency)))
            row.wall_seconds = time.perf_counter() - started
            rows.append(row)
            progress.advance(task)
    return rows


def print_load(rows: list[LoadRow], console: Console) -> None:
    table = Table(title="aggregate throughput under load (one run; tokens/s over the wall time of each load)")
    for column in ("mode", "streams", "requests", "tokens/s", "vs target-only", "vs 1 stream", "vs serial",
                   "acc. rate", "efficiency", "pre-drafted", "settled gamma"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    baseline = {r.concurrency: r.tokens_per_second for r in rows if r.mode.group == "baseline"}
    serial = {r.concurrency: r.tokens_per_second for r in rows if r.mode.group == "fixed"}
    lightest = min(r.concurrency for r in rows)
    single = {r.mode.label: r.tokens_per_second for r in rows if r.concurrency == lightest}
    for r in rows:
        t = r.totals
        table.add_row(r.mode.label, str(r.concurrency), str(t.prompts), f"{r.tokens_per_second:.1f}",
                      _ratio(r.tokens_per_second, baseline.get(r.concurrency)),
                      _ratio(r.tokens_per_second, single.get(r.mode.label)),
                      _ratio(r.tokens_per_second, serial.get(r.concurrency)), f"{t.acceptance_rate:.3f}",
                      f"{t.efficiency:.2f}" if t.num_draft_tokens else "-",
                      f"{t.num_pre_drafted / t.num_rounds:.2f}" if t.num_rounds and r.mode.overlap else "-",
                      f"{r.settled_gamma:.2f}")
    console.print(table)
    console.print("efficiency: a stream's tokens/s over the ideal (tokens per round / max(verify, gamma x draft "
                  "time)); pre-drafted: share of rounds whose window was drafted during the previous verification")


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"
