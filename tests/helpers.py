"""Test helpers: real servers on a background event loop, and the target's own decoding as oracle."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from specdec.config import resolve_model
from specdec.distributions.warps import warped_probs
from specdec.types import SamplingParams


class BackgroundLoop:
    """An asyncio loop on a daemon thread, for hosting grpc.aio servers that sync test code calls."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class TargetOracle:
    """The target model run the plain way: Hugging Face generate() and a naive argmax loop without cache."""

    def __init__(self, model: str = "demo:target", device: str = "cpu", dtype: torch.dtype = torch.float32):
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        # Like a request with ignore_eos: the end-of-text token is an ordinary token, never a stop.
        self.model.config.eos_token_id = self.model.generation_config.eos_token_id = None

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def hf_generate(self, prompt: str, max_new_tokens: int) -> list[int]:
        ids = torch.tensor([self.encode(prompt)], device=self.model.device)
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        return out[0, ids.shape[1]:].tolist()


def random_llama(path: Path, vocab_size: int, seed: int = 0, logit_scale: float = 60.0) -> str:
    """Save a tiny random-weight Llama with a `vocab_size` word-level tokenizer (tokens `t0`, `t1`, ...)
    under `path`, loadable like any hub checkpoint; return the path. `logit_scale` scales the final norm so
    that the next-token distributions are peaked, as a trained model's are, rather than near uniform."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.mul_(logit_scale)
    model.save_pretrained(path)
    words = models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0")
    tokenizer = Tokenizer(words)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="t0", unk_token="t0").save_pretrained(path)
    return str(path)


def chisquare_pvalue(observed: list[float], expected: list[float]) -> float:
    """Pearson's chi-square goodness-of-fit p-value (as scipy.stats.chisquare's, without scipy: the GPU
    check machine has none): the statistic's upper tail under chi-square with len - 1 degrees of freedom."""
    observed_t, expected_t = torch.tensor(observed, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    statistic = ((observed_t - expected_t) ** 2 / expected_t).sum()
    return float(torch.special.gammaincc(torch.tensor((len(observed) - 1) / 2, dtype=torch.float64), statistic / 2))


def joint_expected(oracle: TargetOracle, prefix_ids: list[int], sampling: SamplingParams,
                   trials: int) -> dict[tuple[int, int] | None, float]:
    """P(x1, x2) of the two tokens after `prefix_ids` under the target's warped distributions; pairs whose
    first token is too rare to matter in `trials` draws are pooled under None."""
    with torch.inference_mode():
        first = warped_probs(oracle.model(torch.tensor([prefix_ids])).logits[0, -1:], sampling)[0].double()
        likely = [t for t in (first > 0).nonzero()[:, 0].tolist() if first[t] * trials >= 1]
        rows = oracle.model(torch.tensor([prefix_ids + [t] for t in likely])).logits[:, -1]
        second = warped_probs(rows, sampling).double()
    expected = {(x1, x2): float(first[x1] * second[i, x2]) for i, x1 in enumerate(likely)
                for x2 in (second[i] > 0).nonzero()[:, 0].tolist()}
    expected[None] = 1.0 - sum(expected.values())
    return expected


def joint_pvalue(expected: dict[tuple[int, int] | None, float], pairs: list[tuple[int, int]]) -> float:
    """Chi-square p-value of the observed pairs against `expected` (cells expected under 5 times pooled)."""
    counts = Counter(pair if pair in expected else None for pair in pairs)
    trials = len(pairs)
    pooled_observed, pooled_expected, kept_observed, kept_expected = 0, 0.0, [], []
    for cell, probability in expected.items():
        if probability * trials >= 5 and cell is not None:
            kept_observed.append(counts[cell])
            kept_expected.append(probability * trials)
        else:
            pooled_observed += counts[cell]
            pooled_expected += probability * trials
    if pooled_expected * 1e6 < trials:  # nothing expected outside the kept cells: nothing may land there
        if pooled_observed:
            return 0.0
        if len(kept_observed) == 1:  # a certain pair
            return 1.0
        return chisquare_pvalue(kept_observed, kept_expected)
    return chisquare_pvalue(kept_observed + [pooled_observed], kept_expected + [pooled_expected])


HOST_READS = ("tolist", "item", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__")


def host_reads(run: Callable[[], list], monkeypatch) -> Counter:
    """How often each way of reading a tensor back to the host ran during `run()` (a runner's batch), whose
    results must hold no error."""
    counts: Counter = Counter()
    with monkeypatch.context() as patch:
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            patch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _o=original, **k: counts.update([_n])
                          or _o(self, *a, **k))
        results = run()
    assert not [result for result in results if isinstance(result, Exception)]
    return counts


def random_head(path: Path, target: str = "demo:target", layers: tuple[int, ...] = (1, 4, 7), seed: int = 0) -> str:
    """Save an untrained feature head for `target` under `path`; return the path. Its drafts are seldom
    accepted, which is all a test of exactness or of the session mechanics needs."""
    from specdec.services.head.checkpoint import save_head
    from specdec.services.head.model import FeatureHead
    from specdec.training.head_distill import head_config_for

    model = AutoModelForCausalLM.from_pretrained(resolve_model(target), dtype=torch.float32)
    torch.manual_seed(seed)
    save_head(FeatureHead(head_config_for(model, target, layers)), path)
    return str(path)
