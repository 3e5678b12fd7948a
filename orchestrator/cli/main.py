"""The `specdec` command line: one module per command group, each parser beside its handler.

deployment: serve, status, stop, certs; components (without Ray): service, orchestrator;
generate; jobs: submit, jobs, results, cancel; measure: demo, bench,
loadtest, verify-curve; training: distill.
"""

from __future__ import annotations

import argparse
import os

from specdec.orchestrator.cli import components, deployment, generate, jobs, measure, training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specdec", description="Distributed speculative decoding: a draft and a target model as gRPC services "
                                    "in Ray actors, and an orchestrator that runs the acceptance rule.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (deployment, components, generate, jobs, measure, training):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ray token authentication, which Ray >= 2.59 uses on local clusters and >= 2.61 everywhere; a cluster's
    # nodes and its clients must agree. Set RAY_AUTH_MODE=disabled to talk to a cluster started without it.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    args = build_parser().parse_args(argv)
    return args.func(args)
