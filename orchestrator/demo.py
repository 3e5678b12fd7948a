"""`specdec demo`: start the whole system on the demo pair, run target-only and speculative decoding
over held-out code prompts, and print what speculation bought.

Everything in one process tree: a local Ray instance, the draft and target services (each on its own
CPU, or GPU where there are two), the orchestrator, and a client of its gRPC address.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from specdec.demo_pair.heldout import code_prompts
from specdec.orchestrator.client import Client


@dataclass
class RunSummary:
    label: str
    temperature: float
    gamma: int
    tokens: int
    seconds: float
    num_draft_tokens: int
    num_accepted_tokens: int
    num_drafts: int
    draft_seconds: float
    num_draft_forwards: int
    verify_seconds: float
    num_verify_forwards: int
    wire_bytes: int
    outputs: list[list[int]]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else float("nan")

    @property
    def mean_acceptance_length(self) -> float:
        return 1 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0

    @property
    def draft_forward_ms(self) -> float:
        return 1000 * self.draft_seconds / self.num_draft_forwards if self.num_draft_forwards else float("nan")


def run_config(client: Client, prompts: list[str], label: str, temperature: float, gamma: int,
               max_new_tokens: int, seed: int, progress: Progress) -> RunSummary:
    task = progress.add_task(label, total=len(prompts))
    summary = RunSummary(label, temperature, gamma, 0, 0.0, 0, 0, 0, 0.0, 0, 0.0, 0, 0, [])
    for index, prompt in enumerate(prompts):
        completion = client.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, gamma=gamma,
                                     seed=seed + index, ignore_eos=True)
        stats = completion.stats
        summary.tokens += stats["output_tokens"]
        summary.seconds += stats["seconds"]
        for key in ("num_draft_tokens", "num_accepted_tokens", "num_drafts", "draft_seconds", "num_draft_forwards",
                    "verify_seconds", "num_verify_forwards", "wire_bytes"):
            setattr(summary, key, getattr(summary, key) + stats[key])
        summary.outputs.append(completion.token_ids)
        progress.advance(task)
    return summary


def run_demo(address: str, num_prompts: int, max_new_tokens: int, gamma: int, temperature: float,
             console: Console) -> list[RunSummary]:
    prompts = [p.prompt for p in code_prompts(num_prompts, seed=7)]
    runs: list[RunSummary] = []
    with Client(address) as client, Progress(console=console, transient=True) as progress:
        warm = progress.add_task("warming up", total=None)
        for g in (0, gamma):
            client.generate(prompts[0], max_new_tokens=16, gamma=g, temperature=0.0)
        progress.remove_task(warm)
        for temp in sorted({0.0, temperature}):
            name = "greedy" if temp == 0 else f"T={temp:g}"
            runs.append(run_config(client, prompts, f"{name} target-only", temp, 0, max_new_tokens, 1, progress))
            runs.append(run_config(client, prompts, f"{name} speculative", temp, gamma, max_new_tokens, 1, progress))
    return runs


def render(runs: list[RunSummary], console: Console) -> None:
    table = Table(title="specdec demo: target-only vs speculative decoding (same system, same prompts)")
    for column in ("run", "gamma", "tokens", "tokens/s", "speedup", "acceptance rate", "mean acc. length",
                   "wire B/token"):
        table.add_column(column, justify="right" if column != "run" else "left")
    baseline_tps = {}
    target_ms = []
    for run in runs:
        if run.gamma == 0:
            baseline_tps[run.temperature] = run.tokens_per_second
            target_ms.append(1000 * run.verify_seconds / max(1, run.num_verify_forwards))
        speedup = run.tokens_per_second / baseline_tps[run.temperature]
        table.add_row(run.label, str(run.gamma), str(run.tokens), f"{run.tokens_per_second:.1f}", f"{speedup:.2f}x",
                      "-" if run.gamma == 0 else f"{run.acceptance_rate:.3f}",
                      "-" if run.gamma == 0 else f"{run.mean_acceptance_length:.2f}",
                      f"{run.wire_bytes / max(1, run.tokens):.0f}")
    console.print(table)
    draft_ms = statistics.mean(r.draft_forward_ms for r in runs if r.gamma)
    target_forward_ms = statistics.mean(target_ms)
    console.print(f"measured c = draft forward / target forward = {draft_ms:.2f} ms / {target_forward_ms:.2f} ms "
                  f"= {draft_ms / target_forward_ms:.3f}")
    greedy = [r for r in runs if r.temperature == 0]
    same = greedy[0].outputs == greedy[1].outputs
    console.print(f"greedy speculative output identical to target-only output: {'yes' if same else 'NO'} "
                  f"({len(greedy[0].outputs)} prompts)")
