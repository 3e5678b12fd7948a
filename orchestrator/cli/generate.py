"""`specdec generate`: stream one completion from a running orchestrator."""

from __future__ import annotations

import argparse
import sys

from specdec.orchestrator.cli.common import DEFAULT_ADDRESS, add_renamed_option, connection, connection_args


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    generate.add_argument("--num-draft-sequences", type=int, default=0,
                          help="M, draft sequences per round (sd and greedy; --num-drafts: its deprecated spelling)")
    add_renamed_option(generate, "--num-drafts", "--num-draft-sequences", type=int)
    generate.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None,
                          help="draft the next window while the target verifies (default: server's)")
    generate.add_argument("--speculation-lanes", type=int,
                          help="with --overlap: rejection outcomes to pre-draft for besides full acceptance "
                               "(default: server's)")
    generate.add_argument("--gamma", type=int, help="draft tokens per round; 0 is target-only decoding")
    generate.add_argument("--seed", type=int, help="seed for every random choice (same seed, same output)")
    generate.add_argument("--ignore-eos", action="store_true", help="keep going past the end-of-text token")
    generate.add_argument("--stats", action="store_true", help="print the request's statistics to stderr")
    connection_args(generate)
    generate.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    import grpc

    from specdec.orchestrator.client.grpc_client import Client

    rule_params = {k: v for k, v in (("threshold", args.threshold), ("divergence", args.divergence),
                                     ("epsilon", args.epsilon), ("delta", args.delta)) if v is not None}
    with Client(args.address, **connection(args)) as client:
        try:
            for delta in client.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                       top_k=args.top_k, top_p=args.top_p, rule=args.rule or "", gamma=args.gamma,
                                       seed=args.seed, ignore_eos=args.ignore_eos, rule_params=rule_params,
                                       gamma_controller=args.gamma_controller or "",
                                       num_draft_sequences=args.num_draft_sequences,
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
