"""`specdec demo`, `bench` and `loadtest`: measurements on the demo pair, a local deployment or a running one."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from specdec.orchestrator.cli.common import (
    DEFAULT_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    add_renamed_option,
    connection,
    connection_args,
    launcher_arg,
    local_deployment,
    make_console,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run everything locally on the demo pair and print a speed table",
                          description="Start all services locally (on Ray, or as plain processes) on the demo "
                                      "model pair, decode held-out code prompts target-only and speculatively, "
                                      "and print tokens/s, speedup, "
                                      "acceptance rate, mean acceptance length and the measured cost ratio c.")
    demo.add_argument("--config", help="serve config YAML (default: the demo pair)")
    demo.add_argument("--draft", help="the draft (default: the config's, or without --config the best of the "
                                      "shipped drafts, demo:head, the demo target's feature head)")
    demo.add_argument("--prompts", type=int, default=8, help="number of held-out code prompts")
    demo.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per prompt")
    demo.add_argument("--gamma", type=int, default=4, help="draft tokens per round for the speculative runs")
    demo.add_argument("--temperature", type=float, default=1.0,
                      help="sampling temperature of the sampled runs (greedy runs are always included)")
    launcher_arg(demo)
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="sweep rules, thresholds, controllers and gamma; measure speed and quality",
                           description="Decode held-out code prompts under every configuration of a sweep, on a "
                                       "running deployment (--address) or a local one, and report tokens/s, speedup "
                                       "over target-only decoding in the same run, acceptance, efficiency against "
                                       "the ideal, and quality (exact next-line match, token accuracy against the "
                                       "real code, the target's log-likelihood of the output). Writes JSON, CSV "
                                       "and PNG plots.")
    bench.add_argument("--address", help="orchestrator to measure; default: start a local deployment")
    bench.add_argument("--config", help="serve config of the local deployment (default: the demo pair)")
    bench.add_argument("--target-model", help="target checkpoint for log-likelihoods (default: the server's)")
    bench.add_argument("--prompts", type=int, default=8, help="held-out code prompts per configuration")
    bench.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per prompt")
    bench.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of every run")
    bench.add_argument("--gamma", type=int, default=4, help="gamma of the rule and controller runs")
    bench.add_argument("--gammas", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8], help="fixed gammas to sweep")
    bench.add_argument("--controllers", nargs="+", default=["heuristic", "gammatune", "gammatune+", "cost"],
                       help="gamma controllers to compare with fixed gamma")
    bench.add_argument("--divergences", nargs="+", default=["kl", "reverse_kl", "js", "tv"],
                       help="fsd divergences to sweep")
    bench.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.3, 0.6, 1.0],
                       help="fsd thresholds T to sweep")
    bench.add_argument("--epsilons", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4],
                       help="opt / uno over-acceptance values to sweep")
    bench.add_argument("--num-draft-sequences", type=int, nargs="+", default=[2],
                       help="multi-draft M values (M > 1; --num-drafts: its deprecated spelling)")
    add_renamed_option(bench, "--num-drafts", "--num-draft-sequences", type=int, nargs="+")
    bench.add_argument("--seed", type=int, default=0, help="seed of prompts and requests")
    bench.add_argument("--concurrency", type=int, nargs="+",
                       help="measure aggregate tokens/s at these numbers of concurrent streams instead of the rule "
                            "sweep: target-only, serial, overlapped and the cost controller at each load")
    bench.add_argument("--requests-per-stream", type=int, default=2, help="with --concurrency: requests per stream")
    bench.add_argument("--min-requests", type=int, default=16,
                       help="with --concurrency: at least this many requests per load (light loads get more a stream)")
    bench.add_argument("--speculation-lanes", type=int, default=2,
                       help="speculation lanes of the overlapped runs with lanes (rejection outcomes pre-drafted for)")
    bench.add_argument("--compare-hf", action="store_true",
                       help="instead of the rule sweep: target-only, serial, overlapped and the cost controller "
                            "against Hugging Face generate() and assisted generation in this process on the same "
                            "pair, greedy and T=1, with each round's time broken down and the serial ideal from "
                            "bare forwards; writes compare_hf.json and compare_hf.csv")
    bench.add_argument("--drafts", nargs="*",
                       help="further drafts to add rows for, each in a local deployment of its own with the "
                            "config's target (the sweep: sd at each --gammas and under each controller; "
                            "--compare-hf: serial and the cost controller); default: the shipped feature head "
                            "(demo:head) with the demo config, none with --address or --config")
    bench.add_argument("--out", help="output folder (default: bench-results/<time>; bench-results with --compare-hf)")
    launcher_arg(bench)
    bench.set_defaults(func=cmd_bench)

    curve = sub.add_parser("verify-curve", help="time the target's verify against the positions it scores (1-64)",
                           description="Load models in this process as a target service would and time one "
                                       "verify call (n positions after 128 cached tokens) for each n: the "
                                       "device's cost curve, which decides the gamma that pays.")
    curve.add_argument("--model", action="append", help="a model to measure (repeatable; default: demo:target)")
    curve.add_argument("--random-llama-1b", action="store_true",
                       help="also a Llama of about 1B parameters with random weights, built locally (no download)")
    curve.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                       help="weights' dtype (default: bfloat16 on a GPU, float32 on CPUs)")
    curve.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:1, ...")
    curve.add_argument("--positions",
                       help="comma-separated numbers of positions (default: 1-8, 12, 16, 24, 32, 48, 64)")
    curve.add_argument("--repeats", type=int, default=20, help="timed calls per point (median; default: 20)")
    curve.add_argument("--compile", default="off",
                       help="comma-separated torch.compile modes of the lean forward to measure each model under: "
                            "off, default, reduce-overhead (default: off)")
    curve.add_argument("--json", help="also write the curves to this JSON file")
    curve.set_defaults(func=cmd_verify_curve)

    loadtest = sub.add_parser(
        "loadtest", help="load-test a running orchestrator: latency and throughput at several loads",
        description="Send streaming requests to an orchestrator at fixed concurrency (closed loop) or at a request "
                    "rate with Poisson or bursty arrivals (open loop), for each of several loads, and report time "
                    "to first token, time per output token, inter-token latency and end-to-end latency (mean, "
                    "median, p90, p99), output tokens/s, requests/s, goodput under latency limits, failures by "
                    "status code and the server's acceptance figures. Tokens are counted, not stream chunks. Writes "
                    "JSON, CSV and PNG plots.")
    loadtest.add_argument("--endpoint", choices=("grpc", "openai"), default="grpc",
                          help="grpc: the orchestrator's gRPC API; openai: the OpenAI-compatible HTTP API "
                               "(streamed /v1/completions)")
    loadtest.add_argument("--address",
                          help="gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051), or with --endpoint "
                               "openai the HTTP API's URL (default: $SPECDEC_HTTP_ADDRESS or http://127.0.0.1:8000)")
    loadtest.add_argument("--concurrency", type=int, nargs="+",
                          help="closed loop: numbers of concurrent streams to sweep (default: 1 4 16 64)")
    loadtest.add_argument("--rate", type=float, nargs="+", help="open loop: request rates (requests/s) to sweep")
    loadtest.add_argument("--burstiness", type=float, default=1.0,
                          help="open loop: shape of the gamma-distributed gaps; 1 is Poisson, < 1 burstier")
    loadtest.add_argument("--num-requests", type=int, default=0,
                          help="requests per load (default: max(16, 4 x concurrency))")
    loadtest.add_argument("--dataset", default="heldout",
                          help="'heldout' (the demo pair's held-out code) or a JSONL file of {\"prompt\": ..., "
                               "optional \"max_new_tokens\": ...} lines")
    loadtest.add_argument("--input-chars", type=int, default=0,
                          help="keep the last this many characters of each prompt (0: whole prompts)")
    loadtest.add_argument("--output-tokens", type=int, default=64,
                          help="tokens generated per request, past end-of-text (0: the server's default, "
                               "stopping at end-of-text)")
    loadtest.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    loadtest.add_argument("--gamma", type=int, help="draft tokens per round (default: the server's)")
    loadtest.add_argument("--compare-target-only", action="store_true",
                          help="also run every load target-only (gamma = 0) for comparison")
    loadtest.add_argument("--slo", nargs="*", default=[],
                          help="latency limits for goodput, in seconds: ttft=S tpot=S e2e=S")
    loadtest.add_argument("--ray-generators", type=int, default=0,
                          help="run the load from this many Ray actors spread over the cluster's nodes")
    loadtest.add_argument("--ray-address", default="auto", help="with --ray-generators: the Ray cluster")
    loadtest.add_argument("--seed", type=int, default=0, help="seed of prompts and arrivals")
    loadtest.add_argument("--seeded", action="store_true",
                          help="give request i the seed --seed + i: sampled output reproducible run to run (the "
                               "server then decodes sampled requests at its default gamma, fixed, instead of its "
                               "adaptive controller, whose windows follow the load)")
    loadtest.add_argument("--out", help="output folder (default: loadtest-results/<time>)")
    connection_args(loadtest)
    loadtest.set_defaults(func=cmd_loadtest)


def cmd_demo(args: argparse.Namespace) -> int:
    from specdec.orchestrator.measure.demo import BEST_SHIPPED_DRAFT, render, run_demo

    console = make_console()
    draft = args.draft or ("" if args.config else BEST_SHIPPED_DRAFT)
    with local_deployment(args.config, console, args.launcher, draft=draft) as address:
        render(run_demo(address, args.prompts, args.max_new_tokens, args.gamma, args.temperature, console), console)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from rich.progress import Progress

    from specdec.config import resolve_model
    from specdec.demo_pair.heldout import code_prompts
    from specdec.orchestrator.client.grpc_client import Client
    from specdec.orchestrator.measure.bench import build_sweep, draft_sweep, findings, run_sweep
    from specdec.orchestrator.measure.bench_report import print_table, write_files
    from specdec.orchestrator.measure.quality import TargetScorer

    console = make_console()
    if args.concurrency:
        return _bench_load(args, console)
    if args.compare_hf:
        return _bench_compare_hf(args, console)
    sweep = build_sweep(args.gammas, args.gamma, args.controllers, args.divergences, args.thresholds, args.epsilons,
                        args.num_draft_sequences)
    prompts = code_prompts(args.prompts, seed=args.seed)
    out_dir = Path(args.out or f"bench-results/{time.strftime('%Y%m%d-%H%M%S')}")
    drafts = further_drafts(args)
    if drafts is None:
        return 2
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console, args.launcher))
        client = stack.enter_context(Client(address))
        target_model = args.target_model or resolve_model(client.server_info()["target"]["model"])
        scorer = TargetScorer(target_model)
        console.print(f"{len(sweep)} configurations x {len(prompts)} prompts x {args.max_new_tokens} tokens, "
                      f"temperature {args.temperature}")
        with Progress(console=console, transient=True) as progress:
            rows = run_sweep(client, prompts, sweep, scorer, args.max_new_tokens, args.temperature, args.seed,
                             progress)
    for draft in drafts:
        with local_deployment(args.config, console, args.launcher, draft=draft) as other, Client(other) as client:
            name = draft_name(client, draft)
            with Progress(console=console, transient=True) as progress:
                rows += run_sweep(client, prompts, draft_sweep(name, args.gammas, args.gamma, args.controllers),
                                  scorer, args.max_new_tokens, args.temperature, args.seed, progress, rows[0])
    found = findings(rows, args.gamma)
    meta = {"prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "seed": args.seed, "address": address, "target_model": target_model}
    print_table(rows, found, console)
    for path in write_files(rows, found, meta, out_dir):
        console.print(f"wrote {path}")
    return 0


def further_drafts(args: argparse.Namespace) -> list[str] | None:
    """The drafts of --drafts (default: the shipped feature head with the demo config); None, said why, when
    they cannot run (an --address deployment is not started here)."""
    drafts = args.drafts if args.drafts is not None else ([] if args.address or args.config else ["demo:head"])
    if args.address and drafts:
        print("specdec bench: --drafts: needs local deployments (leave out --address)", file=sys.stderr)
        return None
    return drafts


def draft_name(client, draft: str) -> str:
    """A further draft's label: "head" for a feature head, else the draft as given."""
    return "head" if client.server_info()["draft"].get("draft_kind") == "head" else draft


