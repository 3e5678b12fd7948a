"""`specdec demo`: start the whole system on the demo pair, run target-only and speculative decoding
over held-out code prompts, and print what speculation bought; beside it, what Hugging Face assisted
generation on the same pair, prompts and token count gets in this process.

Everything in one process tree: a local Ray instance, the draft and target services (each on its own
CPU, or GPU where there are two), the orchestrator, and a client of its gRPC address. The HF figure runs
in the calling process (`hf_baseline`), after the services' runs, at one torch thread as each service
runs (a second thread on a loaded 2-core machine made it 7x slower in `bench --compare-hf`); the faster
of the constant and heuristic schedules is shown. The draft is the best of the shipped ones
(`BEST_SHIPPED_DRAFT`) unless `--draft` or a config says otherwise; HF's assisted generation runs with the
standalone draft, having no feature-head path.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from specdec.config import resolve_model
from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client.grpc_client import Client
from specdec.orchestrator.measure.bench import BenchConfig, BenchRow, run_config, set_speedups
from specdec.orchestrator.measure.compare_hf import best_hf, run_hf_configs
from specdec.orchestrator.measure.hf_baseline import HFPair, HFRow, hf_configs

BEST_SHIPPED_DRAFT = "demo:head"  # the demo's draft unless told otherwise (the bench measures the shipped ones)
STANDALONE_DRAFT = resolve_model("demo:draft")  # HF's assistant when the draft is a feature head


@dataclass
class DemoResult:
    temperatures: list[float]
    rows: list[BenchRow]  # per temperature, in that order: target-only, then speculative
    hf_assisted: dict[float, HFRow]  # temperature -> the faster assisted schedule
    draft: str = ""  # what drafted: the model and its kind
    assistant: str = ""  # HF's assistant (the standalone draft)


def run_demo(address: str, num_prompts: int, max_new_tokens: int, gamma: int, temperature: float,
             console: Console) -> DemoResult:
    prompts = code_prompts(num_prompts, seed=7)
    temperatures = sorted({0.0, temperature})
    rows: list[BenchRow] = []
    hf_rows: list[HFRow] = []
    with Client(address) as client, Progress(console=console, transient=True) as progress:
        warm = progress.add_task("warming up", total=None)
        for g in (0, gamma):
            client.generate(prompts[0].prompt, max_new_tokens=16, gamma=g, temperature=0.0)
        progress.remove_task(warm)
        for temp in temperatures:
            name = "greedy" if temp == 0 else f"T={temp:g}"
            pair = [run_config(client, prompts, BenchConfig(f"{name} {mode}", mode, "sd", g), max_new_tokens, temp,
                               1, progress) for mode, g in (("target-only", 0), ("speculative", gamma))]
            set_speedups(pair, pair[0])
            rows += pair
        info = client.server_info()
        head = info["draft"].get("draft_kind") == "head"
        hf_pair = HFPair.from_services(info, STANDALONE_DRAFT if head else "")
        assisted = [c for c in hf_configs(gamma) if c.assisted]
        for temp in temperatures:
            hf_rows += run_hf_configs(hf_pair, [p.prompt for p in prompts], assisted, max_new_tokens, temp, 1,
                                      progress, threads=(1,))
    best_by_temperature: dict[float, HFRow] = {}
    for (_, temp), row in best_hf(hf_rows).items():
        if temp not in best_by_temperature or row.tokens_per_second > best_by_temperature[temp].tokens_per_second:
            best_by_temperature[temp] = row
    kind = "a feature head" if head else "a standalone draft model"
    return DemoResult(temperatures, rows, best_by_temperature, f"{info['draft']['model']} ({kind})",
                      STANDALONE_DRAFT if head else info["draft"]["model"])


def render(result: DemoResult, console: Console) -> None:
    rows = result.rows
    console.print(f"draft: {result.draft}; Hugging Face's assisted generation runs with {result.assistant}")
    table = Table(title="specdec demo: target-only vs speculative decoding (same system, same prompts, one run)")
    for column in ("run", "gamma", "tokens", "tokens/s", "speedup", "acceptance rate", "mean acc. length",
                   "wire B/token"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        drafted = row.config.gamma > 0
        table.add_row(row.config.label, str(row.config.gamma), str(row.output_tokens), f"{row.tokens_per_second:.1f}",
                      f"{row.speedup:.2f}x", f"{row.acceptance_rate:.3f}" if drafted else "-",
                      f"{row.mean_acceptance_length:.2f}" if drafted else "-",
                      f"{row.wire_bytes / max(1, row.output_tokens):.0f}")
    console.print(table)
    table = Table(title="against Hugging Face assisted generation in one process (same pair, prompts and tokens)")
    for column in ("temp.", "specdec target-only", "specdec speculative", "HF assisted (best)", "HF setting",
                   "speculative / HF"):
        table.add_column(column, justify="left" if column in ("temp.", "HF setting") else "right")
    for temp, target_only, speculative in zip(result.temperatures, rows[::2], rows[1::2], strict=True):
        hf = result.hf_assisted[temp]
        table.add_row("greedy" if temp == 0 else f"T={temp:g}", f"{target_only.tokens_per_second:.1f} tok/s",
                      f"{speculative.tokens_per_second:.1f} tok/s", f"{hf.tokens_per_second:.1f} tok/s",
                      f"{hf.config.label.removeprefix('HF assisted ')}, {hf.threads} thr.",
                      f"{speculative.tokens_per_second / hf.tokens_per_second:.2f}x")
    console.print(table)
    draft_ms = statistics.mean(r.draft_ms_per_token for r in rows if r.config.gamma)
    target_ms = statistics.mean(r.verify_ms_per_forward for r in rows if not r.config.gamma)
    console.print(f"measured c = draft forward / target forward = {draft_ms:.2f} ms / {target_ms:.2f} ms "
                  f"= {draft_ms / target_ms:.3f}")
    greedy = [r for r in rows if r.config.label.startswith("greedy")]
    same = greedy[0].outputs == greedy[1].outputs
    console.print(f"greedy speculative output identical to target-only output: {'yes' if same else 'NO'} "
                  f"({len(greedy[0].outputs)} prompts)")
