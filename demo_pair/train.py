"""Train the demo model pair: a byte-level BPE tokenizer, a Llama target and a much cheaper Llama draft.

The corpus is Python source found on this machine (the standard library and the installed packages of
the running interpreter). Files are split into train and held-out by a hash of their relative path, so
the split is the same on every machine that has the same files. The target is trained on next-token
cross-entropy; the draft is trained alongside it by distillation from the target's distributions
(forward KL plus a little hard cross-entropy), then distilled once more against the final target.

Run (about an hour on two CPU cores):

    python demo_pair/train.py --minutes 95 --out demo_pair
    python demo_pair/train.py --resume demo_pair --minutes 12 --lr 1e-3 --out demo_pair   # more distillation

The script writes `target/`, `draft/` (Hugging Face checkpoints, fp16 safetensors, each with the
tokenizer), `heldout.jsonl.gz` (the held-out files the benchmarks cut prompts from) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import random
import site
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
HELDOUT_PERCENT = 2
MAX_FILE_BYTES = 200_000


@dataclass(frozen=True)
class Shape:
    layers: int
    width: int
    heads: int
    intermediate: int


TARGET_SHAPE = Shape(layers=8, width=320, heads=5, intermediate=864)
DRAFT_SHAPE = Shape(layers=2, width=128, heads=2, intermediate=384)


def source_roots() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    roots += [Path(p) for p in site.getsitepackages()]
    return [r for r in roots if r.is_dir()]


def collect_files(max_bytes: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return (train, heldout) lists of (relative path, text), split by a hash of the path."""
    train: list[tuple[str, str]] = []
    heldout: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for root in source_roots():
        for path in sorted(root.rglob("*.py")):
            if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES or path.stat().st_size < 200:
                continue
            rel = f"{root.name}/{path.relative_to(root)}"
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            digest = hashlib.sha1(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            bucket = int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 100
            (heldout if bucket < HELDOUT_PERCENT else train).append((rel, text))
            total += len(text)
            if total > max_bytes:
                return train, heldout
    return train, heldout


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS, model_max_length=512)


