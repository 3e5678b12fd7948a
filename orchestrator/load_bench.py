"""`specdec bench --concurrency ...`: aggregate throughput under load.

For each number of concurrent streams, each decoding mode (target-only, serial speculation, overlapped
speculation, the `cost` controller) runs that many client streams at once, each sending requests back to
back, and the aggregate output tokens/s is measured over the wall time of the whole load. Every mode sees
the same prompts and seeds, in one run.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from specdec.demo_pair.heldout import CodePrompt
from specdec.orchestrator.bench import BenchConfig
from specdec.orchestrator.client import Client


def load_modes(gamma: int) -> list[BenchConfig]:
    return [BenchConfig("target-only", "baseline", "sd", 0),
            BenchConfig(f"serial gamma={gamma}", "fixed", "sd", gamma),
            BenchConfig(f"overlapped gamma={gamma}", "overlap", "sd", gamma, overlap=True),
            BenchConfig("cost, overlapped", "controller", "sd", gamma, controller="cost", overlap=True)]


@dataclass
class LoadRow:
    mode: str
    concurrency: int
    requests: int = 0
    tokens: int = 0
    wall_seconds: float = 0.0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    settled_gammas: list[float] = field(default_factory=list)  # mean gamma of each request's second half

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def settled_gamma(self) -> float:
        return statistics.mean(self.settled_gammas) if self.settled_gammas else 0.0

    def record(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "settled_gammas"}
        out |= {"tokens_per_second": self.tokens_per_second, "acceptance_rate": self.acceptance_rate,
                "settled_gamma": self.settled_gamma}
        return out


def run_load(client: Client, prompts: list[CodePrompt], modes: list[BenchConfig], concurrencies: list[int],
             requests_per_stream: int, max_new_tokens: int, temperature: float, seed: int,
             progress: Progress) -> list[LoadRow]:
    rows = []
    task = progress.add_task("load", total=len(modes) * len(concurrencies))
    for concurrency in concurrencies:
        for mode in modes:
            progress.update(task, description=f"{mode.label} x {concurrency} streams")
            row = LoadRow(mode.label, concurrency)

            def stream(index: int, mode: BenchConfig = mode, row: LoadRow = row) -> None:
                for k in range(requests_per_stream):
                    prompt = prompts[(index * requests_per_stream + k) % len(prompts)]
                    out = client.generate(prompt.prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                          gamma=mode.gamma, gamma_controller=mode.controller, overlap=mode.overlap,
                                          seed=seed + index * 1000 + k, ignore_eos=True)
                    stats = out.stats
                    row.requests += 1
                    row.tokens += stats["output_tokens"]
                    row.num_draft_tokens += stats["num_draft_tokens"]
                    row.num_accepted_tokens += stats["num_accepted_tokens"]
                    trace = stats["gamma_trace"]
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
    for column in ("mode", "streams", "requests", "tokens/s", "vs target-only", "vs 1 stream", "acc. rate",
                   "settled gamma"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    baseline = {r.concurrency: r.tokens_per_second for r in rows if r.mode == "target-only"}
    single = {r.mode: r.tokens_per_second for r in rows if r.concurrency == min(x.concurrency for x in rows)}
    for r in rows:
        table.add_row(r.mode, str(r.concurrency), str(r.requests), f"{r.tokens_per_second:.1f}",
                      f"{r.tokens_per_second / baseline[r.concurrency]:.2f}x",
                      f"{r.tokens_per_second / single[r.mode]:.2f}x", f"{r.acceptance_rate:.3f}",
                      f"{r.settled_gamma:.2f}")
    console.print(table)
