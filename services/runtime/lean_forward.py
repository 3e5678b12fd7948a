"""A lean forward for Llama-style decoders over the runtime's KV slots.

transformers' module forward wraps every call in keyword handling, output records, config lookups and
its Cache interface; for the small models a draft is made of, that costs as much as the arithmetic (the
demo draft's one-token forward ran 2x faster without it, the demo target's 1.2x). This forward runs the
same operations as transformers' Llama, in the same order and dtypes, on the model's own weights, so its
logits are equal to the module forward's (`tests/unit/test_lean_forward.py` checks it bit for bit), and
writes keys and values straight into the slots (`kv_cache.write_spans`, `kv_cache.attend_spans`).

With `compile` (the serve config's draft.compile / target.compile), each layer's dense math before and
after its attention (norms, projections, rotary, MLP) runs through torch.compile: fused kernels, fewer
launches, which is what bounds a small model's forward on a GPU; "reduce-overhead" also replays them as
CUDA graphs. The attention over the slots stays eager. Compiled logits may differ from eager ones in
the last bits (fused arithmetic); greedy output is then the compiled target's own.

Only architectures whose decoder is exactly Llama's are run this way (`lean_forward` says why not for the
others, which keep the module forward): RMSNorm, rotary embeddings with a fixed frequency table, SiLU-gated
MLP, optional q/k/v/o and MLP biases, no sliding window.

Knows torch and the layout of transformers' Llama-family modules; knows nothing about sessions or tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from specdec.services.runtime.kv_cache import Span, attend_spans, span_masks, write_spans

LEAN_MODEL_TYPES = ("llama", "mistral", "qwen2")
MOVING_ROPE_TYPES = ("dynamic", "longrope")  # frequency tables that change with the sequence length


@dataclass(frozen=True)
class Linear:
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


@dataclass(frozen=True)
class Layer:
    input_norm: torch.Tensor
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    post_norm: torch.Tensor
    gate: Linear
    up: Linear
    down: Linear


def _linear(module: torch.nn.Module) -> Linear:
    return Linear(module.weight, module.bias)


def unsupported_reason(model: torch.nn.Module) -> str:
    """Why `model` cannot run the lean forward ("" when it can)."""
    config = model.config
    if config.model_type not in LEAN_MODEL_TYPES:
        return f"model_type {config.model_type!r} is not one of {LEAN_MODEL_TYPES}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r} is not silu"
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if any(kind in rope_type for kind in MOVING_ROPE_TYPES):
        return f"rope_type {rope_type!r} moves its frequencies with the sequence length"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "a sliding attention window"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    return ""


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def rotary_tables(positions: torch.Tensor, inv_freq: torch.Tensor, scaling: float,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [rows, 1, T, head_dim] for positions [rows, T] and a fixed frequency table inv_freq [head_dim / 2]."""
    freqs = positions[..., None].float() * inv_freq.float()
    angles = torch.cat((freqs, freqs), dim=-1)
    cos, sin = angles.cos() * scaling, angles.sin() * scaling
    return cos.to(dtype)[:, None], sin.to(dtype)[:, None]


