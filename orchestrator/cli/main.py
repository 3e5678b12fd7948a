"""The `specdec` command line: serve, generate, batch jobs (submit, jobs, status, results, cancel), demo,
bench, loadtest, status, stop, certs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

DEFAULT_ADDRESS = os.environ.get("SPECDEC_ADDRESS", "127.0.0.1:50051")
DEFAULT_HTTP_ADDRESS = os.environ.get("SPECDEC_HTTP_ADDRESS", "http://127.0.0.1:8000")


def _init_ray(address: str | None, quiet: bool) -> None:
    import ray

    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=not quiet)


def cmd_serve(args: argparse.Namespace) -> int:
    from specdec.config import ServeConfig
    from specdec.orchestrator.serving.launch import deploy
    from specdec.speculative_config import apply_speculative_config, parse_speculative_config

    config = ServeConfig.load(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = config.with_overrides(orchestrator=overrides)
    http = {k: v for k, v in (("host", args.http_host), ("port", args.http_port)) if v is not None}
    try:
        if http:
            config = config.with_overrides(http=http | {"enabled": True})
        if args.speculative_config:
            config = apply_speculative_config(config, parse_speculative_config(args.speculative_config))
    except ValueError as exc:
        print(f"specdec serve: {exc}", file=sys.stderr)
        return 2
    if args.detach and not args.address:
        print("specdec serve: --detach needs --address (a running cluster outlives this command; "
              "a local instance does not)", file=sys.stderr)
        return 2
    _init_ray(args.address, quiet=False)
    deployment = deploy(config, detached=args.detach)
    placement = "GPU" if deployment.use_gpu else "CPU"
    for kind, addresses, model in (("draft ", deployment.draft_addresses, config.draft.model),
                                   ("target", deployment.target_addresses, config.target.model)):
        for address in addresses:
            print(f"{kind} service at {address} ({model}, {placement})")
    if deployment.http_address:
        print(f"OpenAI-compatible HTTP API at {deployment.http_address}/v1 (model {config.served_model_name})")
    print(f"orchestrator listening on {deployment.address}", flush=True)
    if args.detach:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print("serving; press Ctrl-C to stop", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    deployment.stop()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    if args.job:
        return _job_call(args, "status", lambda client: _print_job(client.job(args.job), args.json))
    import ray
    from rich.table import Table

    from specdec.config import ServeConfig
    from specdec.orchestrator.serving.launch import deployment_status

    ray.init(address=args.address, logging_level=logging.WARNING, log_to_driver=False)
    rows = deployment_status(ServeConfig.load(args.config))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if rows else 1
    if not rows:
        print("specdec status: no specdec actors on this cluster (start them with `specdec serve`)", file=sys.stderr)
        return 1
    table = Table(title=f"specdec deployment on {ray.get_runtime_context().gcs_address}")
    for column in ("actor", "state", "address", "node", "node id", "pid", "device", "forward", "memory", "load",
                   "faults"):
        table.add_column(column)
    for row in rows:
        load = (f"{row['active_requests']} requests" if "active_requests" in row
                else f"{row['sessions']} sessions" if "sessions" in row else "")
        memory = f"{row['rss_bytes'] / 2**20:.0f} MiB" if row.get("rss_bytes") else ""
        table.add_row(row["name"], row["state"] if row.get("serving", True) else "STARTING", row.get("address", ""),
                      row.get("node_ip", ""), row.get("node_id", "")[:12], str(row.get("pid", "")),
                      row.get("device", ""), row.get("forward", ""), memory, load,
                      _faults_summary(row.get("faults", {})))
    _console().print(table)
    return 0


def _faults_summary(faults: dict) -> str:
    """The orchestrator's view of its services: failures, recoveries, restarts, and which are down now."""
    if not faults:
        return ""
    total = {key: sum(f[key] for f in faults.values()) for key in ("failures", "recoveries", "restarts")}
    down = [address for address, f in faults.items() if not f["available"]]
    text = f"{total['failures']} failed calls, {total['recoveries']} recoveries, {total['restarts']} restarts"
    return text + (f"; down: {', '.join(down)}" if down else "")