def _bench_compare_hf(args: argparse.Namespace, console) -> int:
    from pathlib import Path

    from rich.progress import Progress

    from specdec.config import resolve_model
    from specdec.demo_pair.heldout import code_prompts
    from specdec.orchestrator.client.grpc_client import Client
    from specdec.orchestrator.measure.bench_report import print_compare, write_compare
    from specdec.orchestrator.measure.compare_hf import Comparison, run_hf_rows, run_specdec, specdec_configs
    from specdec.orchestrator.measure.hf_baseline import HFPair, bare_forwards

    prompts = code_prompts(args.prompts, seed=args.seed)
    drafts = further_drafts(args)
    if drafts is None:
        return 2
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console, args.launcher))
        client = stack.enter_context(Client(address))
        info = client.server_info()
        if info["draft"].get("draft_kind") == "head":
            print("specdec bench: --compare-hf: the deployment's own draft must be a standalone model (Hugging "
                  "Face's assisted generation runs with it); add feature heads with --drafts", file=sys.stderr)
            return 2
        models = {side: resolve_model(info[side]["model"]) for side in ("target", "draft")}
        with console.status("loading the pair in this process and timing bare forwards..."):
            pair = HFPair.from_services(info)
            bare = bare_forwards(pair, args.gamma, prompts=[p.prompt for p in prompts])
        with Progress(console=console, transient=True) as progress:
            specdec = run_specdec(client, prompts, specdec_configs(args.gamma), args.max_new_tokens, args.seed,
                                  progress)
    for draft in drafts:
        with local_deployment(args.config, console, args.launcher, draft=draft) as other, Client(other) as client:
            name = draft_name(client, draft)
            with Progress(console=console, transient=True) as progress:
                rows = run_specdec(client, prompts, specdec_configs(args.gamma, name), args.max_new_tokens,
                                   args.seed, progress)
            for temperature, added in rows.items():
                specdec[temperature] += added
            models[f"draft {name}"] = resolve_model(draft)
    with Progress(console=console, transient=True) as progress:
        hf = run_hf_rows(pair, prompts, args.gamma, args.max_new_tokens, args.seed, progress)
    comparison = Comparison(args.gamma, bare, specdec, hf, args.max_new_tokens)
    meta = {"prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "gamma": args.gamma, "seed": args.seed,
            "address": address, "device": str(pair.device), "dtype": info["target"].get("dtype", ""), **models}
    print_compare(comparison, console)
    if drafts:
        console.print("Hugging Face's assisted generation runs with the standalone draft: it has no feature-head path")
    for path in write_compare(comparison, meta, Path(args.out or "bench-results")):
        console.print(f"wrote {path}")
    return 0