def attention_inputs(hidden: torch.Tensor, norm: torch.Tensor, q_weight: torch.Tensor, q_bias: torch.Tensor | None,
                     k_weight: torch.Tensor, k_bias: torch.Tensor | None, v_weight: torch.Tensor,
                     v_bias: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor, eps: float,
                     head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer up to its attention: hidden [rows, T, hidden] -> query, keys, values [rows, heads, T, head_dim]
    (rotated query and keys)."""
    rows, width = hidden.shape[:2]
    x = rms_norm(hidden, norm, eps)
    query = rotate(F.linear(x, q_weight, q_bias).view(rows, width, -1, head_dim).transpose(1, 2), cos, sin)
    keys = rotate(F.linear(x, k_weight, k_bias).view(rows, width, -1, head_dim).transpose(1, 2), cos, sin)
    return query, keys, F.linear(x, v_weight, v_bias).view(rows, width, -1, head_dim).transpose(1, 2)


def layer_output(hidden: torch.Tensor, attended: torch.Tensor, o_weight: torch.Tensor, o_bias: torch.Tensor | None,
                 norm: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor | None,
                 up_weight: torch.Tensor, up_bias: torch.Tensor | None, down_weight: torch.Tensor,
                 down_bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """One layer after its attention: the output projection and residual, then the MLP and residual."""
    rows, width = hidden.shape[:2]
    hidden = hidden + F.linear(attended.transpose(1, 2).reshape(rows, width, -1), o_weight, o_bias)
    x = rms_norm(hidden, norm, eps)
    return hidden + F.linear(F.silu(F.linear(x, gate_weight, gate_bias)) * F.linear(x, up_weight, up_bias),
                             down_weight, down_bias)


class LeanLlama:
    """The forward of a Llama-family causal LM over slot spans: input_ids, positions [rows, T] ->
    logits [rows, T, output vocab] in the model's dtype, each span's keys and values written to its slot."""

    def __init__(self, model: torch.nn.Module, compile_mode: str = "off"):
        config, decoder = model.config, model.model
        self.embed = decoder.embed_tokens.weight
        self.norm = decoder.norm.weight
        self.head = _linear(model.lm_head)
        self.eps = config.rms_norm_eps
        self.inv_freq = decoder.rotary_emb.inv_freq.to(self.embed.device)  # beside the positions
        self.rope_scaling = decoder.rotary_emb.attention_scaling
        attention = decoder.layers[0].self_attn
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.gqa = config.num_attention_heads != config.num_key_value_heads
        self.layers = [Layer(layer.input_layernorm.weight, _linear(layer.self_attn.q_proj),
                             _linear(layer.self_attn.k_proj), _linear(layer.self_attn.v_proj),
                             _linear(layer.self_attn.o_proj), layer.post_attention_layernorm.weight,
                             _linear(layer.mlp.gate_proj), _linear(layer.mlp.up_proj), _linear(layer.mlp.down_proj))
                       for layer in decoder.layers]
        # The dense math of a layer, before and after its attention: one function for every layer (the
        # weights are arguments), compiled once for all of them when asked (`compile_mode`).
        self._attention_inputs, self._layer_output = attention_inputs, layer_output
        if compile_mode != "off":
            options = {"dynamic": True} | ({} if compile_mode == "default" else {"mode": compile_mode})
            self._attention_inputs = torch.compile(attention_inputs, **options)
            self._layer_output = torch.compile(layer_output, **options)
        if compile_mode == "reduce-overhead":  # a CUDA graph's outputs live in buffers its next replay (the next
            # layer's call) overwrites: each call's outputs are copied out before the next
            self._attention_inputs = _copied(self._attention_inputs)
            self._layer_output = _copied(self._layer_output)

    def __call__(self, spans: list[Span], input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.forward(spans, input_ids, positions)[0]

    def forward(self, spans: list[Span], input_ids: torch.Tensor, positions: torch.Tensor,
                capture: tuple[int, ...] = (), keep: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits (with `keep`, column indices: those columns' only, [rows, len(keep), vocab]) and, with
        `capture`, the features [rows, T, len(capture) x hidden]: the outputs of those decoder layers side by
        side (on the first one's device), None without."""
        captured: dict[int, torch.Tensor] = {}
        hidden = F.embedding(input_ids, self.embed)
        cos, sin = rotary_tables(positions, self.inv_freq, self.rope_scaling, hidden.dtype)
        masks = span_masks(spans)
        for index, layer in enumerate(self.layers):
            if hidden.device != layer.input_norm.device:  # a model spanning devices: on to this layer's
                hidden, cos, sin = (t.to(layer.input_norm.device) for t in (hidden, cos, sin))
            query, keys, values = self._attention_inputs(
                hidden, layer.input_norm, layer.q.weight, layer.q.bias, layer.k.weight, layer.k.bias, layer.v.weight,
                layer.v.bias, cos, sin, self.eps, self.head_dim)
            write_spans(spans, index, keys, values)
            attended = attend_spans(spans, masks, index, query, self.scaling, self.gqa)
            hidden = self._layer_output(hidden, attended, layer.o.weight, layer.o.bias, layer.post_norm,
                                        layer.gate.weight, layer.gate.bias, layer.up.weight, layer.up.bias,
                                        layer.down.weight, layer.down.bias, self.eps)
            if index in capture:
                captured[index] = hidden
        if keep is not None:
            hidden = hidden[:, keep.to(hidden.device)]
        normed = rms_norm(hidden.to(self.norm.device), self.norm, self.eps)
        features = None
        if capture:
            first = captured[capture[0]].device
            features = torch.cat([captured[index].to(first) for index in capture], -1)
        return self.head(normed.to(self.head.weight.device)), features


def _copied(function):
    """`function` with its tensor outputs cloned (a tuple of tensors, or one tensor)."""
    def call(*args):
        out = function(*args)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()
    return call


def lean_forward(model: torch.nn.Module, compile_mode: str = "off") -> tuple[LeanLlama | None, str]:
    """The lean forward of `model` (its layers' dense math compiled unless `compile_mode` is "off"), or None
    and why it keeps the module forward."""
    reason = unsupported_reason(model)
    return (None, reason) if reason else (LeanLlama(model, compile_mode), "")
