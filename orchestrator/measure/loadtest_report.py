"""`specdec loadtest` output: a table on the console, and JSON, CSV and PNG plots in a folder: latencies
against load, throughput against load, and the one to read first, `tradeoff.png`: each configuration's
aggregate output tokens/s against its median time per output token, a point per load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"), ("e2e_s", "E2E"))


def print_rows(rows: list[dict], console: Console) -> None:
    table = Table(title="load test (latencies in ms: mean / median / p90 / p99)")
    for column in ("mode", "load", "done", "out tok/s", "req/s", "goodput", *(name for _, name in LATENCIES),
                   "acc. rate", "failures"):
        table.add_column(column, justify="left" if column in ("mode", "load") else "right")
    for row in rows:
        cells = [" / ".join(f"{1000 * row[key][stat]:.0f}" for stat in ("mean", "median", "p90", "p99"))
                 for key, _ in LATENCIES]
        failures = ", ".join(f"{code} {count}" for code, count in row["failures"].items()) or "-"
        table.add_row(row["mode"], row["load"], f"{row['completed']}/{row['requests']}",
                      f"{row['output_tokens_per_s']:.1f}", f"{row['requests_per_s']:.2f}",
                      f"{row['goodput_requests_per_s']:.2f}", *cells,
                      f"{row['acceptance_rate']:.3f}" if row["acceptance_rate"] else "-", failures)
    console.print(table)


def flat(row: dict) -> dict:
    """One CSV row: nested latency summaries become ttft_s_mean, ttft_s_p99, ...; failures a string."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict) and key != "failures":
            out |= {f"{key}_{stat}": v for stat, v in value.items()}
        elif key == "failures":
            out[key] = " ".join(f"{code}={count}" for code, count in value.items())
        else:
            out[key] = value
    return out


def write_report(rows: list[dict], meta: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "loadtest.json", out_dir / "loadtest.csv", out_dir / "latency.png",
             out_dir / "throughput.png", out_dir / "tradeoff.png"]
    paths[0].write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    flat_rows = [flat(row) for row in rows]
    with open(paths[1], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flat_rows[0]))
        writer.writeheader()
        writer.writerows(flat_rows)
    modes = list(dict.fromkeys(row["mode"] for row in rows))
    loads = list(dict.fromkeys(row["load"] for row in rows))

    def series(mode: str, pick) -> list[float]:
        by_load = {row["load"]: pick(row) for row in rows if row["mode"] == mode}
        return [by_load.get(load, float("nan")) for load in loads]

    fig, axes = plt.subplots(1, len(LATENCIES), figsize=(4 * len(LATENCIES), 3.8))
    for ax, (key, name) in zip(axes, LATENCIES, strict=True):
        for mode in modes:
            ax.plot(loads, series(mode, lambda r, k=key: 1000 * r[k]["median"]), marker="o", label=f"{mode} median")
            ax.plot(loads, series(mode, lambda r, k=key: 1000 * r[k]["p99"]), marker="x", linestyle="--",
                    label=f"{mode} p99")
        ax.set_title(f"{name} (ms)")
        ax.set_xlabel("load")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    fig, (tokens_ax, requests_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in modes:
        tokens_ax.plot(loads, series(mode, lambda r: r["output_tokens_per_s"]), marker="o", label=mode)
        requests_ax.plot(loads, series(mode, lambda r: r["requests_per_s"]), marker="o", label=f"{mode} requests/s")
        requests_ax.plot(loads, series(mode, lambda r: r["goodput_requests_per_s"]), marker="x", linestyle=":",
                         label=f"{mode} goodput")
    for ax, label in ((tokens_ax, "output tokens/s"), (requests_ax, "requests/s")):
        ax.set_xlabel("load")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[3], dpi=110)
    plt.close(fig)
    tradeoff_plot({mode: [(1000 * row["tpot_s"]["median"], row["output_tokens_per_s"], row["load"])
                          for row in rows if row["mode"] == mode] for mode in modes},
                  "median time per output token (ms)", paths[4])
    return paths


def tradeoff_plot(series: dict[str, list[tuple[float, float, str]]], latency_label: str, path: Path) -> None:
    """Throughput against latency: per configuration, a line through its (latency, aggregate tokens/s)
    points, each labelled with its load. Up and to the left is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, points in series.items():
        ax.plot([x for x, _, _ in points], [y for _, y, _ in points], marker="o", label=name)
        for x, y, load in points:
            ax.annotate(load, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(latency_label)
    ax.set_ylabel("aggregate output tokens/s")
    ax.set_title("throughput against latency (up and to the left is better)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
