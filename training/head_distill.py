"""Train a feature head for a target (`specdec distill --kind head`): EAGLE-3's inputs and training-time
test, FSPAD's feature sampling and partial alignment distillation.

Each step runs the target (frozen) over a batch of corpus windows, taking its features at the head's
`feature_layers` and at its last layer, and its next-token logits. The head then runs `ttt_steps`
training-time-test steps (`FeatureHead.train_steps`); step k's loss, weighted `step_decay`^k, is the logit
distillation KL(target || head) on the `predict` half plus `feature_weight` x SmoothL1 between the
`regress` half and the target's last-layer feature at the next position (partial alignment: the feature
loss reaches the head through the half of its output the LM head never reads). Positions before step k
have no chain and are left out. The loop and its checkpoints are `loop.py`'s; at the end the head is
measured by replaying speculative decoding on held-out prompts at T=0 and T=1 (`head_evaluation.py`) and
saved, with `distill.json` and a model card. docs/feature-heads.md says what of each paper this is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.services.head.checkpoint import save_head
from specdec.services.head.model import FeatureHead, HeadConfig, HeadOutputs, default_feature_layers
from specdec.services.runtime.features import captured_layers
from specdec.services.runtime.model import model_fingerprint
from specdec.training.corpus import encode, read_corpus, windows
from specdec.training.distill import heldout_prompts
from specdec.training.evaluation import forward_ms
from specdec.training.head_evaluation import head_acceptance_length, head_forward_ms
from specdec.training.loop import Budget, train
from specdec.training.model_card import write_head_model_card


@dataclass(frozen=True)
class HeadSpec:
    target: str  # a checkpoint folder, hub id or demo:target, recorded in the head as given
    out: str
    corpus: str = "demo"
    feature_layers: tuple[int, ...] = ()  # (): an early, a middle and the last layer
    seq_len: int = 256
    batch_size: int = 8
    lr: float = 1e-3
    steps: int = 0
    minutes: float = 0.0
    ttt_steps: int = 4
    step_decay: float = 0.8
    feature_weight: float = 0.1
    checkpoint_every: int = 50
    eval_prompts: int = 12
    seed: int = 0

    def check(self) -> None:
        """Raise InvalidField naming the first field out of range (feature_layers against the target: `layers_of`)."""
        rules = [("target", bool(self.target), "is required"), ("out", bool(self.out), "is required"),
                 ("seq_len", self.seq_len >= 8, "must be >= 8"), ("batch_size", self.batch_size >= 1, "must be >= 1"),
                 ("lr", 0 < self.lr < 1, "must be in (0, 1)"), ("steps", self.steps >= 0, "must be >= 0"),
                 ("minutes", self.minutes >= 0, "must be >= 0"),
                 ("steps", self.steps > 0 or self.minutes > 0, "set steps or minutes (or both)"),
                 ("ttt_steps", 1 <= self.ttt_steps < self.seq_len, "must be >= 1 and below seq_len"),
                 ("step_decay", 0 < self.step_decay <= 1, "must be in (0, 1]"),
                 ("feature_weight", self.feature_weight >= 0, "must be >= 0"),
                 ("checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"),
                 ("eval_prompts", self.eval_prompts >= 1, "must be >= 1")]
        for name, ok, reason in rules:
            if not ok:
                raise InvalidField(name, f"{reason}, got {getattr(self, name)!r}")

    def layers_of(self, num_layers: int) -> tuple[int, ...]:
        """The feature layers for a target of `num_layers` decoder layers, checked."""
        layers = self.feature_layers or default_feature_layers(num_layers)
        if len(set(layers)) != len(layers) or not all(0 <= layer < num_layers for layer in layers):
            raise InvalidField("feature_layers", f"must be distinct decoder layers of the target, 0..{num_layers - 1}, "
                                                 f"got {list(layers)}")
        return tuple(layers)


def head_config_for(target: torch.nn.Module, name: str, layers: tuple[int, ...]) -> HeadConfig:
    """A head of the target's width, heads and MLP size, fusing `layers`."""
    config = target.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return HeadConfig(target=name, target_fingerprint=model_fingerprint(config, target.model.embed_tokens.weight),
                      feature_layers=layers, hidden_size=config.hidden_size,
                      intermediate_size=config.intermediate_size, num_attention_heads=config.num_attention_heads,
                      num_key_value_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                      head_dim=head_dim, vocab_size=config.vocab_size,
                      max_position_embeddings=config.max_position_embeddings, rms_norm_eps=config.rms_norm_eps,
                      rope_theta=float(rope))


