"""The model card `specdec distill` writes beside the draft: how it was made and what it measures."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path


def write_model_card(path: Path, spec, figures: dict) -> None:
    f = figures
    source = f"initialised from `{spec.init}`" if spec.init else f"a new Llama of {spec.layers} x {spec.width}"
    lines = [
        "# Distilled draft", "",
        f"A standalone draft for `{spec.target}`, made by `specdec distill --kind model` ({source}), "
        f"trained on the corpus `{spec.corpus}` with the target's next-token distributions as soft labels.", "",
        "| held-out figure | value |", "|---|---|",
        f"| target loss (nats/token) | {f['target_loss']:.3f} |",
        f"| draft loss (nats/token) | {f['draft_loss']:.3f} |",
        f"| acceptance at T=1 (mean of sum min(P, Q)) | {f['acceptance_t1']:.3f} |",
        f"| greedy agreement (draft argmax = target argmax) | {f['greedy_agreement']:.3f} |",
        f"| mean acceptance length at gamma 4, greedy (from the agreement) | "
        f"{f['mean_acceptance_length_greedy_gamma4']:.2f} |",
        f"| mean acceptance length at gamma 4, T=1 (from the acceptance) | "
        f"{f['mean_acceptance_length_t1_gamma4']:.2f} |",
        f"| mean acceptance length at gamma 4, greedy, measured (greedy speculative decoding replayed on "
        f"{spec.eval_batches} held-out prompts, 48 tokens each) | "
        f"{f['measured_acceptance_length_greedy_gamma4']:.2f} |",
        f"| one-token forward, 1 thread, 128-token cache: target / draft (ms) | "
        f"{f['target_forward_ms']:.2f} / {f['draft_forward_ms']:.2f} |",
        f"| draft parameters | {f['draft_parameters'] / 1e6:.2f}M |", "",
        *training_lines(spec, f, f"loss {spec.kl_weight:g} x KL(target || draft) + {1 - spec.kl_weight:g} x "
                                 f"cross-entropy; {spec.on_policy:.0%} of batches on the target's own samples"),
    ]
    path.write_text("\n".join(lines))


def write_head_model_card(path: Path, spec, config, figures: dict) -> None:
    f = figures
    lines = [
        "# Feature head", "",
        f"A feature head for `{spec.target}` (fingerprint `{config.target_fingerprint}`), made by `specdec distill "
        f"--kind head`: it reads the target's hidden states after decoder layers {list(config.feature_layers)} "
        f"and drafts with one decoder layer and the target's own embedding and LM head "
        f"(docs/feature-heads.md). Trained on the corpus `{spec.corpus}`.", "",
        "| held-out figure | value |", "|---|---|",
        f"| mean acceptance length at gamma 4, greedy (speculative decoding replayed on {spec.eval_prompts} "
        f"held-out prompts, 48 tokens each) | {f['acceptance_length_greedy_gamma4']:.2f} |",
        f"| mean acceptance length at gamma 4, T=1 (the same, `sd`'s rule) | {f['acceptance_length_t1_gamma4']:.2f} |",
        f"| one-token forward, 1 thread, 128-token cache: target / head (ms) | "
        f"{f['target_forward_ms']:.2f} / {f['head_forward_ms']:.2f} |",
        f"| head parameters (its own; the target's embedding and LM head are borrowed) | "
        f"{f['head_parameters'] / 1e6:.2f}M |", "",
        *training_lines(spec, f, f"{spec.ttt_steps} training-time-test steps weighted {spec.step_decay:g}^k, each "
                                 f"KL(target || head) + {spec.feature_weight:g} x SmoothL1 on the regressed feature"),
    ]
    path.write_text("\n".join(lines))


def training_lines(spec, f: dict, loss: str) -> list[str]:
    """How a run trained (steps, time, tokens, `loss`, optimizer), its losses and its settings."""
    return [
        f"Training: {f['steps']} steps of {spec.batch_size} x {spec.seq_len} tokens in "
        f"{f['training_seconds'] / 60:.1f} minutes over {f['runs']} run(s); {f['train_tokens']:,} training and "
        f"{f['heldout_tokens']:,} held-out tokens; {loss}; AdamW, peak learning rate {spec.lr:g}, warm-up and "
        f"cosine decay.", "",
        "Mean loss by checkpoint interval: " + ", ".join(f"{value:.3f}" for value in f["losses"]), "",
        "Settings: " + ", ".join(f"{key}={value}" for key, value in asdict(spec).items()), "",
    ]