def cmd_stop(args: argparse.Namespace) -> int:
    import ray

    from specdec.config import ServeConfig
    from specdec.orchestrator.serving.launch import stop_deployment

    ray.init(address=args.address, logging_level=logging.WARNING, log_to_driver=False)
    names = stop_deployment(ServeConfig.load(args.config))
    print(f"stopped {', '.join(names)}" if names else "specdec stop: no specdec actors on this cluster")
    return 0 if names else 1


def cmd_certs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from specdec.net.security import make_dev_certificates

    if args.days < 1:
        print("specdec certs: --days: must be at least 1", file=sys.stderr)
        return 2
    paths = make_dev_certificates(Path(args.out), args.hosts, args.days)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    print(f"serve config:\n  tls:\n    cert: {paths['cert']}\n    key: {paths['key']}\n    ca: {paths['ca']}")
    print(f"clients: --tls-ca {paths['ca']} (and --tls-cert {paths['cert']} --tls-key {paths['key']} for mutual TLS)")
    return 0


def _connection(args: argparse.Namespace) -> dict:
    """Client keyword arguments for TLS and the bearer token (from --token or $SPECDEC_TOKEN)."""
    return {"tls_ca": args.tls_ca, "token": args.token or os.environ.get("SPECDEC_TOKEN") or None,
            "cert": args.tls_cert, "key": args.tls_key}


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM CA of the orchestrator's certificate: connect over TLS")
    parser.add_argument("--tls-cert", help="this client's PEM certificate, for mutual TLS")
    parser.add_argument("--tls-key", help="this client's PEM private key, for mutual TLS")
    parser.add_argument("--token", help="bearer token of the client API (default: $SPECDEC_TOKEN)")


