"""`specdec serve`, `status`, `stop` and `certs`: a deployment on a Ray cluster, and its certificates."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from specdec.orchestrator.cli.common import (
    DEFAULT_ADDRESS,
    connection_args,
    deployment_args,
    launcher_arg,
    make_console,
    resolved_launcher,
    start_deployment,
)
from specdec.orchestrator.cli.jobs import job_call, print_job


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    launcher_arg(serve)
    serve.set_defaults(func=cmd_serve)

    status = sub.add_parser("status", help="show the deployment's actors and their health, or one batch job",
                            description="Without JOB: connect to a running Ray cluster and list the orchestrator and "
                                        "the draft and target services: state, gRPC address, node, process and "
                                        "load. With JOB: ask the orchestrator (--orchestrator) for that batch job's "
                                        "state and progress.")
    status.add_argument("job", nargs="?", help="a batch job id (from `specdec submit`); omit for the deployment")
    deployment_args(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument("--orchestrator", default=DEFAULT_ADDRESS,
                        help="with JOB: orchestrator gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051)")
    connection_args(status)
    status.set_defaults(func=cmd_status)

    stop = sub.add_parser("stop", help="stop a deployment started with `specdec serve --detach`",
                          description="Kill the orchestrator and the draft and target services named in the serve "
                                      "config, on a running Ray cluster, and free their placement group.")
    deployment_args(stop)
    stop.set_defaults(func=cmd_stop)

    certs = sub.add_parser("certs", help="make development TLS certificates (a CA and a certificate signed by it)",
                           description="Write ca.pem, cert.pem and key.pem (and ca-key.pem) for the serve config's "
                                       "tls section and for clients' --tls-ca. For development: production "
                                       "certificates come from your own CA.")
    certs.add_argument("--out", default="certs", help="output folder (default: certs)")
    certs.add_argument("--hosts", nargs="+", default=["127.0.0.1", "localhost"],
                       help="names and IP addresses the certificate is valid for (default: 127.0.0.1 localhost)")
    certs.add_argument("--days", type=int, default=30, help="validity in days (default: 30)")
    certs.set_defaults(func=cmd_certs)


def cmd_serve(args: argparse.Namespace) -> int:
    from specdec.config import ServeConfig
    from specdec.orchestrator.serving.core import check_defaults
    from specdec.orchestrator.serving.processes import ChildFailed
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
        check_defaults(config.defaults)  # before Ray starts: the names only the orchestrator knows
    except ValueError as exc:
        print(f"specdec serve: {exc}", file=sys.stderr)
        return 2
    if args.detach and not args.address:
        print("specdec serve: --detach needs --address (a running cluster outlives this command; "
              "a local instance does not)", file=sys.stderr)
        return 2
    if resolved_launcher(args.launcher) == "processes" and (args.address or args.detach):
        print("specdec serve: --address and --detach are for Ray; --launcher processes starts everything here, "
              "for as long as this command runs", file=sys.stderr)
        return 2
    try:
        deployment = start_deployment(config, args.launcher, args.address, args.detach, quiet=False)
    except ValueError as exc:  # a layout the machine cannot hold, named by its field
        print(f"specdec serve: {exc}", file=sys.stderr)
        return 2
    except ChildFailed as exc:  # a plain-process service that refused to start (its log's end says why)
        print(f"specdec serve: {exc}", file=sys.stderr)
        return 1
    layout = deployment.layout
    print(f"layout: {layout.describe()}")
    for kind, addresses, model, gpus in (("draft ", deployment.draft_addresses, config.draft.model, layout.draft_gpus),
                                         ("target", deployment.target_addresses, config.target.model,
                                          layout.target_gpus)):
        for address in addresses:
            print(f"{kind} service at {address} ({model}, {f'{gpus:g} GPU' if gpus else 'CPU'})")
    if deployment.http_address:
        print(f"OpenAI-compatible HTTP API at {deployment.http_address}/v1 (model {config.served_model_name})")
    print(f"orchestrator listening on {deployment.address}", flush=True)
    if args.detach:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watch = getattr(deployment, "exited", lambda: [])  # plain processes: say when a child dies (Ray restarts its own)
    try:
        print("serving; press Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            for line in watch():
                print(f"specdec serve: {line}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    deployment.stop()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    if args.job:
        return job_call(args, "status", lambda client: print_job(client.job(args.job), args.json))
    if resolved_launcher("auto") != "ray":
        print("specdec status: lists a deployment on Ray, which is not installed here; a deployment of plain "
              "processes prints its layout and addresses when it starts, and each of its servers answers the "
              "standard gRPC health service", file=sys.stderr)
        return 2
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
        load = (f"{row['active_requests']} requests, {row.get('waiting_requests', 0)} waiting" if "active_requests" in row
                else f"{row['sessions']} sessions" if "sessions" in row else "")
        memory = f"{row['rss_bytes'] / 2**20:.0f} MiB" if row.get("rss_bytes") else ""
        table.add_row(row["name"], row["state"] if row.get("serving", True) else "STARTING", row.get("address", ""),
                      row.get("node_ip", ""), row.get("node_id", "")[:12], str(row.get("pid", "")),
                      _device(row), row.get("forward", ""), memory, load,
                      _faults_summary(row.get("faults", {})))
    console = make_console()
    console.print(table)
    for layout in {row["layout"] for row in rows if row.get("layout")}:
        console.print(f"layout: {layout}")
    return 0


def _device(row: dict) -> str:
    """A service's device, with its share of GPUs and the GPU ids Ray gave it."""
    device = row.get("device", "")
    if row.get("gpus"):
        device += f" ({row['gpus']:g} GPU, id {','.join(row.get('gpu_ids', [])) or '?'})"
    return device


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
