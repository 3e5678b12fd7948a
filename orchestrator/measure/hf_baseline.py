"""The Hugging Face baselines of `specdec bench --compare-hf`, in the calling process: plain `generate()` on
the target, assisted generation with the draft as `assistant_model`, and bare forwards of each model.

This is what a user would run instead of specdec on the same pair. It knows transformers and torch; it
knows nothing of the serving system (no Ray, no gRPC, no stats dicts): it sees checkpoint folders, prompt
strings and a token count. Like a specdec request with `ignore_eos`, the end-of-text token is an ordinary
token here, so every system generates exactly `max_new_tokens` tokens.

Assisted generation (transformers' `_assisted_decoding`): greedy, it keeps the draft tokens up to the
first mismatch with the target's argmax; with `do_sample` and the draft's logits at hand it runs the
speculative-sampling rule of Leviathan et al. (2023), so both temperatures are lossless as in specdec.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, GenerationConfig

from specdec.config import resolve_model
from specdec.services.runtime.kv_cache import cache_keyword
from specdec.services.runtime.model import DTYPES

SCHEDULES = ("constant", "heuristic")


@dataclass(frozen=True)
class HFConfig:
    """One Hugging Face way of decoding: plain generate() (schedule "") or assisted with a schedule."""

    label: str
    schedule: str = ""  # "" | constant | heuristic
    gamma: int = 0  # num_assistant_tokens (the heuristic schedule's starting value)

    @property
    def assisted(self) -> bool:
        return bool(self.schedule)


@dataclass
class HFRow:
    """Totals of one configuration over all prompts at one temperature and one thread count."""

    config: HFConfig
    temperature: float
    threads: int
    tokens: int = 0
    seconds: float = 0.0
    outputs: list[list[int]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def hf_configs(gamma: int) -> list[HFConfig]:
    return [HFConfig("HF generate()"),
            HFConfig(f"HF assisted constant gamma={gamma}", "constant", gamma),
            HFConfig(f"HF assisted heuristic (from {gamma})", "heuristic", gamma)]


class HFPair:
    """The target and the draft loaded the plain way (eval, on `device` in `dtype`), end-of-text an ordinary
    token. `from_services` loads them as the running services hold them, so both systems run on the same
    device (a GPU's, when the services have one) in the same precision."""

    def __init__(self, target_path: str, draft_path: str, device: str = "cpu", dtype: str = "float32"):
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(target_path)
        self.target = _load(target_path, self.device, DTYPES[dtype])
        self.draft = _load(draft_path, self.device, DTYPES[dtype])

    @classmethod
    def from_services(cls, info: dict, assistant: str = "") -> HFPair:
        """The pair of an orchestrator's `server_info()`: its target's device and dtype, if this process
        has that device (else the CPU); the draft is its own, or `assistant` (a standalone draft, where the
        deployment's draft is a feature head, which Hugging Face cannot run)."""
        target = info["target"]
        device = (target.get("device") or "cpu").split(",")[0].strip()  # a spanning target's first device
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        return cls(resolve_model(target["model"]), resolve_model(assistant or info["draft"]["model"]), device,
                   target.get("dtype") or "float32")

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def prepare_assistant(self, config: HFConfig) -> None:
        """Set the draft's generation config for `config`. The heuristic schedule carries its gamma over from
        one generate() call to the next; `generate` restarts it at every call, so that each request starts
        from gamma as specdec's per-request controllers do. The constant schedule also turns off the
        confidence stop (default threshold 0.4), so that it drafts exactly gamma tokens a round as specdec's
        fixed gamma does; the heuristic keeps transformers' default threshold."""
        assistant = self.draft.generation_config
        assistant.num_assistant_tokens_schedule = config.schedule
        assistant.num_assistant_tokens = config.gamma
        assistant.assistant_confidence_threshold = 0.0 if config.schedule == "constant" else None

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], config: HFConfig, max_new_tokens: int, temperature: float,
                 seed: int) -> list[int]:
        """The new tokens of one generate() call: greedy at temperature 0, else sampled from the whole
        distribution (top_k=0, top_p=1) with `torch.manual_seed(seed)`."""
        ids = torch.tensor([prompt_ids], device=self.device)
        sampled = temperature > 0
        generation = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                      do_sample=sampled, temperature=temperature if sampled else None,
                                      top_k=0 if sampled else None, top_p=1.0 if sampled else None,
                                      pad_token_id=self.tokenizer.pad_token_id or 0)
        if config.assisted:
            self.prepare_assistant(config)
        torch.manual_seed(seed)
        out = self.target.generate(ids, attention_mask=torch.ones_like(ids), generation_config=generation,
                                   assistant_model=self.draft if config.assisted else None)
        return out[0, ids.shape[1]:].tolist()


