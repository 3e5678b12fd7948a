"""Write a bench run out: JSON and CSV of every row, PNG plots, and tables on the console; the same for a
`--compare-hf` run (JSON and CSV of every figure, its per-round breakdown and its ratios)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from specdec.orchestrator.measure.bench import BenchRow, Findings  # noqa: E402
from specdec.orchestrator.measure.compare_hf import Comparison, round_breakdown  # noqa: E402
from specdec.orchestrator.measure.process_times import ROLES, THIS_PROCESS  # noqa: E402


def write_files(rows: list[BenchRow], found: Findings, meta: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [row.record() for row in rows]
    (out_dir / "bench.json").write_text(json.dumps({"meta": meta, "findings": asdict(found), "rows": records},
                                                   indent=2))
    with open(out_dir / "bench.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return [out_dir / "bench.json", out_dir / "bench.csv", *plot(rows, out_dir)]


def plot(rows: list[BenchRow], out_dir: Path) -> list[Path]:
    paths = [out_dir / "speed_quality.png", out_dir / "controllers.png", out_dir / "gamma_trace.png"]

    fig, ax = plt.subplots(figsize=(8, 5.5))
    series: dict[str, list[BenchRow]] = {}
    for row in rows:
        if row.config.group == "fsd":
            series.setdefault(f"fsd {row.config.rule_params['divergence']}", []).append(row)
        elif row.config.group in ("opt", "uno"):
            series.setdefault(row.config.group, []).append(row)
    for name, points in series.items():
        points.sort(key=lambda r: r.tokens_per_second)
        ax.plot([r.tokens_per_second for r in points], [r.token_accuracy for r in points], marker="o", label=name)
    for group, marker in (("fixed", "s"), ("baseline", "x"), ("typical", "^")):
        points = [r for r in rows if r.config.group == group]
        ax.scatter([r.tokens_per_second for r in points], [r.token_accuracy for r in points], marker=marker,
                   s=60, color="black", label={"fixed": "sd (gamma sweep)", "baseline": "target-only",
                                                "typical": "typical"}[group], zorder=3)
    ax.set_xlabel("tokens/s")
    ax.set_ylabel("token accuracy vs real continuation")
    ax.set_title("speed-quality: fsd per divergence, opt / uno against sd")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    chosen = [r for r in rows if r.config.group in ("baseline", "fixed", "controller")]
    colors = ["gray" if r.config.group == "baseline" else "tab:blue" if r.config.group == "fixed" else "tab:orange"
              for r in chosen]
    ax.bar([r.config.label.removeprefix("sd ") for r in chosen], [r.tokens_per_second for r in chosen], color=colors)
    ax.set_ylabel("tokens/s")
    ax.set_title("tokens/s by gamma controller (orange) and fixed gamma (blue)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in rows:
        if row.config.group == "controller":
            ax.plot(row.gamma_trace, label=row.config.controller, drawstyle="steps-post")
    ax.set_xlabel("round (first prompt)")
    ax.set_ylabel("tokens drafted")
    ax.set_title("gamma trace per controller")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def print_table(rows: list[BenchRow], found: Findings, console: Console) -> None:
    table = Table(title="specdec bench (one run; speedup against target-only in the same run)")
    for column in ("config", "tok/s", "speedup", "acc. rate", "mean acc. len", "efficiency", "line match",
                   "token acc.", "target loglik"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for r in rows:
        table.add_row(r.config.label, f"{r.tokens_per_second:.1f}", f"{r.speedup:.2f}x", f"{r.acceptance_rate:.3f}",
                      f"{r.mean_acceptance_length:.2f}", f"{r.efficiency:.2f}", f"{r.exact_line_match:.2f}",
                      f"{r.token_accuracy:.3f}", f"{r.target_loglik:.3f}")
    console.print(table)
    console.print(f"sd at gamma={found.sd_gamma}: {found.sd_tokens_per_second:.1f} tok/s, token accuracy "
                  f"{found.sd_token_accuracy:.3f}")
    if found.best_fsd:
        console.print(f"fsd within 2 points of sd's accuracy: best {found.best_fsd}, "
                      f"{found.fsd_gain_within_2_points:.2f}x sd's tokens/s")
    else:
        console.print("fsd: no setting stayed within 2 points of sd's accuracy")
    console.print(f"fixed gamma: median {found.median_fixed_tokens_per_second:.1f} tok/s, best {found.best_fixed} "
                  f"{found.best_fixed_tokens_per_second:.1f} tok/s")
    for label, tps in found.controllers.items():
        console.print(f"  {label}: {tps:.1f} tok/s = {tps / found.median_fixed_tokens_per_second:.2f}x median, "
                      f"{tps / found.best_fixed_tokens_per_second:.2f}x best fixed")
    for eps, figures in found.opt_vs_uno.items():
        console.print(f"  eps={eps}: opt {figures['opt_tokens_per_second']:.1f} tok/s, loglik drop "
                      f"{figures['opt_loglik_drop']:.3f}; uno {figures['uno_tokens_per_second']:.1f} tok/s, "
                      f"loglik drop {figures['uno_loglik_drop']:.3f}")


def _temperature_name(temperature: float) -> str:
    return "greedy" if temperature == 0 else f"T={temperature:g}"


ROLE_NAMES = [role for role, _ in ROLES] + [THIS_PROCESS]


def compare_records(comparison: Comparison) -> list[dict]:
    """One flat record per figure; specdec rows carry their per-round breakdown and acceptance."""
    rows = {(r.config.label.removeprefix("specdec "), t): r for t, rs in comparison.specdec.items() for r in rs}
    records = []
    for figure in comparison.figures():
        record = asdict(figure)
        row = rows.get((figure.label, figure.temperature)) if figure.system == "specdec" else None
        if row is not None:
            record |= {"num_rounds": row.num_rounds, "output_tokens": row.output_tokens,
                       "acceptance_rate": row.acceptance_rate,
                       "mean_acceptance_length": row.mean_acceptance_length,
                       "wire_bytes_per_token": row.wire_bytes / max(1, row.output_tokens),
                       "outcomes_per_accepted": row.num_outcomes_per_accepted,
                       "outcome_hits_per_accepted": row.num_outcome_hits_per_accepted,
                       **{f"round_{k}": v for k, v in asdict(round_breakdown(row)).items()},
                       **{f"cores_{role}": row.core_shares.get(role, 0.0) for role in ROLE_NAMES}}
        records.append(record)
    return records


def write_compare(comparison: Comparison, meta: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    records = compare_records(comparison)
    hf_runs = [{"label": r.config.label, "temperature": r.temperature, "threads": r.threads, "tokens": r.tokens,
                "seconds": r.seconds, "tokens_per_second": r.tokens_per_second} for r in comparison.hf]
    json_path, csv_path = out_dir / "compare_hf.json", out_dir / "compare_hf.csv"
    json_path.write_text(json.dumps({"meta": meta, "bare_forwards": asdict(comparison.bare), "figures": records,
                                     "hf_runs": hf_runs, "ratios": [asdict(r) for r in comparison.ratios()]},
                                    indent=2))
    fieldnames = list(dict.fromkeys(key for record in records for key in record))
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(records)
    return [json_path, csv_path]


def print_compare(comparison: Comparison, console: Console) -> None:
    bare = comparison.bare
    table = Table(title="specdec vs Hugging Face on the same pair, prompts and token count (one run)")
    for column in ("system", "configuration", "temp.", "tok/s", "vs HF generate()", "note"):
        table.add_column(column, justify="right" if column in ("tok/s", "vs HF generate()") else "left")
    figures = comparison.figures()
    generate = {f.temperature: f.tokens_per_second for f in figures if f.system == "HF" and f.label == "HF generate()"}
    for f in figures:
        table.add_row(f.system, f.label, _temperature_name(f.temperature), f"{f.tokens_per_second:.1f}",
                      f"{f.tokens_per_second / generate[f.temperature]:.2f}x", f.note)
    console.print(table)

    table = Table(title="specdec: where a round's time goes (ms per round; the five add up to the round)")
    for column in ("configuration", "temp.", "draft model", "target model", "transport", "waiting", "orchestrator",
                   "round", "tokens/round", "feature B/token"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for temperature, rows in comparison.specdec.items():
        for row in rows:
            b = round_breakdown(row)
            table.add_row(row.config.label.removeprefix("specdec "), _temperature_name(temperature),
                          *(f"{v:.2f}" for v in (b.draft_model_ms, b.target_model_ms, b.transport_ms, b.waiting_ms,
                                                 b.orchestrator_ms, b.round_ms)),
                          f"{row.output_tokens / row.num_rounds:.2f}" if row.num_rounds else "-",
                          f"{row.feature_bytes / row.output_tokens:.0f}" if row.feature_bytes else "-")
    console.print(table)
    console.print("overlapped rows: 'draft model' includes drafting hidden under the verify call, so 'transport' "
                  "there is understated by that hidden time")
    roles = ROLE_NAMES
    table = Table(title="on the cores: each local process's CPU time during each configuration, as a share of one "
                        "core (the machine's: " + f"{os.cpu_count()} cores)")
    for column in ("configuration", "temp.", *roles):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for temperature, rows in comparison.specdec.items():
        for row in rows:
            if row.core_shares:
                table.add_row(row.config.label.removeprefix("specdec "), _temperature_name(temperature),
                              *(f"{row.core_shares.get(role, 0.0):.2f}" for role in roles))
    console.print(table)
    table = Table(title="the speculation cache: windows drafted ahead for the outcome the round ended in "
                        "(hits / rounds, by accepted count; the last: every token accepted)")
    for column in ("configuration", "temp.", "rounds drafted ahead", "hit rate", "by accepted count"):
        table.add_column(column, justify="left" if column in ("configuration", "by accepted count") else "right")
    for temperature, rows in comparison.specdec.items():
        for row in rows:
            outcomes, hits = row.num_outcomes_per_accepted, row.num_outcome_hits_per_accepted
            if sum(outcomes):
                table.add_row(row.config.label.removeprefix("specdec "), _temperature_name(temperature),
                              str(sum(outcomes)), f"{sum(hits) / sum(outcomes):.2f}",
                              "  ".join(f"{k}: {h}/{n}" for k, (h, n) in enumerate(zip(hits, outcomes, strict=True))
                                        if n))
    console.print(table)

    table = Table(title="ratios (same run)")
    for column in ("comparison", "numerator", "denominator", "ratio"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for r in comparison.ratios():
        table.add_row(r.name, r.numerator, r.denominator, f"{r.value:.2f}x")
    console.print(table)
    console.print(f"bare forwards in this process (1 thread, cache of {bare.cache_tokens}, medians): draft 1 token "
                  f"{1000 * bare.draft_1:.2f} ms, target 1 token {1000 * bare.target_1:.2f} ms, target "
                  f"{bare.gamma + 1} tokens {1000 * bare.target_verify:.2f} ms; "
                  f"c = {bare.draft_1 / bare.target_1:.3f}; a prompt's prefill (mean): target "
                  f"{1000 * bare.target_prefill:.1f} ms, draft {1000 * bare.draft_prefill:.1f} ms")
