"""Distil a standalone draft from a target: the target's next-token distributions as soft labels.

The loss is `kl_weight` x KL(target || draft) plus (1 - kl_weight) x cross-entropy on the corpus's own
next token, over windows of `seq_len` tokens; with `on_policy` > 0 that share of the batches is text the
target samples itself (at temperature 1) after a corpus prefix, the text a draft meets when it serves.
The loop, its schedule and its checkpoints (`<out>/checkpoint.pt`, which `resume` continues from) are
`loop.py`'s. At the
end it measures the held-out figures (`evaluation.py`) and both models' bare forward, saves the draft
(a Hugging Face checkpoint with the target's tokenizer) in `out`, and writes its model card.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from specdec.errors import InvalidField
from specdec.training.corpus import encode, read_corpus, windows
from specdec.training.evaluation import evaluate, forward_ms, greedy_acceptance_length
from specdec.training.loop import Budget, Progress, train
from specdec.training.model_card import write_model_card


@dataclass(frozen=True)
class DistillSpec:
    target: str  # a checkpoint folder or hub id
    out: str
    init: str = ""  # a draft to start from; "": a new Llama of `layers` x `width`
    corpus: str = "demo"
    layers: int = 2
    width: int = 128
    heads: int = 2
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 1e-3
    steps: int = 0  # 0: only `minutes` bounds the run
    minutes: float = 0.0  # 0: only `steps` bounds it
    kl_weight: float = 0.8
    on_policy: float = 0.0
    checkpoint_every: int = 50
    eval_batches: int = 8
    seed: int = 0

    def check(self) -> None:
        """Raise InvalidField naming the first field out of range."""
        rules = [("target", bool(self.target), "is required"), ("out", bool(self.out), "is required"),
                 ("layers", self.layers >= 1, "must be >= 1"), ("width", self.width >= 8, "must be >= 8"),
                 ("heads", self.heads >= 1 and self.width % self.heads == 0, "must be >= 1 and divide width"),
                 ("seq_len", self.seq_len >= 8, "must be >= 8"), ("batch_size", self.batch_size >= 1, "must be >= 1"),
                 ("lr", 0 < self.lr < 1, "must be in (0, 1)"), ("steps", self.steps >= 0, "must be >= 0"),
                 ("minutes", self.minutes >= 0, "must be >= 0"),
                 ("steps", self.steps > 0 or self.minutes > 0, "set steps or minutes (or both)"),
                 ("kl_weight", 0 <= self.kl_weight <= 1, "must be in [0, 1]"),
                 ("on_policy", 0 <= self.on_policy <= 1, "must be in [0, 1]"),
                 ("checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"),
                 ("eval_batches", self.eval_batches >= 1, "must be >= 1")]
        for name, ok, reason in rules:
            if not ok:
                raise InvalidField(name, f"{reason}, got {getattr(self, name)!r}")


def distill_loss(draft_logits: torch.Tensor, target_logits: torch.Tensor, labels: torch.Tensor,
                 kl_weight: float) -> torch.Tensor:
    """kl_weight x KL(target || draft) + (1 - kl_weight) x cross-entropy on the labels, per token."""
    vocab = draft_logits.shape[-1]
    draft_logp = F.log_softmax(draft_logits.reshape(-1, vocab).float(), -1)
    target_logp = F.log_softmax(target_logits.reshape(-1, vocab).float(), -1)
    kl = F.kl_div(draft_logp, target_logp, log_target=True, reduction="batchmean")
    return kl_weight * kl + (1 - kl_weight) * F.nll_loss(draft_logp, labels.reshape(-1))


def new_draft(target: torch.nn.Module, spec: DistillSpec) -> LlamaForCausalLM:
    """A Llama of spec.layers x spec.width over the target's vocabulary, context and special tokens."""
    config = target.config
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=spec.width, intermediate_size=3 * spec.width,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id))