def _load(path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    model.config.eos_token_id = model.generation_config.eos_token_id = None
    return model


def run_hf(pair: HFPair, prompts: list[str], config: HFConfig, max_new_tokens: int, temperature: float,
           threads: int, seed: int, on_prompt: Callable[[], None] = lambda: None) -> HFRow:
    """Decode every prompt one call at a time with `threads` torch threads, after one short warm-up call;
    request i is seeded `seed + i`, as specdec's bench seeds its requests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        encoded = [pair.encode(p) for p in prompts]
        pair.generate(encoded[0], config, min(8, max_new_tokens), temperature, seed)
        row = HFRow(config, temperature, threads)
        for index, prompt_ids in enumerate(encoded):
            started = time.perf_counter()
            new_ids = pair.generate(prompt_ids, config, max_new_tokens, temperature, seed + index)
            row.seconds += time.perf_counter() - started
            row.tokens += len(new_ids)
            row.outputs.append(new_ids)
            on_prompt()
        return row
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class BareForwards:
    """Median seconds of single forwards over a KV cache of `cache_tokens`, one thread, in this process; and
    the mean seconds of one prefill of the run's prompts (0: not measured), which every request pays once."""

    cache_tokens: int
    gamma: int
    draft_1: float  # the draft, 1 token
    target_1: float  # the target, 1 token
    target_verify: float  # the target, gamma + 1 tokens
    draft_prefill: float = 0.0
    target_prefill: float = 0.0


@torch.inference_mode()
def median_forward_seconds(model: torch.nn.Module, cache_tokens: int, new_tokens: int, repeats: int) -> float:
    """Median time of one forward of `new_tokens` tokens over a cache of `cache_tokens`, the cache cropped
    back after each forward so that every repetition sees the same length."""
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prefix = torch.randint(0, vocab, (1, cache_tokens), generator=generator).to(model.device)
    step = torch.randint(0, vocab, (1, new_tokens), generator=generator).to(model.device)
    cache = DynamicCache()
    keyword = cache_keyword(model)
    model(prefix, use_cache=True, **{keyword: cache})
    times = []
    for _ in range(repeats + 3):  # the first three warm up
        started = time.perf_counter()
        model(step, use_cache=True, **{keyword: cache})
        synchronize(model.device)
        times.append(time.perf_counter() - started)
        cache.crop(-new_tokens)
    return statistics.median(times[3:])


@torch.inference_mode()
def mean_prefill_seconds(model: torch.nn.Module, prompts: list[list[int]], repeats: int = 3) -> float:
    """Mean over the prompts of the median time of one forward of the whole prompt into a fresh cache."""
    medians = []
    for prompt_ids in prompts:
        ids = torch.tensor([prompt_ids], device=model.device)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(ids, use_cache=True, **{cache_keyword(model): DynamicCache()})
            synchronize(model.device)
            times.append(time.perf_counter() - started)
        medians.append(statistics.median(times))
    return statistics.fmean(medians) if medians else 0.0


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a CUDA forward returns before it has run)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forwards(pair: HFPair, gamma: int, cache_tokens: int = 100, repeats: int = 60,
                  prompts: list[str] = ()) -> BareForwards:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoded = [pair.encode(prompt) for prompt in prompts]
        return BareForwards(cache_tokens, gamma,
                            draft_1=median_forward_seconds(pair.draft, cache_tokens, 1, repeats * 2),
                            target_1=median_forward_seconds(pair.target, cache_tokens, 1, repeats),
                            target_verify=median_forward_seconds(pair.target, cache_tokens, gamma + 1, repeats),
                            draft_prefill=mean_prefill_seconds(pair.draft, encoded),
                            target_prefill=mean_prefill_seconds(pair.target, encoded))
    finally:
        torch.set_num_threads(previous)
