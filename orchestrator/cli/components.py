"""`specdec service` and `specdec orchestrator`: one component of a deployment as a plain process, without
Ray, on the address given (containers, systemd units, a machine without Ray). `specdec serve --launcher
processes` starts all of them on one machine."""

from __future__ import annotations

import argparse
import asyncio
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    service = sub.add_parser("service", help="run one model service (draft or target) as a plain process",
                             description="Load the draft's or the target's model as the serve config says and serve "
                                         "it over gRPC on --host:--port until SIGTERM or Ctrl-C; print "
                                         "'<role> service at ADDRESS' once it serves. No Ray needed.")
    service.add_argument("role", choices=("draft", "target"), help="which section of the serve config to serve")
    service.add_argument("--config", help="serve config YAML (default: the demo pair; see deploy/demo.yaml)")
    service.add_argument("--host", help="interface to bind (default: the config's placement.host)")
    service.add_argument("--port", type=int, default=0, help="port to bind, 0 for any free one (default: 0)")
    service.add_argument("--cpus", type=int, help="torch threads (default: the model's num_cpus, else "
                                                  "placement.cpus_per_service)")
    service.add_argument("--gpu-share", type=float, default=None,
                         help="GPUs this service holds (below 1: its share of GPU 0's memory, checked against the "
                              "model and enforced); default: the model's num_gpus, else 0. Which GPUs: "
                              "CUDA_VISIBLE_DEVICES")
    service.set_defaults(func=cmd_service)

    orchestrator = sub.add_parser("orchestrator", help="run the orchestrator as a plain process",
                                  description="Connect to running draft and target services, check that they can "
                                              "work together and serve the client gRPC API (and the HTTP API when "
                                              "the config's http section is on) until SIGTERM or Ctrl-C; print "
                                              "'orchestrator listening on ADDRESS' once it serves. No Ray needed.")
    orchestrator.add_argument("--config", help="serve config YAML (default: the demo pair; see deploy/demo.yaml)")
    orchestrator.add_argument("--draft", nargs="+", required=True, metavar="ADDRESS", help="draft services' addresses")
    orchestrator.add_argument("--target", nargs="+", required=True, metavar="ADDRESS",
                              help="target services' addresses (target i pairs with draft i mod the drafts)")
    orchestrator.add_argument("--host", help="interface the gRPC API binds (overrides the config)")
    orchestrator.add_argument("--port", type=int, help="gRPC port, 0 for any free one (overrides the config)")
    orchestrator.add_argument("--http-port", type=int, help="also serve the HTTP API on this port (0: any free one)")
    orchestrator.add_argument("--http-host", help="interface the HTTP API binds (turns it on)")
    orchestrator.set_defaults(func=cmd_orchestrator)


def cmd_service(args: argparse.Namespace) -> int:
    from specdec.config import ServeConfig
    from specdec.errors import InvalidField
    from specdec.orchestrator.serving.components import SERVICE_CLASSES, service_arguments
    from specdec.orchestrator.serving.processes import SERVICE_ANNOUNCEMENT, serve_until_signalled

    config = ServeConfig.load(args.config)
    model = getattr(config, args.role)
    cpus = args.cpus if args.cpus is not None else (model.num_cpus or config.placement.cpus_per_service)
    gpus = args.gpu_share if args.gpu_share is not None else (model.num_gpus or 0.0)
    if cpus < 1:
        print(f"specdec service: --cpus: must be >= 1, got {cpus}", file=sys.stderr)
        return 2
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        print(f"specdec service: --gpu-share: a fraction of one GPU, or whole GPUs, got {gpus:g}", file=sys.stderr)
        return 2
    service = SERVICE_CLASSES[args.role](**service_arguments(config, args.role, cpus, gpus, args.host, args.port))

    async def start() -> list[str]:
        return [SERVICE_ANNOUNCEMENT.format(role=args.role) + await service.ready()]

    try:
        asyncio.run(serve_until_signalled(start, service.stop))
    except InvalidField as exc:  # a share of a GPU too small for the model
        print(f"specdec service: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_orchestrator(args: argparse.Namespace) -> int:
    from specdec.config import ServeConfig
    from specdec.errors import ModelServiceError
    from specdec.orchestrator.serving.actor import OrchestratorActor
    from specdec.orchestrator.serving.core import check_defaults
    from specdec.orchestrator.serving.processes import (
        HTTP_ANNOUNCEMENT,
        ORCHESTRATOR_ANNOUNCEMENT,
        serve_until_signalled,
    )

    config = ServeConfig.load(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    http = {k: v for k, v in (("host", args.http_host), ("port", args.http_port)) if v is not None}
    try:
        config = config.with_overrides(**({"orchestrator": overrides} if overrides else {}),
                                       **({"http": http | {"enabled": True}} if http else {}))
        check_defaults(config.defaults)
    except ValueError as exc:
        print(f"specdec orchestrator: {exc}", file=sys.stderr)
        return 2
    if len(args.draft) > len(args.target):
        print("specdec orchestrator: --draft: at most as many drafts as targets", file=sys.stderr)
        return 2

    async def serve() -> None:
        orchestrator = OrchestratorActor(config, args.draft, args.target)

        async def start() -> list[str]:
            address, http_address = await orchestrator.ready(), await orchestrator.http_address()
            lines = [f"{HTTP_ANNOUNCEMENT}{http_address}/v1 (model {config.served_model_name})"] if http_address else []
            return [*lines, ORCHESTRATOR_ANNOUNCEMENT + address]

        await serve_until_signalled(start, orchestrator.stop)

    try:
        asyncio.run(serve())
    except (ValueError, ModelServiceError) as exc:  # services that cannot work together, or are not there
        print(f"specdec orchestrator: {exc}", file=sys.stderr)
        return 1
    return 0
