"""The GPU check's two helpers (scripts/gpu_check.sh): a sampler of each process's GPU memory while the
check runs, and the one summary it prints and writes as JSON.

`sample` polls `nvidia-smi` for the memory of every compute process and names each by its command line
(the draft service, the target service, the test run, ...), keeping each name's peak. `summarize` reads
the check's folder: each step's exit status and seconds, the tests' closing line, the bench's
compare_hf.json (tokens/s target-only and speculative, acceptance, c, the HF assisted figure, wire bytes
per token), the verify-time curves, and the memory peaks.

    python -m specdec.orchestrator.measure.gpu_report sample OUT/gpu-memory.json
    python -m specdec.orchestrator.measure.gpu_report summarize OUT
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROLES = (("service draft", "draft service"), ("service target", "target service"), ("pytest", "tests"),
         ("verify-curve", "verify-curve"), ("bench", "bench (HF baseline in-process)"),
         ("demo", "demo (HF baseline in-process)"))


def role_of(command_line: str) -> str:
    return next((name for marker, name in ROLES if marker in command_line), "other")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gpu_processes() -> list[tuple[int, int]]:
    """(pid, MiB) of every process using a GPU now, from nvidia-smi; [] where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [(int(pid), int(mib)) for pid, mib in re.findall(r"(\d+),\s*(\d+)", out)]


def sample(path: Path, interval_s: float = 0.5) -> None:
    """Until killed: every interval, each role's peak GPU memory (MiB) so far, rewritten to `path`."""
    peaks: dict[str, int] = {}
    while True:
        for pid, mib in gpu_processes():
            role = role_of(command_line(pid))
            peaks[role] = max(peaks.get(role, 0), mib)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(peaks))
        partial.replace(path)  # a kill mid-write leaves the last whole file
        time.sleep(interval_s)


def steps(folder: Path) -> dict[str, dict]:
    """Each step's exit status and seconds, from steps.txt lines "name rc=N Ss"."""
    found = {}
    text = (folder / "steps.txt").read_text() if (folder / "steps.txt").exists() else ""
    for name, rc, seconds in re.findall(r"^(\S+) rc=(-?\d+) (\d+)s$", text, re.MULTILINE):
        found[name] = {"rc": int(rc), "seconds": int(seconds)}
    return found


def tests_line(folder: Path) -> str:
    """pytest's closing line ("12 passed, 3 skipped in 40.1s"), or what the log ends with."""
    log = folder / "tests.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    closing = [line.strip("= ") for line in lines if re.search(r"\d+ (passed|failed|error)", line)]
    return closing[-1] if closing else (lines[-1] if lines else "no test log")


def bench_figures(compare: dict) -> dict:
    """The headline figures of compare_hf.json, greedy and T=1."""
    out: dict = {"device": compare.get("meta", {}).get("device", ""), "dtype": compare.get("meta", {}).get("dtype", "")}
    bare = compare.get("bare_forwards", {})
    if bare.get("target_1"):
        out["c"] = bare["draft_1"] / bare["target_1"]
        out["bare_ms"] = {key: 1e3 * bare[key] for key in ("draft_1", "target_1", "target_verify")}
    for temperature, name in ((0.0, "greedy"), (1.0, "T=1")):
        figures = [f for f in compare.get("figures", []) if f["temperature"] == temperature]
        specdec = {f["label"]: f for f in figures if f["system"] == "specdec"}
        hf = {f["label"]: f["tokens_per_second"] for f in figures if f["system"] == "HF"}
        serial = next((f for label, f in specdec.items() if label.endswith(" serial")), None)
        best = max((f for label, f in specdec.items() if label != "target-only"),
                   key=lambda f: f["tokens_per_second"], default=None)
        target_only = specdec.get("target-only")
        if not target_only or not serial:
            continue
        assisted = max((tps for label, tps in hf.items() if "assisted" in label), default=0.0)
        out[name] = {"target_only_tps": target_only["tokens_per_second"],
                     "speculative_tps": serial["tokens_per_second"], "speculative": serial["label"],
                     "speedup": serial["tokens_per_second"] / target_only["tokens_per_second"],
                     "best": best["label"], "best_tps": best["tokens_per_second"],
                     "acceptance_rate": serial.get("acceptance_rate"),
                     "mean_acceptance_length": serial.get("mean_acceptance_length"),
                     "wire_bytes_per_token": serial.get("wire_bytes_per_token"),
                     "hf_generate_tps": hf.get("HF generate()", 0.0), "hf_assisted_tps": assisted,
                     "best_vs_hf_assisted": best["tokens_per_second"] / assisted if assisted else None}
    return out


