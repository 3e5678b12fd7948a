"""The runtime's lean forward against transformers' module forward on the same slots: equal logits and equal
keys and values, bit for bit, for each Llama-family architecture it takes, batched with padding; the
architectures it does not take keep the module forward, and say why."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

from specdec.config import ServeConfig
from specdec.services.runtime.kv_cache import ATTENTION, KVShape, Slot, SlotForward, Span, cache_keyword
from specdec.services.runtime.lean_forward import LeanLlama, lean_forward, unsupported_reason
from specdec.services.runtime.model import CausalLM, LoadSpec, kv_shape

SMALL = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64, tie_word_embeddings=False)

CONFIGS = {
    "llama": lambda: LlamaConfig(**SMALL, num_key_value_heads=4),
    "llama-gqa-bias": lambda: LlamaConfig(**SMALL, num_key_value_heads=2, attention_bias=True, mlp_bias=True),
    "llama3-rope": lambda: LlamaConfig(**SMALL, num_key_value_heads=2, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    "mistral": lambda: MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**SMALL, num_key_value_heads=2, use_sliding_window=False),
}


def build(config, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=ATTENTION, dtype=dtype).eval()


def slots_for(model: torch.nn.Module, lengths: list[int]) -> list[Slot]:
    shape: KVShape = kv_shape(model.config, model.dtype, torch.device("cpu"))
    return [Slot(shape, 1, 64) for _ in lengths]


@torch.inference_mode()
def run(forward, slots: list[Slot], steps: list[list[list[int]]]) -> list[torch.Tensor]:
    """Feed each step's tokens per slot (right-padded to the step's widest) and return each step's logits."""
    outputs = []
    for tokens in steps:
        width = max(len(row) for row in tokens)
        ids = torch.zeros(len(tokens), width, dtype=torch.long)
        for row, row_tokens in enumerate(tokens):
            ids[row, : len(row_tokens)] = torch.tensor(row_tokens)
        spans = [Span(slot, row, slot.length, len(row_tokens)) for row, (slot, row_tokens) in
                 enumerate(zip(slots, tokens, strict=True))]
        positions = torch.tensor([[slot.length] for slot in slots]) + torch.arange(width)
        outputs.append(forward(spans, ids, positions))
        for slot, row_tokens in zip(slots, tokens, strict=True):
            slot.length += len(row_tokens)
    return outputs


def module_forward(model: torch.nn.Module):
    def forward(spans, ids, positions):
        cache = SlotForward(spans, ids.shape[1])
        return model(input_ids=ids, position_ids=positions, use_cache=True, slot_forward=cache,
                     **{cache_keyword(model): cache}).logits
    return forward


# a prefill of two sessions of different lengths (padded), a one-token step, then windows of 3 and 1
STEPS = [[[5, 9, 14, 2, 77, 31], [8, 3]], [[40], [41]], [[1, 2, 3], [60]]]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_lean_logits_and_cache_equal_the_module_forward(name: str):
    model = build(CONFIGS[name]())
    assert unsupported_reason(model) == ""
    lean_slots, module_slots = slots_for(model, [0, 0]), slots_for(model, [0, 0])
    lean = run(LeanLlama(model), lean_slots, STEPS)
    reference = run(module_forward(model), module_slots, STEPS)
    for step, tokens in enumerate(STEPS):
        for row, row_tokens in enumerate(tokens):
            assert torch.equal(lean[step][row, : len(row_tokens)], reference[step][row, : len(row_tokens)]), (step, row)
    for lean_slot, module_slot in zip(lean_slots, module_slots, strict=True):
        held = lean_slot.length
        for lean_part, module_part in zip(lean_slot.parts, module_slot.parts, strict=True):
            assert torch.equal(lean_part[..., :held, :], module_part[..., :held, :])


def test_lean_forward_keeps_a_half_precision_model_in_its_dtype():
    model = build(CONFIGS["llama-gqa-bias"](), torch.bfloat16)
    lean = run(LeanLlama(model), slots_for(model, [0, 0]), STEPS)
    reference = run(module_forward(model), slots_for(model, [0, 0]), STEPS)
    assert lean[0].dtype == torch.bfloat16
    assert all(torch.equal(a[0], b[0]) for a, b in zip(lean, reference, strict=True))


@pytest.mark.parametrize("config, reason", [
    (GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50), "model_type 'gpt2'"),
    (LlamaConfig(**SMALL, rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
     "rope_type 'dynamic'"),
    (MistralConfig(**SMALL, sliding_window=16), "sliding attention window"),
    (LlamaConfig(**SMALL, hidden_act="gelu"), "hidden_act 'gelu'"),
])
def test_other_architectures_keep_the_module_forward_and_say_why(config, reason: str):
    model = AutoModelForCausalLM.from_config(config)
    lean, why = lean_forward(model)
    assert lean is None and reason in why


def test_the_demo_pair_runs_the_lean_forward_unless_told_not_to():
    from specdec.config import resolve_model

    assert CausalLM(LoadSpec(resolve_model("demo:draft"))).forward_kind == "lean"
    lm = CausalLM(LoadSpec(resolve_model("demo:draft"), forward="transformers"))
    assert lm.forward_kind.startswith("transformers")
    lean = CausalLM(LoadSpec(resolve_model("demo:draft")))
    prompt = [5, 17, 99, 250, 3, 41]
    assert torch.equal(lm.extend("s", 0, prompt), lean.extend("s", 0, prompt))
    assert torch.equal(lm.extend("s", 3, [7, 8]), lean.extend("s", 3, [7, 8]))


def test_an_unknown_forward_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="forward: must be one of"):
        CausalLM(LoadSpec("unused", forward="fast"))
    with pytest.raises(ValueError, match="target.forward: must be one of"):
        ServeConfig.from_dict({"target": {"model": "demo:target", "forward": "fast"}})


def test_the_compiled_lean_forward_matches_the_eager_one():
    """torch.compile of each layer's dense math (one compiled function for every layer): the same logits up
    to fused arithmetic's last bits, through windows of several widths and batches (dynamic shapes)."""
    model = build(CONFIGS["llama"]())
    eager_slots, compiled_slots = slots_for(model, [0, 0]), slots_for(model, [0, 0])
    eager = run(LeanLlama(model), eager_slots, STEPS)
    compiled = run(LeanLlama(model, compile_mode="reduce-overhead"), compiled_slots, STEPS)  # (graphs: CUDA only)
    for step, tokens in enumerate(STEPS):
        for row, row_tokens in enumerate(tokens):
            assert torch.allclose(compiled[step][row, : len(row_tokens)], eager[step][row, : len(row_tokens)],
                                  atol=1e-4, rtol=1e-4), (step, row)


def test_a_bad_compile_mode_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"target\.compile"):
        ServeConfig.from_dict({"target": {"model": "demo:target", "compile": "fast"}})
