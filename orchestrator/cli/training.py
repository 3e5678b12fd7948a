"""`specdec distill`: train a draft for a target (specdec.training)."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    distill = sub.add_parser(
        "distill", help="distil a draft from a target on a corpus",
        description="Distil a standalone draft from a causal-LM target: the target's next-token distributions "
                    "as soft labels (KL plus a little cross-entropy), optionally on text the target samples "
                    "itself; checkpoints every --checkpoint-every steps and resumes with --resume; writes the "
                    "draft (with the target's tokenizer), distill.json and MODEL_CARD.md to --out.")
    distill.add_argument("--kind", choices=("model",), default="model",
                         help="model: a standalone draft (a small causal LM of its own)")
    distill.add_argument("--target", default="demo:target", help="the target: a checkpoint folder or hub id")
    distill.add_argument("--init", default="", help="start from this draft (default: a new Llama, --layers x --width)")
    distill.add_argument("--corpus", default="demo",
                         help="demo (the demo pair's Python source), a folder of .py/.txt/.md/.rst files, a "
                              ".jsonl(.gz) of {\"text\": ...} rows, or a text file")
    distill.add_argument("--out", required=True, help="output folder (its checkpoint.pt is what --resume reads)")
    distill.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: --minutes only)")
    distill.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: --steps only)")
    distill.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    distill.add_argument("--layers", type=int, default=2, help="a new draft's layers (default 2)")
    distill.add_argument("--width", type=int, default=128, help="a new draft's hidden size (default 128)")
    distill.add_argument("--heads", type=int, default=2, help="a new draft's attention heads (default 2)")
    distill.add_argument("--seq-len", type=int, default=256, help="tokens a training window (default 256)")
    distill.add_argument("--batch-size", type=int, default=16, help="windows a step (default 16)")
    distill.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    distill.add_argument("--kl-weight", type=float, default=0.8,
                         help="weight of KL(target || draft); the rest is cross-entropy (default 0.8)")
    distill.add_argument("--on-policy", type=float, default=0.0,
                         help="share of batches on the target's own sampled text (default 0)")
    distill.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    distill.add_argument("--seed", type=int, default=0,
                         help="seed of the windows, a new draft and the on-policy samples (default 0)")
    distill.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    distill.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from specdec.config import resolve_model
    from specdec.errors import InvalidField
    from specdec.orchestrator.cli.common import make_console
    from specdec.training.distill import DistillSpec, distill

    spec = DistillSpec(target=resolve_model(args.target), out=args.out,
                       init=resolve_model(args.init) if args.init else "", corpus=args.corpus, layers=args.layers,
                       width=args.width, heads=args.heads, seq_len=args.seq_len, batch_size=args.batch_size,
                       lr=args.lr, steps=args.steps, minutes=args.minutes, kl_weight=args.kl_weight,
                       on_policy=args.on_policy, checkpoint_every=args.checkpoint_every, seed=args.seed)
    console = make_console()
    if args.threads < 0:
        print("specdec distill: --threads: must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        spec.check()
        with Progress(TextColumn("distilling"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                      TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("distill", total=args.steps or None, loss=0.0)
            figures = distill(spec, args.resume, lambda step, total, loss, seconds: progress.update(
                task, completed=step, loss=loss))
    except InvalidField as exc:
        print(f"specdec distill: {exc}", file=sys.stderr)
        return 2
    console.print(f"held-out: mean acceptance length at gamma 4, greedy, measured "
                  f"{figures['measured_acceptance_length_greedy_gamma4']:.2f}")
    console.print(f"held-out: greedy agreement {figures['greedy_agreement']:.3f}, acceptance at T=1 "
                  f"{figures['acceptance_t1']:.3f}, mean acceptance length at gamma 4 "
                  f"{figures['mean_acceptance_length_greedy_gamma4']:.2f} greedy / "
                  f"{figures['mean_acceptance_length_t1_gamma4']:.2f} T=1; draft forward "
                  f"{figures['draft_forward_ms']:.2f} ms vs target {figures['target_forward_ms']:.2f} ms")
    console.print(f"wrote the draft, distill.json and MODEL_CARD.md to {args.out}")
    return 0