def encode_corpus(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> np.ndarray:
    eos_id = tokenizer.eos_token_id
    ids: list[int] = []
    batch = 256
    for start in range(0, len(texts), batch):
        for row in tokenizer(texts[start:start + batch], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
            ids.append(eos_id)
    return np.asarray(ids, dtype=np.uint16)


def build_model(shape: Shape, tokenizer: PreTrainedTokenizerFast, context: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.width,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def batches(tokens: np.ndarray, seq_len: int, batch_size: int, rng: random.Random):
    while True:
        starts = [rng.randrange(0, len(tokens) - seq_len - 1) for _ in range(batch_size)]
        block = np.stack([tokens[s:s + seq_len + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(block)


def distill_loss(draft_logits: torch.Tensor, target_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0.8 * KL(target || draft) + 0.2 * cross-entropy on the real next token."""
    vocab = draft_logits.shape[-1]
    draft_logp = F.log_softmax(draft_logits.reshape(-1, vocab).float(), dim=-1)
    target_logp = F.log_softmax(target_logits.reshape(-1, vocab).float(), dim=-1)
    kl = F.kl_div(draft_logp, target_logp, log_target=True, reduction="batchmean")
    ce = F.nll_loss(draft_logp, labels.reshape(-1))
    return 0.8 * kl + 0.2 * ce


def lr_at(fraction: float, peak: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return peak * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.inference_mode()
def evaluate(target: LlamaForCausalLM, draft: LlamaForCausalLM, tokens: np.ndarray, seq_len: int,
             num_windows: int) -> dict[str, float]:
    """Held-out losses, expected `sd` acceptance at temperature 1 (mean of sum min(P, Q)) and greedy agreement."""
    target.eval()
    draft.eval()
    rng = random.Random(1234)
    stats = {"target_loss": 0.0, "draft_loss": 0.0, "acceptance_t1": 0.0, "greedy_agreement": 0.0}
    count = 0
    for block in batches(tokens, seq_len, 8, rng):
        inputs, labels = block[:, :-1], block[:, 1:]
        target_logits = target(inputs).logits.float()
        draft_logits = draft(inputs).logits.float()
        vocab = target_logits.shape[-1]
        stats["target_loss"] += F.cross_entropy(target_logits.reshape(-1, vocab), labels.reshape(-1)).item()
        stats["draft_loss"] += F.cross_entropy(draft_logits.reshape(-1, vocab), labels.reshape(-1)).item()
        target_probs, draft_probs = target_logits.softmax(-1), draft_logits.softmax(-1)
        stats["acceptance_t1"] += torch.minimum(target_probs, draft_probs).sum(-1).mean().item()
        stats["greedy_agreement"] += (target_logits.argmax(-1) == draft_logits.argmax(-1)).float().mean().item()
        count += 1
        if count == num_windows:
            break
    target.train()
    draft.train()
    return {k: v / count for k, v in stats.items()}


def forward_ms(model: LlamaForCausalLM, context: int = 128, repeats: int = 50) -> float:
    """Milliseconds for one single-token forward with a KV cache of `context` tokens, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.eval()
    with torch.inference_mode():
        prompt = torch.randint(0, model.config.vocab_size, (1, context))
        cache = model(prompt, use_cache=True).past_key_values
        token = torch.tensor([[1]])
        for _ in range(5):
            model(token, past_key_values=cache, use_cache=True)
            cache.crop(-1)
        start = time.perf_counter()
        for _ in range(repeats):
            model(token, past_key_values=cache, use_cache=True)
            cache.crop(-1)
        elapsed = (time.perf_counter() - start) / repeats
    torch.set_num_threads(threads)
    model.train()
    return elapsed * 1000


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    model.to(torch.float16).save_pretrained(path)
    model.to(torch.float32)
    tokenizer.save_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output folder")
    parser.add_argument("--corpus-mb", type=float, default=80.0, help="most source text to read, in MB")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size")
    parser.add_argument("--seq-len", type=int, default=256, help="training window in tokens")
    parser.add_argument("--context", type=int, default=512, help="max_position_embeddings of both models")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--resume", type=Path, help="continue from this folder's target/ and draft/: the target is "
                                                    "kept frozen and the whole budget distills the draft")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    began = time.time()
    log = lambda msg: print(f"[{time.time() - began:7.0f}s] {msg}", flush=True)  # noqa: E731

    train_files, heldout_files = collect_files(int(args.corpus_mb * 1e6))
    log(f"corpus: {len(train_files)} train files, {len(heldout_files)} held-out files")
    if args.resume:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.resume / "target")
    else:
        tok_sample = [text for _, text in rng.sample(train_files, min(len(train_files), 3000))]
        tokenizer = train_tokenizer(tok_sample, args.vocab_size)
    train_tokens = encode_corpus(tokenizer, [t for _, t in train_files])
    heldout_tokens = encode_corpus(tokenizer, [t for _, t in heldout_files])
    log(f"tokens: {len(train_tokens):,} train, {len(heldout_tokens):,} held-out")

    args.out.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out / "heldout.jsonl.gz", "wt", encoding="utf-8") as fh:
        for rel, text in heldout_files:
            fh.write(json.dumps({"path": rel, "text": text}) + "\n")

    if args.resume:
        target = LlamaForCausalLM.from_pretrained(args.resume / "target", dtype=torch.float32)
        draft = LlamaForCausalLM.from_pretrained(args.resume / "draft", dtype=torch.float32)
        log(f"resumed from {args.resume}; before: {evaluate(target, draft, heldout_tokens, args.seq_len, 40)}")
    else:
        target = build_model(TARGET_SHAPE, tokenizer, args.context)
        draft = build_model(DRAFT_SHAPE, tokenizer, args.context)
    optim_target = torch.optim.AdamW(target.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    optim_draft = torch.optim.AdamW(draft.parameters(), lr=args.lr * 1.5, weight_decay=0.05, betas=(0.9, 0.95))
    budget = args.minutes * 60
    joint_budget = 0.0 if args.resume else 0.85 * budget
    start = time.time()
    step = 0
    last_save = start
    for block in batches(train_tokens, args.seq_len, args.batch_size, rng):
        elapsed = time.time() - start
        if elapsed > budget:
            break
        joint = elapsed < joint_budget
        inputs, labels = block[:, :-1], block[:, 1:]
        if joint:
            for group in optim_target.param_groups:
                group["lr"] = lr_at(elapsed / joint_budget, args.lr)
            target_logits = target(inputs).logits
            target_loss = F.cross_entropy(target_logits.reshape(-1, target_logits.shape[-1]), labels.reshape(-1))
            optim_target.zero_grad(set_to_none=True)
            target_loss.backward()
            torch.nn.utils.clip_grad_norm_(target.parameters(), 1.0)
            optim_target.step()
            target_logits = target_logits.detach()
        else:
            with torch.no_grad():
                target_logits = target(inputs).logits
        for group in optim_draft.param_groups:
            group["lr"] = lr_at(elapsed / budget, args.lr * 1.5)
        draft_loss = distill_loss(draft(inputs).logits, target_logits, labels)
        optim_draft.zero_grad(set_to_none=True)
        draft_loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        optim_draft.step()
        step += 1
        if step % 50 == 0:
            log(f"step {step} {'joint' if joint else 'distill'} draft_loss {draft_loss.item():.3f}")
        if time.time() - last_save > 600:
            save(target, tokenizer, args.out / "target")
            save(draft, tokenizer, args.out / "draft")
            last_save = time.time()
            log(f"checkpoint saved; eval {evaluate(target, draft, heldout_tokens, args.seq_len, 4)}")

    save(target, tokenizer, args.out / "target")
    save(draft, tokenizer, args.out / "draft")
    metrics = evaluate(target, draft, heldout_tokens, args.seq_len, 40)
    target_ms, draft_ms = forward_ms(target), forward_ms(draft)
    log(f"final {metrics} target {target_ms:.2f} ms draft {draft_ms:.2f} ms")
    if args.resume:
        append_distillation(args, metrics, target_ms, draft_ms, step)
        return
    write_card(args, metrics, target_ms, draft_ms, step, len(train_tokens), len(heldout_tokens),
               sum(p.numel() for p in target.parameters()), sum(p.numel() for p in draft.parameters()))


def append_distillation(args: argparse.Namespace, metrics: dict[str, float], target_ms: float, draft_ms: float,
                        steps: int) -> None:
    """Add a resumed draft-distillation phase to the model card of the run it continued."""
    card = (args.resume / "MODEL_CARD.md").read_text()
    card += f"""
## Further distillation of the draft

`python demo_pair/train.py --resume {args.resume} --minutes {args.minutes:g} --lr {args.lr}`: the target frozen,
the draft distilled from it for {steps} more steps of {args.batch_size} x {args.seq_len} tokens. After it:

- held-out loss: target {metrics['target_loss']:.3f}, draft {metrics['draft_loss']:.3f} nats/token
- expected `sd` acceptance rate at temperature 1: {metrics['acceptance_t1']:.3f}
- greedy top-1 agreement: {metrics['greedy_agreement']:.3f}
- one-token forward: target {target_ms:.2f} ms, draft {draft_ms:.2f} ms ({target_ms / draft_ms:.1f}x)
"""
    (args.out / "MODEL_CARD.md").write_text(card)


def write_card(args: argparse.Namespace, metrics: dict[str, float], target_ms: float, draft_ms: float,
               steps: int, train_tokens: int, heldout_tokens: int, target_params: int, draft_params: int) -> None:
    t, d = TARGET_SHAPE, DRAFT_SHAPE
    shapes = " | ".join(f"{s.layers} x {s.width} ({s.heads}, {s.intermediate})" for s in (t, d))
    card = f"""# specdec demo model pair

Two Llama-architecture causal LMs and a byte-level BPE tokenizer ({args.vocab_size} tokens), trained by
`demo_pair/train.py` on Python source found on the training machine (standard library and installed
packages; {HELDOUT_PERCENT}% of files held out by path hash). They exist so that the demo and the tests
run anywhere without a model hub; they load through `AutoModelForCausalLM.from_pretrained` like any other.

| | target | draft |
|---|---|---|
| layers x width (heads, MLP) | {shapes} |
| parameters | {target_params / 1e6:.2f}M | {draft_params / 1e6:.2f}M |
| held-out loss (nats/token) | {metrics['target_loss']:.3f} | {metrics['draft_loss']:.3f} |
| one-token forward, 1 thread, 128-token cache | {target_ms:.2f} ms | {draft_ms:.2f} ms |

- cost ratio target/draft: {target_ms / draft_ms:.1f}x (c = {draft_ms / target_ms:.3f})
- expected `sd` acceptance rate at temperature 1 (held-out mean of sum min(P, Q)): {metrics['acceptance_t1']:.3f}
- greedy top-1 agreement of draft and target on held-out positions: {metrics['greedy_agreement']:.3f}

Training: {steps} steps of {args.batch_size} x {args.seq_len} tokens in {args.minutes:.0f} minutes on
{args.threads} CPU threads; {train_tokens:,} training tokens, {heldout_tokens:,} held-out tokens; AdamW,
peak learning rate {args.lr}; the draft distilled from the target (0.8 forward KL + 0.2 cross-entropy),
jointly for 85% of the budget and against the frozen final target for the rest. Weights are stored in
fp16; the services load them in the dtype their config names (fp32 by default). Context: {args.context}
positions (trained on {args.seq_len}-token windows).
"""
    (args.out / "MODEL_CARD.md").write_text(card)


if __name__ == "__main__":
    sys.exit(main())