def summarize(folder: Path) -> dict:
    def read(name: str) -> dict:
        try:
            return json.loads((folder / name).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    verify_curves = read("verify_curve.json")
    curves, failed_curves = verify_curves.get("curves", []), verify_curves.get("failed", [])
    return {"steps": steps(folder), "tests": tests_line(folder), "bench": bench_figures(read("bench/compare_hf.json")),
            "gpu_memory_mib": read("gpu-memory.json"),
            "verify_curve": [{"label": c["label"], "parameters": c["parameters"], "device": c["device"],
                              "ms": {p["positions"]: round(1e3 * p["seconds"], 3) for p in c["points"]}}
                             for c in curves],
            "verify_curve_failed": failed_curves,
            "nvidia_smi": (folder / "nvidia-smi.txt").read_text().strip().splitlines()[:12]
            if (folder / "nvidia-smi.txt").exists() else []}


def render(summary: dict) -> str:
    lines = ["== specdec GPU check =="]
    lines += [f"step {name}: {'ok' if s['rc'] == 0 else 'FAILED rc=' + str(s['rc'])} ({s['seconds']} s)"
              for name, s in summary["steps"].items()]
    lines.append(f"tests: {summary['tests']}")
    bench = summary["bench"]
    if "c" in bench:
        lines.append(f"bench on {bench['device']} {bench['dtype']}: c = draft / target forward = {bench['c']:.3f} "
                     f"(bare ms: {', '.join(f'{k} {v:.2f}' for k, v in bench['bare_ms'].items())})")
    for name in ("greedy", "T=1"):
        row = bench.get(name)
        if row:
            vs = f"{row['best_vs_hf_assisted']:.2f}x" if row["best_vs_hf_assisted"] else "-"
            lines.append(f"  {name}: target-only {row['target_only_tps']:.1f} tok/s, speculative "
                         f"{row['speculative_tps']:.1f} tok/s ({row['speculative']}, {row['speedup']:.2f}x), "
                         f"acceptance {row['acceptance_rate'] or 0:.3f}, mean acc. len "
                         f"{row['mean_acceptance_length'] or 0:.2f}, "
                         f"wire {row['wire_bytes_per_token'] or 0:.0f} B/token; "
                         f"HF generate {row['hf_generate_tps']:.1f}, HF assisted {row['hf_assisted_tps']:.1f} "
                         f"tok/s; best specdec {row['best']} {row['best_tps']:.1f} tok/s, / HF assisted {vs}")
    memory = summary["gpu_memory_mib"]
    lines.append("GPU memory peak (MiB): " + (", ".join(f"{k} {v}" for k, v in memory.items()) or "not measured"))
    for curve in summary["verify_curve"]:
        one = curve["ms"].get(1) or curve["ms"].get("1")
        points = ", ".join(f"{n}: {ms:.2f}" for n, ms in curve["ms"].items())
        lines.append(f"verify ms by positions, {curve['label']} ({curve['parameters'] / 1e6:.0f}M, {curve['device']}; "
                     f"1 position {one:.2f} ms): {points}")
    lines += [f"verify curve {failure['label']}: FAILED {failure['error']}"
              for failure in summary.get("verify_curve_failed", [])]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "sample":
        sample(Path(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "summarize":
        folder = Path(argv[1])
        summary = summarize(folder)
        (folder / "gpu_check.json").write_text(json.dumps(summary, indent=2))
        print(render(summary))
        print(f"wrote {folder / 'gpu_check.json'}")
        failed = [name for name, s in summary["steps"].items() if s["rc"] != 0]
        return 1 if failed else 0
    print("usage: python -m specdec.orchestrator.measure.gpu_report sample FILE | summarize FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
