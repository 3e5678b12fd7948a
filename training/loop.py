"""The training loop every `specdec distill` kind shares: budget, schedule, clipping, checkpoints.

AdamW with a warm-up and a cosine decay to a tenth of the peak rate, gradients clipped to norm 1. A run
stops at `steps` or after `minutes` (of this run: a resumed run has its own, and with `minutes` alone its
own warm-up and decay), whichever comes first; every `checkpoint_every` steps (and at the end) it writes
the model, the optimizer and its place to the checkpoint file, atomically, and a resumed run continues
from there.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


@dataclass
class Progress:
    """Where a run is: what the checkpoint holds besides the weights."""

    step: int = 0
    seconds: float = 0.0  # of training, over every run that resumed it
    losses: list[float] = field(default_factory=list)  # the mean loss of every `checkpoint_every` steps
    runs: int = 0


@dataclass(frozen=True)
class Budget:
    steps: int
    minutes: float
    lr: float
    checkpoint_every: int
    seed: int


def learning_rate(fraction: float, peak: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return peak * max(fraction, 1e-3) / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Progress,
                    run_seconds: float) -> None:
    """The model, the optimizer and the progress (with this run's seconds so far), written atomically."""
    state = asdict(progress) | {"seconds": progress.seconds + run_seconds}
    partial = path.with_suffix(".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "progress": state}, partial)
    partial.replace(path)


def train(model: torch.nn.Module, loss_of: Callable[[random.Random], torch.Tensor], budget: Budget, out: Path,
          resume: bool, on_step: Callable[[int, int, float, float], None]) -> Progress:
    """Train `model` on `loss_of(rng)` (a fresh batch's loss) within the budget; return where it got.
    `on_step(step, steps or 0, loss, seconds)` after each step."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=budget.lr,
                                  weight_decay=0.01)
    progress = Progress()
    checkpoint = out / CHECKPOINT
    if resume and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        progress = Progress(**saved["progress"])
    progress.runs += 1
    rng = random.Random(budget.seed * 1_000_003 + progress.step)  # a resumed run draws new windows
    torch.manual_seed(budget.seed + progress.step)  # what a step samples
    model.train()
    started, window_losses = time.monotonic(), []
    budget_s = 60 * budget.minutes
    while True:
        elapsed = time.monotonic() - started
        if (budget.steps and progress.step >= budget.steps) or (budget_s and elapsed >= budget_s):
            break
        fraction = progress.step / budget.steps if budget.steps else elapsed / budget_s
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(fraction, budget.lr)
        loss = loss_of(rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        progress.step += 1
        window_losses.append(loss.item())
        on_step(progress.step, budget.steps, window_losses[-1], progress.seconds + time.monotonic() - started)
        if progress.step % budget.checkpoint_every == 0:
            progress.losses.append(float(np.mean(window_losses)))
            window_losses = []
            save_checkpoint(checkpoint, model, optimizer, progress, time.monotonic() - started)
    if window_losses:
        progress.losses.append(float(np.mean(window_losses)))
    save_checkpoint(checkpoint, model, optimizer, progress, time.monotonic() - started)
    progress.seconds += time.monotonic() - started
    model.eval()
    return progress
