"""`specdec distill`: train a draft for a target (specdec.training)."""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    distill = sub.add_parser(
        "distill", help="distil a draft (a model or a feature head) from a target on a corpus",
        description="Distil a draft from a causal-LM target. --kind model: a standalone draft, the target's "
                    "next-token distributions as soft labels (KL plus a little cross-entropy), optionally on text "
                    "the target samples itself. --kind head: a feature head that reads the target's hidden "
                    "states (EAGLE-3's fused layers and training-time test, FSPAD's feature sampling and partial "
                    "alignment; docs/feature-heads.md). Checkpoints every --checkpoint-every steps and resumes "
                    "with --resume; writes the draft, distill.json and MODEL_CARD.md to --out.")
    distill.add_argument("--kind", choices=("model", "head"), default="model",
                         help="model: a standalone draft (a small causal LM of its own); head: a feature head")
    distill.add_argument("--target", default="demo:target", help="the target: a checkpoint folder or hub id")
    distill.add_argument("--corpus", default="demo",
                         help="demo (the demo pair's Python source), a folder of .py/.txt/.md/.rst files, a "
                              ".jsonl(.gz) of {\"text\": ...} rows, or a text file")
    distill.add_argument("--out", required=True, help="output folder (its checkpoint.pt is what --resume reads)")
    distill.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: --minutes only)")
    distill.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: --steps only)")
    distill.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    distill.add_argument("--seq-len", type=int, default=256, help="tokens a training window (default 256)")
    distill.add_argument("--batch-size", type=int, default=None,
                         help="windows a step (default 16 for a model, 8 for a head)")
    distill.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    distill.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    distill.add_argument("--seed", type=int, default=0,
                         help="seed of the windows, the new draft's weights and what a step samples (default 0)")
    distill.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    model = distill.add_argument_group("--kind model")
    model.add_argument("--init", default="", help="start from this draft (default: a new Llama, --layers x --width)")
    model.add_argument("--layers", type=int, default=2, help="a new draft's layers (default 2)")
    model.add_argument("--width", type=int, default=128, help="a new draft's hidden size (default 128)")
    model.add_argument("--heads", type=int, default=2, help="a new draft's attention heads (default 2)")
    model.add_argument("--kl-weight", type=float, default=0.8,
                       help="weight of KL(target || draft); the rest is cross-entropy (default 0.8)")
    model.add_argument("--on-policy", type=float, default=0.0,
                       help="share of batches on the target's own sampled text (default 0)")
    head = distill.add_argument_group("--kind head")
    head.add_argument("--feature-layers", default="",
                      help="target decoder layers (0-based, comma-separated) whose outputs the head fuses (default: "
                           "an early, a middle and the last one)")
    head.add_argument("--ttt-steps", type=int, default=4,
                      help="training-time-test steps: positions the head is trained to draft on its own features "
                           "(default 4)")
    head.add_argument("--step-decay", type=float, default=0.8, help="weight of step k's loss: this^k (default 0.8)")
    head.add_argument("--feature-weight", type=float, default=0.1,
                      help="weight of the feature-alignment loss on the regressed half (default 0.1)")
    head.add_argument("--eval-prompts", type=int, default=12,
                      help="held-out prompts the finished head is measured on (default 12)")
    distill.set_defaults(func=cmd_distill)


def distill_spec(args: argparse.Namespace):
    """The DistillSpec or HeadSpec the arguments ask for; a malformed --feature-layers raises InvalidField."""
    from specdec.config import resolve_model
    from specdec.errors import InvalidField
    from specdec.training.distill import DistillSpec
    from specdec.training.head_distill import HeadSpec

    if args.kind == "head":
        try:
            layers = tuple(int(part) for part in args.feature_layers.split(",") if part.strip())
        except ValueError:
            raise InvalidField("feature_layers", f"comma-separated layer numbers, got {args.feature_layers!r}") \
                from None
        return HeadSpec(target=args.target, out=args.out, corpus=args.corpus, feature_layers=layers,
                        seq_len=args.seq_len, batch_size=8 if args.batch_size is None else args.batch_size,
                        lr=args.lr, steps=args.steps,
                        minutes=args.minutes, ttt_steps=args.ttt_steps, step_decay=args.step_decay,
                        feature_weight=args.feature_weight, checkpoint_every=args.checkpoint_every,
                        eval_prompts=args.eval_prompts, seed=args.seed)
    return DistillSpec(target=resolve_model(args.target), out=args.out,
                       init=resolve_model(args.init) if args.init else "", corpus=args.corpus, layers=args.layers,
                       width=args.width, heads=args.heads, seq_len=args.seq_len,
                       batch_size=16 if args.batch_size is None else args.batch_size, lr=args.lr, steps=args.steps,
                       minutes=args.minutes, kl_weight=args.kl_weight,
                       on_policy=args.on_policy, checkpoint_every=args.checkpoint_every, seed=args.seed)


def cmd_distill(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from specdec.errors import InvalidField
    from specdec.orchestrator.cli.common import make_console
    from specdec.training.distill import distill
    from specdec.training.head_distill import distill_head

    console = make_console()
    if args.threads < 0:
        print("specdec distill: --threads: must be >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        spec = distill_spec(args)
        spec.check()
        run = distill_head if args.kind == "head" else distill
        with Progress(TextColumn("distilling"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                      TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("distill", total=args.steps or None, loss=0.0)
            figures = run(spec, args.resume, lambda step, total, loss, seconds: progress.update(
                task, completed=step, loss=loss))
    except InvalidField as exc:
        print(f"specdec distill: {exc}", file=sys.stderr)
        return 2
    if args.kind == "head":
        console.print(f"held-out: mean acceptance length at gamma 4, measured: "
                      f"{figures['acceptance_length_greedy_gamma4']:.2f} greedy / "
                      f"{figures['acceptance_length_t1_gamma4']:.2f} T=1; head forward "
                      f"{figures['head_forward_ms']:.2f} ms vs target {figures['target_forward_ms']:.2f} ms")
    else:
        console.print(f"held-out: mean acceptance length at gamma 4, greedy, measured "
                      f"{figures['measured_acceptance_length_greedy_gamma4']:.2f}")
        console.print(f"held-out: greedy agreement {figures['greedy_agreement']:.3f}, acceptance at T=1 "
                      f"{figures['acceptance_t1']:.3f}, mean acceptance length at gamma 4 "
                      f"{figures['mean_acceptance_length_greedy_gamma4']:.2f} greedy / "
                      f"{figures['mean_acceptance_length_t1_gamma4']:.2f} T=1; draft forward "
                      f"{figures['draft_forward_ms']:.2f} ms vs target {figures['target_forward_ms']:.2f} ms")
    console.print(f"wrote the draft, distill.json and MODEL_CARD.md to {args.out}")
    return 0