def head_loss(outputs: list[HeadOutputs], logits_of: Callable[[torch.Tensor], torch.Tensor],
              target_logits: torch.Tensor, next_features: torch.Tensor, step_decay: float,
              feature_weight: float) -> torch.Tensor:
    """Sum over training-time-test steps k of step_decay^k x (KL(target || head) on `predict` +
    feature_weight x SmoothL1(`regress`, the target's next feature)), positions k.. only."""
    target_logp = F.log_softmax(target_logits.float(), -1)
    target_p = target_logp.exp()
    total = target_logits.new_zeros((), dtype=torch.float32)
    for step, out in enumerate(outputs):
        logp = F.log_softmax(logits_of(out.predict).float(), -1)
        kl = (target_p * (target_logp - logp)).sum(-1)[:, step:].mean()
        feature = F.smooth_l1_loss(out.regress[:, step:].float(), next_features[:, step:].float())
        total = total + step_decay ** step * (kl + feature_weight * feature)
    return total


def distill_head(spec: HeadSpec, resume: bool = False,
                 on_step: Callable[[int, int, float, float], None] = lambda step, total, loss, seconds: None) -> dict:
    """Run (or resume) a head's training; return the figures its model card shows."""
    spec.check()
    out = Path(spec.out)
    source = resolve_model(spec.target)  # the head keeps the name as given (demo:target travels)
    tokenizer = AutoTokenizer.from_pretrained(source)
    target = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    target.requires_grad_(False)
    num_layers = target.config.num_hidden_layers
    layers = spec.layers_of(num_layers)
    out.mkdir(parents=True, exist_ok=True)
    train_texts, heldout_texts = read_corpus(spec.corpus)
    train_tokens, heldout_tokens = encode(tokenizer, train_texts), encode(tokenizer, heldout_texts)
    torch.manual_seed(spec.seed)
    head = FeatureHead(head_config_for(target, spec.target, layers))
    head.attach_target(target.model.embed_tokens.weight, target.model.norm.weight, target.lm_head.weight)
    captured_set = tuple(sorted(set(layers) | {num_layers - 1}))
    take = [captured_set.index(layer) for layer in layers]
    hidden = target.config.hidden_size

    def loss_of(rng: random.Random) -> torch.Tensor:
        block = windows(train_tokens, spec.seq_len, spec.batch_size, rng)
        with torch.no_grad(), captured_layers(target, captured_set) as captured:
            target_logits = target(block).logits
        chunks = captured[0].split(hidden, -1)
        features = torch.cat([chunks[index] for index in take], -1)
        outputs = head.train_steps(features[:, :-1], block[:, 1:], spec.ttt_steps)
        return head_loss(outputs, head.logits, target_logits[:, 1:], chunks[-1][:, 1:], spec.step_decay,
                         spec.feature_weight)

    progress = train(head, loss_of, Budget(spec.steps, spec.minutes, spec.lr, spec.checkpoint_every, spec.seed),
                     out, resume, on_step)
    prompts = heldout_prompts(heldout_tokens, spec.eval_prompts)
    figures = {"acceptance_length_greedy_gamma4": head_acceptance_length(target, head, prompts, 4),
               "acceptance_length_t1_gamma4": head_acceptance_length(target, head, prompts, 4, temperature=1.0),
               "target_forward_ms": forward_ms(target), "head_forward_ms": head_forward_ms(head),
               "head_parameters": sum(p.numel() for p in head.parameters()),
               "steps": progress.step, "runs": progress.runs, "training_seconds": progress.seconds,
               "train_tokens": len(train_tokens), "heldout_tokens": len(heldout_tokens), "losses": progress.losses}
    save_head(head, out)
    (out / "distill.json").write_text(json.dumps({"spec": asdict(spec), "figures": figures}, indent=2))
    write_head_model_card(out / "MODEL_CARD.md", spec, head.config, figures)
    return figures
