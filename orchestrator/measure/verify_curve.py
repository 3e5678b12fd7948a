"""The target's verify time against the number of positions it scores: the cost curve of a device.

Speculative decoding pays when verifying gamma + 1 positions costs little more than decoding one: on a
GPU a small model's forward is bound by kernel launches and weight reads, so the curve stays nearly flat
up to some width; on a CPU it climbs with every position. `verify_curve` times the runtime's own verify
(`CausalLM.extend`: roll back, append n tokens in one forward, over the session's KV slot) at each width
after a fixed context, waiting for the device after each call, and reports the median. `random_llama`
builds a Llama of a given size with random weights locally (no download), so the curve of a ~1B model is
on record wherever the check runs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from specdec.services.runtime.model import CausalLM, LoadSpec

POSITIONS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64)
# about 1.0B parameters with a 2,048-token vocabulary (the demo tokenizer's): Llama-3.2-1B's shape, 16 layers
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8}


@dataclass(frozen=True)
class CurvePoint:
    positions: int
    seconds: float  # median of one verify call
    relative: float  # seconds / the one-position call's

    def as_dict(self) -> dict:
        return asdict(self)


def verify_curve(lm: CausalLM, positions: tuple[int, ...] = POSITIONS, context_tokens: int = 128,
                 repeats: int = 20) -> list[CurvePoint]:
    """The median time of verifying n positions after `context_tokens` cached ones, for each n."""
    if context_tokens + max(positions) > lm.max_context:
        raise ValueError(f"positions: {context_tokens} + {max(positions)} exceed the model's context of "
                         f"{lm.max_context}")
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, lm.vocab_size, (context_tokens + max(positions),), generator=generator).tolist()
    session = "verify-curve"
    lm.extend(session, 0, tokens[:context_tokens])
    medians = {}
    try:
        for count in positions:
            window = tokens[context_tokens: context_tokens + count]
            times = []
            for repeat in range(repeats + 3):  # the first three warm up
                started = time.perf_counter()
                lm.extend(session, context_tokens, window)[-1, 0].item()  # the read-back waits for the device
                if repeat >= 3:
                    times.append(time.perf_counter() - started)
            medians[count] = statistics.median(times)
    finally:
        lm.end_session(session)
    base = medians[positions[0]]
    return [CurvePoint(count, seconds, seconds / base) for count, seconds in medians.items()]


def random_llama(folder: Path, tokenizer_source: str, shape: dict, dtype: str = "bfloat16",
                 device: str = "cpu", seed: int = 0) -> str:
    """Save a Llama of `shape` (LlamaConfig fields) with random weights and `tokenizer_source`'s tokenizer
    under `folder`, loadable like any checkpoint; return the folder. The weights are made on `device`."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from specdec.services.runtime.model import DTYPES

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **shape)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(DTYPES[dtype])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def parameter_count(lm: CausalLM) -> int:
    return sum(p.numel() for p in lm.model.parameters())


def curve_of(model: str, dtype: str, device: str, positions: tuple[int, ...], repeats: int,
             compile_mode: str = "off") -> dict:
    """Load `model` as a service would (its lean forward compiled unless `compile_mode` is "off") and
    measure its curve; a JSON-ready record."""
    lm = CausalLM(LoadSpec(model, dtype, device, compile=compile_mode))
    points = verify_curve(lm, positions, repeats=repeats)
    record = {"model": model, "parameters": parameter_count(lm), "device": str(lm.device), "dtype": dtype,
              "compile": compile_mode, "forward": lm.forward_kind, "points": [point.as_dict() for point in points]}
    del lm
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        torch.cuda.empty_cache()
    return record