def cmd_generate(args: argparse.Namespace) -> int:
    import grpc

    from specdec.orchestrator.client.grpc_client import Client

    rule_params = {k: v for k, v in (("threshold", args.threshold), ("divergence", args.divergence),
                                     ("epsilon", args.epsilon), ("delta", args.delta)) if v is not None}
    with Client(args.address, **_connection(args)) as client:
        try:
            for delta in client.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                       top_k=args.top_k, top_p=args.top_p, rule=args.rule or "", gamma=args.gamma,
                                       seed=args.seed, ignore_eos=args.ignore_eos, rule_params=rule_params,
                                       gamma_controller=args.gamma_controller or "", num_drafts=args.num_drafts,
                                       overlap=args.overlap, speculation_lanes=args.speculation_lanes):
                print(delta.text, end="", flush=True)
        except grpc.RpcError as exc:
            print(f"\nspecdec generate: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        print()
        if args.stats:
            for key, value in client.last_stats.items():
                print(f"{key}: {value}", file=sys.stderr)
    return 0


def _job_call(args: argparse.Namespace, command: str, call) -> int:
    """Run `call(client)` against the orchestrator at args.address (args.orchestrator for `status`); a gRPC
    error is printed as `specdec <command>: CODE: details`."""
    import grpc

    from specdec.orchestrator.client.grpc_client import Client

    address = args.orchestrator if command == "status" else args.address
    with Client(address, **_connection(args)) as client:
        try:
            return call(client) or 0
        except grpc.RpcError as exc:
            print(f"specdec {command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1


def _when(unix_time: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_time)) if unix_time else ""


def _print_job(status: dict, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(status, indent=2))
        return
    for key in ("job_id", "name", "state", "total", "done", "failed"):
        print(f"{key}: {status[key]}")
    print(f"created: {_when(status['created_at'])}")
    print(f"finished: {_when(status['finished_at']) or '-'}")


def cmd_submit(args: argparse.Namespace) -> int:
    from specdec.orchestrator.jobs.inputs import JobFileError, read_requests

    try:
        requests = read_requests(args.file)
    except (JobFileError, OSError) as exc:
        print(f"specdec submit: {exc}", file=sys.stderr)
        return 2

    def submit(client) -> None:
        job_id = client.submit(requests, name=args.name or args.file)
        print(job_id)
        print(f"submitted {len(requests)} requests as job {job_id}; `specdec status {job_id}` shows its progress",
              file=sys.stderr)

    return _job_call(args, "submit", submit)


def cmd_jobs(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    def show(client) -> None:
        jobs = client.jobs()
        if args.json:
            print(json.dumps(jobs, indent=2))
            return
        table = Table(title=f"jobs on {args.address}")
        for column in ("job id", "name", "state", "done", "failed", "total", "created", "finished"):
            table.add_column(column)
        for job in jobs:
            table.add_row(job["job_id"], job["name"], job["state"], str(job["done"]), str(job["failed"]),
                          str(job["total"]), _when(job["created_at"]), _when(job["finished_at"]))
        _console().print(table)

    return _job_call(args, "jobs", show)


def cmd_results(args: argparse.Namespace) -> int:
    import json

    def write(client) -> None:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(args.out, "w", encoding="utf-8")) if args.out else sys.stdout
            count = 0
            for record in client.results(args.job):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        status = client.job(args.job)
        print(f"{count} results of job {args.job} ({status['state']}: {status['done']} done, {status['failed']} "
              f"failed of {status['total']})", file=sys.stderr)

    return _job_call(args, "results", write)


def cmd_cancel(args: argparse.Namespace) -> int:
    return _job_call(args, "cancel", lambda client: _print_job(client.cancel(args.job), as_json=False))


@contextlib.contextmanager
def local_deployment(config_path: str | None, console):
    """A local Ray instance with the whole deployment on a free port; yields the orchestrator's address."""
    from specdec.config import ServeConfig
    from specdec.orchestrator.serving.launch import deploy

    with console.status("starting Ray, the draft and target services and the orchestrator..."):
        _init_ray(None, quiet=True)
        deployment = deploy(ServeConfig.load(config_path).with_overrides(orchestrator={"port": 0}))
    console.print(f"orchestrator at {deployment.address}; drafts at {', '.join(deployment.draft_addresses)}, "
                  f"targets at {', '.join(deployment.target_addresses)} "
                  f"({'GPU' if deployment.use_gpu else 'CPU'}, one each)")
    try:
        yield deployment.address
    finally:
        deployment.stop()


def _console():
    from rich.console import Console

    console = Console()
    console.width = max(console.width, 120)  # tables stay readable when piped to a log
    return console


def cmd_demo(args: argparse.Namespace) -> int:
    from specdec.orchestrator.measure.demo import render, run_demo

    console = _console()
    with local_deployment(args.config, console) as address:
        render(run_demo(address, args.prompts, args.max_new_tokens, args.gamma, args.temperature, console), console)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from rich.progress import Progress

    from specdec.config import resolve_model
    from specdec.demo_pair.heldout import code_prompts
    from specdec.orchestrator.client.grpc_client import Client
    from specdec.orchestrator.measure.bench import build_sweep, findings, run_sweep
    from specdec.orchestrator.measure.bench_report import print_table, write_files
    from specdec.orchestrator.measure.quality import TargetScorer

    console = _console()
    if args.concurrency:
        return _bench_load(args, console)
    if args.compare_hf:
        return _bench_compare_hf(args, console)
    sweep = build_sweep(args.gammas, args.gamma, args.controllers, args.divergences, args.thresholds, args.epsilons,
                        args.num_drafts)
    prompts = code_prompts(args.prompts, seed=args.seed)
    out_dir = Path(args.out or f"bench-results/{time.strftime('%Y%m%d-%H%M%S')}")
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console))
        client = stack.enter_context(Client(address))
        target_model = args.target_model or resolve_model(client.server_info()["target"]["model"])
        scorer = TargetScorer(target_model)
        console.print(f"{len(sweep)} configurations x {len(prompts)} prompts x {args.max_new_tokens} tokens, "
                      f"temperature {args.temperature}")
        with Progress(console=console, transient=True) as progress:
            rows = run_sweep(client, prompts, sweep, scorer, args.max_new_tokens, args.temperature, args.seed,
                             progress)
    found = findings(rows, args.gamma)
    meta = {"prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "seed": args.seed, "address": address, "target_model": target_model}
    print_table(rows, found, console)
    for path in write_files(rows, found, meta, out_dir):
        console.print(f"wrote {path}")
    return 0


def _bench_compare_hf(args: argparse.Namespace, console) -> int:
    from pathlib import Path

    from rich.progress import Progress

    from specdec.config import resolve_model
    from specdec.demo_pair.heldout import code_prompts
    from specdec.orchestrator.client.grpc_client import Client
    from specdec.orchestrator.measure.bench_report import print_compare, write_compare
    from specdec.orchestrator.measure.compare_hf import run_compare
    from specdec.orchestrator.measure.hf_baseline import HFPair, bare_forwards

    prompts = code_prompts(args.prompts, seed=args.seed)
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console))
        client = stack.enter_context(Client(address))
        info = client.server_info()
        models = {side: resolve_model(info[side]["model"]) for side in ("target", "draft")}
        with console.status("loading the pair in this process and timing bare forwards..."):
            pair = HFPair(models["target"], models["draft"])
            bare = bare_forwards(pair, args.gamma, prompts=[p.prompt for p in prompts])
        with Progress(console=console, transient=True) as progress:
            comparison = run_compare(client, pair, prompts, args.gamma, args.max_new_tokens, args.seed, progress,
                                     bare)
    meta = {"prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "gamma": args.gamma, "seed": args.seed,
            "address": address, **models}
    print_compare(comparison, console)
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

    prompts = code_prompts(max(args.prompts, max(args.concurrency)), seed=args.seed)
    out_dir = Path(args.out or f"bench-results/load-{time.strftime('%Y%m%d-%H%M%S')}")
    with contextlib.ExitStack() as stack:
        address = args.address or stack.enter_context(local_deployment(args.config, console))
        client = stack.enter_context(Client(address))
        with Progress(console=console, transient=True) as progress:
            rows = run_load(client, prompts, load_modes(args.gamma, args.speculation_lanes), args.concurrency,
                            args.requests_per_stream, args.min_requests, args.max_new_tokens, args.temperature,
                            args.seed, progress)
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
    for name in ("load.json", "load.csv", "load.png"):
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

    console = _console()
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
                 else [LoadSpec(concurrency=c) for c in (args.concurrency or [1, 8, 32])])
        if any(load.rate <= 0 and load.concurrency < 1 for load in loads):
            raise ValueError("--rate / --concurrency: every load must be positive")

        @functools.cache  # the same prompts for every mode at a load, read once
        def plans_for(load: LoadSpec):
            count = args.num_requests or max(16, 4 * load.concurrency)
            return load_plans(args.dataset, count, args.output_tokens, args.seed, args.input_chars)

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
        rows = run_sweep(address, loads, modes, plans_for, slo, generators, progress, args.seed, _connection(args),
                         args.endpoint)
    print_rows(rows, console)
    out_dir = Path(args.out or f"loadtest-results/{time.strftime('%Y%m%d-%H%M%S')}")
    meta = {key: value for key, value in vars(args).items() if key not in ("func", "token")} | {"address": address}
    for path in write_report(rows, meta, out_dir):
        console.print(f"wrote {path}")
    return 0


