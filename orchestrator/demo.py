"""`specdec demo`: start the whole system on the demo pair, run target-only and speculative decoding
over held-out code prompts, and print what speculation bought.

Everything in one process tree: a local Ray instance, the draft and target services (each on its own
CPU, or GPU where there are two), the orchestrator, and a client of its gRPC address.
"""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.bench import BenchConfig, BenchRow, run_config, set_speedups
from specdec.orchestrator.client import Client


def run_demo(address: str, num_prompts: int, max_new_tokens: int, gamma: int, temperature: float,
             console: Console) -> list[BenchRow]:
    prompts = code_prompts(num_prompts, seed=7)
    rows: list[BenchRow] = []
    with Client(address) as client, Progress(console=console, transient=True) as progress:
        warm = progress.add_task("warming up", total=None)
        for g in (0, gamma):
            client.generate(prompts[0].prompt, max_new_tokens=16, gamma=g, temperature=0.0)
        progress.remove_task(warm)
        for temp in sorted({0.0, temperature}):
            name = "greedy" if temp == 0 else f"T={temp:g}"
            pair = [run_config(client, prompts, BenchConfig(f"{name} {mode}", mode, "sd", g), max_new_tokens, temp,
                               1, progress) for mode, g in (("target-only", 0), ("speculative", gamma))]
            set_speedups(pair, pair[0])
            rows += pair
    return rows


def render(rows: list[BenchRow], console: Console) -> None:
    table = Table(title="specdec demo: target-only vs speculative decoding (same system, same prompts, one run)")
    for column in ("run", "gamma", "tokens", "tokens/s", "speedup", "acceptance rate", "mean acc. length",
                   "wire B/token"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        drafted = row.config.gamma > 0
        table.add_row(row.config.label, str(row.config.gamma), str(row.tokens), f"{row.tokens_per_second:.1f}",
                      f"{row.speedup:.2f}x", f"{row.acceptance_rate:.3f}" if drafted else "-",
                      f"{row.mean_acceptance_length:.2f}" if drafted else "-",
                      f"{row.wire_bytes / max(1, row.tokens):.0f}")
    console.print(table)
    draft_ms = statistics.mean(r.draft_ms_per_token for r in rows if r.config.gamma)
    target_ms = statistics.mean(r.verify_ms_per_forward for r in rows if not r.config.gamma)
    console.print(f"measured c = draft forward / target forward = {draft_ms:.2f} ms / {target_ms:.2f} ms "
                  f"= {draft_ms / target_ms:.3f}")
    greedy = [r for r in rows if r.config.label.startswith("greedy")]
    same = greedy[0].outputs == greedy[1].outputs
    console.print(f"greedy speculative output identical to target-only output: {'yes' if same else 'NO'} "
                  f"({len(greedy[0].outputs)} prompts)")