def _bench_load(args: argparse.Namespace, console) -> int:
    import csv
    import json
    import time
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.progress import Progress

    from specdec.demo_pair.heldout import code_prompts
    from specdec.orchestrator.client.grpc_client import Client
    from specdec.orchestrator.measure.load_bench import load_modes, print_load, run_load
    from specdec.orchestrator.measure.loadtest_report import tradeoff_plot

    prompts = code_prompts(max(args.prompts, max(args.concurrency)), seed=args.seed)
    out_dir = Path(args.out or f"bench-results/load-{time.strftime('%Y%m%d-%H%M%S')}")
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console, args.launcher))
        client = stack.enter_context(Client(address))
        with Progress(console=console, transient=True) as progress:
            rows = run_load(client, prompts, load_modes(args.gamma, args.speculation_lanes), args.concurrency,
                            args.requests_per_stream, args.min_requests, args.max_new_tokens, args.temperature,
                            progress)
    print_load(rows, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [r.record() for r in rows]
    (out_dir / "load.json").write_text(json.dumps({"meta": vars(args) | {"func": None}, "rows": records}, indent=2))
    with open(out_dir / "load.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in dict.fromkeys(r.mode.label for r in rows):
        points = [r for r in rows if r.mode.label == mode]
        ax.plot([r.concurrency for r in points], [r.tokens_per_second for r in points], marker="o", label=mode)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "load.png", dpi=110)
    tradeoff_plot({mode: [(1000 / r.totals.tokens_per_second if r.totals.tokens_per_second else 0.0,
                           r.tokens_per_second, f"{r.concurrency}") for r in rows if r.mode.label == mode]
                   for mode in dict.fromkeys(r.mode.label for r in rows)},
                  "time per output token of a stream (ms)", out_dir / "tradeoff.png")
    for name in ("load.json", "load.csv", "load.png", "tradeoff.png"):
        console.print(f"wrote {out_dir / name}")
    return 0


def _parse_slo(items: list[str]):
    from specdec.orchestrator.measure.loadtest import Slo

    limits = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in ("ttft", "tpot", "e2e") or not value:
            raise ValueError(f"--slo: expected ttft=S, tpot=S or e2e=S (seconds), got {item!r}")
        limits[name] = float(value)
    return Slo(**limits)


def cmd_loadtest(args: argparse.Namespace) -> int:
    import functools
    import time
    from pathlib import Path

    from rich.progress import Progress

    from specdec.orchestrator.measure.loadtest import LoadGenerator, LoadSpec, load_plans, run_sweep
    from specdec.orchestrator.measure.loadtest_report import print_rows, write_report

    console = make_console()
    try:
        slo = _parse_slo(args.slo)
        if args.rate and args.concurrency:
            raise ValueError("--rate and --concurrency: give one kind of load, not both")
        if args.burstiness <= 0:
            raise ValueError("--burstiness: must be positive")
        for option in ("num_requests", "output_tokens", "input_chars", "ray_generators"):
            if getattr(args, option) < 0:
                raise ValueError(f"--{option.replace('_', '-')}: must not be negative")
        loads = ([LoadSpec(rate=r, burstiness=args.burstiness) for r in args.rate] if args.rate
                 else [LoadSpec(concurrency=c) for c in (args.concurrency or [1, 4, 16, 64])])
        if any(load.rate <= 0 and load.concurrency < 1 for load in loads):
            raise ValueError("--rate / --concurrency: every load must be positive")

        @functools.cache  # the same prompts for every mode at a load, read once
        def plans_for(load: LoadSpec):
            count = args.num_requests or max(16, 4 * load.concurrency)
            return load_plans(args.dataset, count, args.output_tokens, args.seed, args.input_chars, args.seeded)

        plans_for(loads[0])  # a bad dataset fails here, before any load
    except (ValueError, OSError) as exc:
        print(f"specdec loadtest: {exc}", file=sys.stderr)
        return 2
    params = {"temperature": args.temperature, "ignore_eos": args.output_tokens > 0}
    if args.gamma is not None:
        params["gamma"] = args.gamma
    modes = {"speculative": params}
    if args.compare_target_only:
        modes["target-only"] = params | {"gamma": 0}
    generators = None
    if args.ray_generators:
        import ray

        ray.init(address=args.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        actor = ray.remote(LoadGenerator).options(num_cpus=0, scheduling_strategy="SPREAD")
        generators = [actor.remote() for _ in range(args.ray_generators)]
    address = args.address or (DEFAULT_HTTP_ADDRESS if args.endpoint == "openai" else DEFAULT_ADDRESS)
    with Progress(console=console, transient=True) as progress:
        rows = run_sweep(address, loads, modes, plans_for, slo, generators, progress, args.seed, connection(args),
                         args.endpoint)
    print_rows(rows, console)
    out_dir = Path(args.out or f"loadtest-results/{time.strftime('%Y%m%d-%H%M%S')}")
    meta = {key: value for key, value in vars(args).items() if key not in ("func", "token")} | {"address": address}
    for path in write_report(rows, meta, out_dir):
        console.print(f"wrote {path}")
    return 0


def cmd_verify_curve(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    import torch
    from rich.table import Table

    from specdec.config import COMPILE_MODES, resolve_model
    from specdec.orchestrator.measure.verify_curve import LLAMA_1B, POSITIONS, curve_of, random_llama

    try:
        positions = tuple(sorted({int(part) for part in args.positions.split(",")})) if args.positions else POSITIONS
    except ValueError:
        positions = ()
    if not positions or positions[0] < 1 or args.repeats < 1:
        print("specdec verify-curve: --positions: comma-separated counts >= 1; --repeats: >= 1", file=sys.stderr)
        return 2
    modes = args.compile.split(",")
    if not set(modes) <= set(COMPILE_MODES):
        print(f"specdec verify-curve: --compile: each of {', '.join(COMPILE_MODES)}, got {args.compile}",
              file=sys.stderr)
        return 2
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    console = make_console()
    curves, failed = [], []
    with tempfile.TemporaryDirectory(prefix="specdec-llama-") as folder:
        models = [(name, resolve_model(name)) for name in (args.model or ["demo:target"])]
        if args.random_llama_1b:
            with console.status("building a random ~1B Llama..."):
                models.append(("random Llama", random_llama(Path(folder), resolve_model("demo:target"), LLAMA_1B,
                                                            dtype, "cuda" if cuda else "cpu")))
        for (label, model), mode in ((entry, mode) for entry in models for mode in modes):
            name = label if mode == "off" else f"{label}, compiled {mode}"
            with console.status(f"timing {name}..."):
                try:
                    curves.append({"label": name} | curve_of(model, dtype, args.device, positions, args.repeats,
                                                             mode))
                except ValueError as exc:  # positions past the model's context
                    print(f"specdec verify-curve: {exc}", file=sys.stderr)
                    return 2
                except Exception as exc:  # one run failing (a compile mode, memory) costs only its own curve
                    print(f"specdec verify-curve: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    failed.append({"label": name, "error": f"{type(exc).__name__}: {exc}"})
    table = Table(title=f"verify time against positions ({dtype})")
    table.add_column("positions", justify="right")
    for curve in curves:
        table.add_column(f"{curve['label']} ({curve['parameters'] / 1e6:.0f}M, {curve['device']}): ms (x 1 position)",
                         justify="right")
    for index, count in enumerate(positions):
        table.add_row(str(count), *(f"{c['points'][index]['seconds'] * 1e3:.2f} ({c['points'][index]['relative']:.2f}x)"
                                    for c in curves))
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"dtype": dtype, "curves": curves, "failed": failed}, indent=2))
        console.print(f"wrote {args.json}")
    return 1 if failed else 0