def _deployment_args(parser: argparse.ArgumentParser) -> None:
    """--address and --config: which cluster, and which deployment on it."""
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: auto, the running one)")
    parser.add_argument("--config", help="serve config naming the orchestrator (default: the demo config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specdec", description="Distributed speculative decoding: a draft and a target model as gRPC services "
                                    "in Ray actors, and an orchestrator that runs the acceptance rule.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="start the draft, target and orchestrator services",
                           description="Start (or join) a Ray cluster, place the draft and target services and "
                                       "start the orchestrator; print the orchestrator's gRPC address.")
    serve.add_argument("--config", help="serve config YAML (default: the demo pair; see deploy/demo.yaml)")
    serve.add_argument("--address", help="Ray cluster to join ('auto' or host:port); default: start a local one")
    serve.add_argument("--host", help="interface the orchestrator binds (overrides the config)")
    serve.add_argument("--port", type=int, help="orchestrator port, 0 for any free one (overrides the config)")
    serve.add_argument("--http-port", type=int,
                       help="also serve the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
                            "/v1/models, /health, /metrics) on this port, 0 for any free one (turns the config's "
                            "http section on)")
    serve.add_argument("--http-host", help="interface the HTTP API binds (overrides the config; turns it on)")
    serve.add_argument("--speculative-config",
                       help="vLLM's speculative config as JSON, e.g. '{\"method\": \"draft_model\", \"model\": "
                            "\"demo:draft\", \"num_speculative_tokens\": 4, \"disable_by_batch_size\": 16}'; "
                            "keys specdec cannot honour are refused by name")
    serve.add_argument("--detach", action="store_true",
                       help="start detached actors on a running cluster and return at once (needs --address)")
    serve.set_defaults(func=cmd_serve)

    status = sub.add_parser("status", help="show the deployment's actors and their health, or one batch job",
                            description="Without JOB: connect to a running Ray cluster and list the orchestrator and "
                                        "the draft and target services: state, gRPC address, node, process and "
                                        "load. With JOB: ask the orchestrator (--orchestrator) for that batch job's "
                                        "state and progress.")
    status.add_argument("job", nargs="?", help="a batch job id (from `specdec submit`); omit for the deployment")
    _deployment_args(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--orchestrator", default=DEFAULT_ADDRESS,
                        help="with JOB: orchestrator gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051)")
    _connection_args(status)
    status.set_defaults(func=cmd_status)

    submit = sub.add_parser("submit", help="submit a batch job: a JSONL file of requests; prints the job id",
                            description="Send every line of a JSONL file as one batch job. A line is a JSON object "
                                        "with a prompt and optional GenerateRequest fields by proto name "
                                        "(max_new_tokens, temperature, top_k, top_p or a sampling object, rule, "
                                        "rule_params, gamma, gamma_controller, controller_params, num_drafts, "
                                        "overlap, speculation_lanes, seed, ignore_eos). The job is kept in the "
                                        "orchestrator's journal and finishes even if the orchestrator restarts.")
    submit.add_argument("file", help="JSONL file, one request per line")
    submit.add_argument("--name", help="a name for the job, shown by `specdec jobs` (default: the file name)")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list the batch jobs of an orchestrator",
                          description="List every batch job: id, name, state, items done, failed and total, times.")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.set_defaults(func=cmd_jobs)

    results = sub.add_parser("results", help="write a batch job's results as JSONL",
                             description="Write one JSON line per finished item of a job, by index: index, prompt, "
                                         "completion, token_ids and stats, or error {code, message} for a failed "
                                         "item. A running job gives the items finished so far.")
    results.add_argument("job", help="the job id")
    results.add_argument("--out", help="write to this file instead of stdout")
    results.set_defaults(func=cmd_results)

    cancel = sub.add_parser("cancel", help="cancel a batch job",
                            description="Stop a job's queued and running items; finished results are kept.")
    cancel.add_argument("job", help="the job id")
    cancel.set_defaults(func=cmd_cancel)

    for job_command in (submit, jobs, results, cancel):
        job_command.add_argument("--address", default=DEFAULT_ADDRESS,
                                 help="orchestrator gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051)")
        _connection_args(job_command)

    stop = sub.add_parser("stop", help="stop a deployment started with `specdec serve --detach`",
                          description="Kill the orchestrator and the draft and target services named in the serve "
                                      "config, on a running Ray cluster, and free their placement group.")
    _deployment_args(stop)
    stop.set_defaults(func=cmd_stop)

    generate = sub.add_parser("generate", help="stream a completion from a running orchestrator",
                              description="Send one prompt to the orchestrator and stream the completion.")
    generate.add_argument("prompt", help="the prompt text")
    generate.add_argument("--address", default=DEFAULT_ADDRESS,
                          help="orchestrator gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051)")
    generate.add_argument("--max-new-tokens", type=int, default=0, help="tokens to generate (0: server default)")
    generate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    generate.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: off)")
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (1: off)")
    generate.add_argument("--rule", help="acceptance rule: sd, greedy, fsd, opt, uno or typical (default: server's)")
    generate.add_argument("--threshold", type=float, help="fsd: divergence threshold T")
    generate.add_argument("--divergence", help="fsd: kl, reverse_kl, js or tv, optionally with _topk")
    generate.add_argument("--epsilon", type=float, help="opt / uno: over-acceptance; typical: probability floor")
    generate.add_argument("--delta", type=float, help="typical: entropy factor")
    generate.add_argument("--gamma-controller", help="fixed, heuristic, gammatune, gammatune+ or cost")
    generate.add_argument("--num-drafts", type=int, default=0, help="draft sequences per round (sd and greedy)")
    generate.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None,
                          help="draft the next window while the target verifies (default: server's)")
    generate.add_argument("--speculation-lanes", type=int,
                          help="with --overlap: rejection outcomes to pre-draft for besides full acceptance "
                               "(default: server's)")
    generate.add_argument("--gamma", type=int, help="draft tokens per round; 0 is target-only decoding")
    generate.add_argument("--seed", type=int, help="seed for every random choice (same seed, same output)")
    generate.add_argument("--ignore-eos", action="store_true", help="keep going past the end-of-text token")
    generate.add_argument("--stats", action="store_true", help="print the request's statistics to stderr")
    _connection_args(generate)
    generate.set_defaults(func=cmd_generate)

    certs = sub.add_parser("certs", help="make development TLS certificates (a CA and a certificate signed by it)",
                           description="Write ca.pem, cert.pem and key.pem (and ca-key.pem) for the serve config's "
                                       "tls section and for clients' --tls-ca. For development: production "
                                       "certificates come from your own CA.")
    certs.add_argument("--out", default="certs", help="output folder (default: certs)")
    certs.add_argument("--hosts", nargs="+", default=["127.0.0.1", "localhost"],
                       help="names and IP addresses the certificate is valid for (default: 127.0.0.1 localhost)")
    certs.add_argument("--days", type=int, default=30, help="validity in days (default: 30)")
    certs.set_defaults(func=cmd_certs)

    demo = sub.add_parser("demo", help="run everything locally on the demo pair and print a speed table",
                          description="Start Ray and all services locally on the demo model pair, decode held-out "
                                      "code prompts target-only and speculatively, and print tokens/s, speedup, "
                                      "acceptance rate, mean acceptance length and the measured cost ratio c.")
    demo.add_argument("--config", help="serve config YAML (default: the demo pair)")
    demo.add_argument("--prompts", type=int, default=8, help="number of held-out code prompts")
    demo.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per prompt")
    demo.add_argument("--gamma", type=int, default=4, help="draft tokens per round for the speculative runs")
    demo.add_argument("--temperature", type=float, default=1.0,
                      help="sampling temperature of the sampled runs (greedy runs are always included)")
    demo.set_defaults(func=cmd_demo)

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
                          help="closed loop: numbers of concurrent streams to sweep (default: 1 8 32)")
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
    loadtest.add_argument("--seed", type=int, default=0, help="seed of prompts, arrivals and sampling")
    loadtest.add_argument("--out", help="output folder (default: loadtest-results/<time>)")
    _connection_args(loadtest)
    loadtest.set_defaults(func=cmd_loadtest)

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
    bench.add_argument("--num-drafts", type=int, nargs="+", default=[2], help="multi-draft M values (M > 1)")
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
    bench.add_argument("--out", help="output folder (default: bench-results/<time>; bench-results with --compare-hf)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ray token authentication, which Ray >= 2.59 uses on local clusters and >= 2.61 everywhere; a cluster's
    # nodes and its clients must agree. Set RAY_AUTH_MODE=disabled to talk to a cluster started without it.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    args = build_parser().parse_args(argv)
    return args.func(args)