@torch.no_grad()  # not inference mode: the block is the draft's input in a step that trains it
def on_policy_block(target: torch.nn.Module, block: torch.Tensor) -> torch.Tensor:
    """The block's first half followed by the target's own sampled continuation (temperature 1)."""
    prefix = block[:, : block.shape[1] // 2]
    out = target.generate(prefix, attention_mask=torch.ones_like(prefix), do_sample=True, temperature=1.0, top_k=0,
                          top_p=1.0, min_new_tokens=block.shape[1] - prefix.shape[1],
                          max_new_tokens=block.shape[1] - prefix.shape[1], pad_token_id=0)
    return out[:, : block.shape[1]]


def distill(spec: DistillSpec, resume: bool = False,
            on_step: Callable[[int, int, float, float], None] = lambda step, total, loss, seconds: None) -> dict:
    """Run (or resume) a distillation; return the figures the model card shows. `on_step(step, steps or 0,
    loss, seconds)` after each step."""
    spec.check()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(spec.target)
    target = AutoModelForCausalLM.from_pretrained(spec.target, dtype=torch.float32).eval()
    target.requires_grad_(False)
    train_texts, heldout_texts = read_corpus(spec.corpus)
    train_tokens, heldout_tokens = encode(tokenizer, train_texts), encode(tokenizer, heldout_texts)
    torch.manual_seed(spec.seed)  # a new draft's initial weights
    draft = (AutoModelForCausalLM.from_pretrained(spec.init, dtype=torch.float32) if spec.init
             else new_draft(target, spec))
    if draft.config.vocab_size != target.config.vocab_size:
        raise InvalidField("init", f"{spec.init} has {draft.config.vocab_size} tokens, the target "
                                   f"{target.config.vocab_size}: a draft must share the target's vocabulary")

    def loss_of(rng: random.Random) -> torch.Tensor:
        block = windows(train_tokens, spec.seq_len, spec.batch_size, rng)
        if spec.on_policy and rng.random() < spec.on_policy:
            block = on_policy_block(target, block)
        inputs, labels = block[:, :-1], block[:, 1:]
        with torch.no_grad():
            target_logits = target(inputs).logits
        return distill_loss(draft(inputs).logits, target_logits, labels, spec.kl_weight)

    progress = train(draft, loss_of, Budget(spec.steps, spec.minutes, spec.lr, spec.checkpoint_every, spec.seed),
                     out, resume, on_step)
    return finish(spec, target, draft, tokenizer, heldout_tokens, progress, len(train_tokens))


def heldout_prompts(tokens: np.ndarray, count: int, length: int = 64, seed: int = 99) -> list[list[int]]:
    """`count` prompts of `length` held-out tokens from seeded places."""
    rng = random.Random(seed)
    length = min(length, len(tokens) // 2)
    return [tokens[start:start + length].tolist()
            for start in (rng.randrange(0, len(tokens) - length) for _ in range(count))]


def finish(spec: DistillSpec, target: torch.nn.Module, draft: torch.nn.Module, tokenizer, heldout: np.ndarray,
           progress: Progress, train_tokens: int) -> dict:
    """Held-out figures, bare forwards, the saved draft and its model card."""
    draft.eval()
    figures = evaluate(target, draft, heldout, min(spec.seq_len, len(heldout) - 2), spec.eval_batches)
    figures["measured_acceptance_length_greedy_gamma4"] = greedy_acceptance_length(
        target, draft, heldout_prompts(heldout, spec.eval_batches), gamma=4)
    figures |= {"target_forward_ms": forward_ms(target), "draft_forward_ms": forward_ms(draft),
                "draft_parameters": sum(p.numel() for p in draft.parameters()),
                "steps": progress.step, "runs": progress.runs, "training_seconds": progress.seconds,
                "train_tokens": train_tokens, "heldout_tokens": len(heldout), "losses": progress.losses}
    out = Path(spec.out)
    draft.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "distill.json").write_text(json.dumps({"spec": asdict(spec), "figures": figures}, indent=2))
    write_model_card(out / "MODEL_CARD.md", spec, figures)
    return figures
