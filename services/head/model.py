"""A feature head: the draft kind that reads the target's own hidden states (EAGLE-3's inputs, FSPAD's body).

Pair t of a head's sequence is (g_t, token t+1): g_t is the target's fused features at position t (its
hidden states after each layer of `feature_layers`, concatenated and projected by `fuse`), or, at a drafted
position, the head's own regressed feature one position before; the token is the one that followed
position t. Feature sampling (FSPAD) combines the two before the decoder layer: x = W[e; g] + b, then
x + down(SiLU(gate(e)) * up(norm(x))), the token's embedding gating the feature's projection. One Llama
decoder layer follows, its MLP writing 2h wide onto a doubled residual (partial alignment, FSPAD): the
first half `predict` goes through the target's own final norm and LM head, frozen, to the distribution of
token t + 2; the second half `regress` is trained toward the target's last-layer feature at t + 1 and is
what drafting feeds back as the next g. The target's embedding, final norm and LM head are not part of a
head's checkpoint: they are loaded from the target's (`checkpoint.py`) and kept as buffers.
docs/feature-heads.md gives the reading of both papers this follows and where it departs.

Two forwards over the same weights: `train_steps` over whole sequences, with the training-time test
(EAGLE-3: step k feeds every position the head's own regressed feature of step k - 1 one position before,
and each query attends the target-fed keys of the context and its own chain of drafted keys, as drafting
does), and `slot_forward` over the runtime's KV slots, as the draft service runs it.
`tests/unit/services/test_head_model.py` holds them equal.

Knows torch and the runtime's lean per-layer math and slots; nothing of sessions, services or training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F

from specdec.services.runtime.kv_cache import Span, attend_spans, span_masks, write_spans
from specdec.services.runtime.lean_forward import attention_inputs, rms_norm, rotary_tables


@dataclass(frozen=True)
class HeadConfig:
    """A head's shape and the target it belongs to (saved as `head_config.json`)."""

    target: str  # the target's checkpoint as it was named when the head was trained
    target_fingerprint: str  # `runtime.model.model_fingerprint` of that target
    feature_layers: tuple[int, ...]  # target decoder layers (0-based) whose outputs are fused
    hidden_size: int  # the target's
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float

    def to_dict(self) -> dict:
        return asdict(self) | {"feature_layers": list(self.feature_layers)}

    @classmethod
    def from_dict(cls, raw: dict) -> HeadConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known} | {"feature_layers": tuple(raw["feature_layers"])})

    @property
    def feature_width(self) -> int:
        """Values per position the target sends: its hidden size for each fused layer."""
        return len(self.feature_layers) * self.hidden_size


def default_feature_layers(num_layers: int) -> tuple[int, ...]:
    """An early, a middle and the last decoder layer (EAGLE-3 fuses a low, a middle and a high one; on a
    small target the last layer's output, which the LM head reads, carries the most)."""
    return tuple(sorted({min(1, num_layers - 1), num_layers // 2, num_layers - 1}))


class HeadOutputs(NamedTuple):
    predict: torch.Tensor  # [..., h]: what the LM head reads
    regress: torch.Tensor  # [..., h]: the feature fed back at the next drafted position


class FeatureHead(torch.nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        hidden, inner = config.hidden_size, config.intermediate_size
        query_width = config.num_attention_heads * config.head_dim
        kv_width = config.num_key_value_heads * config.head_dim
        self.fuse = torch.nn.Linear(config.feature_width, hidden, bias=False)
        # feature sampling
        self.sample_in = torch.nn.Linear(2 * hidden, hidden)
        self.sample_norm = torch.nn.Parameter(torch.ones(hidden))
        self.sample_gate = torch.nn.Linear(hidden, inner, bias=False)
        self.sample_up = torch.nn.Linear(hidden, inner, bias=False)
        self.sample_down = torch.nn.Linear(inner, hidden, bias=False)
        # the decoder layer, its MLP writing both halves
        self.input_norm = torch.nn.Parameter(torch.ones(hidden))
        self.q = torch.nn.Linear(hidden, query_width, bias=False)
        self.k = torch.nn.Linear(hidden, kv_width, bias=False)
        self.v = torch.nn.Linear(hidden, kv_width, bias=False)
        self.o = torch.nn.Linear(query_width, hidden, bias=False)
        self.post_norm = torch.nn.Parameter(torch.ones(hidden))
        self.gate = torch.nn.Linear(hidden, inner, bias=False)
        self.up = torch.nn.Linear(hidden, inner, bias=False)
        self.down = torch.nn.Linear(inner, 2 * hidden, bias=False)
        self.eps, self.scaling = config.rms_norm_eps, config.head_dim ** -0.5
        self.gqa = config.num_attention_heads != config.num_key_value_heads
        # the target's parts, frozen and not saved with the head (`attach_target`)
        self.register_buffer("embed", torch.zeros(config.vocab_size, hidden), persistent=False)
        self.register_buffer("final_norm", torch.ones(hidden), persistent=False)
        self.register_buffer("lm_head", torch.zeros(config.vocab_size, hidden), persistent=False)
        inv_freq = 1.0 / config.rope_theta ** (torch.arange(0, config.head_dim, 2).float() / config.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def attach_target(self, embed: torch.Tensor, final_norm: torch.Tensor, lm_head: torch.Tensor) -> None:
        """The target's token embedding [vocab, h], final norm weight [h] and LM head [vocab, h]."""
        like = self.fuse.weight
        self.embed, self.final_norm, self.lm_head = (t.detach().to(like) for t in (embed, final_norm, lm_head))

    def fused(self, features: torch.Tensor) -> torch.Tensor:
        """The target's features [..., feature_width] -> g [..., h]."""
        return self.fuse(features.to(self.fuse.weight.dtype))

    def sampled(self, g: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Feature sampling: g [rows, T, h] with the embeddings of tokens [rows, T] -> the layer's input."""
        embedded = F.embedding(tokens, self.embed)
        x = self.sample_in(torch.cat((embedded, g), -1))
        return x + self.sample_down(F.silu(self.sample_gate(embedded)) *
                                    self.sample_up(rms_norm(x, self.sample_norm, self.eps)))

    def attention_inputs(self, x: torch.Tensor, cos: torch.Tensor,
                         sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer's input x [rows, T, h] -> query, keys, values [rows, heads, T, head_dim] (rotated)."""
        return attention_inputs(x, self.input_norm, self.q.weight, None, self.k.weight, None, self.v.weight, None,
                                cos, sin, self.eps, self.config.head_dim)

    def output(self, x: torch.Tensor, attended: torch.Tensor) -> HeadOutputs:
        """The layer after its attention: output projection and residual, then the MLP onto the doubled
        residual, split into its two halves."""
        rows, width, hidden = *x.shape[:2], self.config.hidden_size
        x = x + self.o(attended.transpose(1, 2).reshape(rows, width, -1))
        normed = rms_norm(x, self.post_norm, self.eps)
        out = torch.cat((x, x), -1) + self.down(F.silu(self.gate(normed)) * self.up(normed))
        return HeadOutputs(out[..., :hidden], out[..., hidden:])

    def logits(self, predict: torch.Tensor) -> torch.Tensor:
        """predict [..., h] -> logits [..., vocab] through the target's final norm and LM head."""
        return F.linear(rms_norm(predict, self.final_norm, self.eps), self.lm_head)

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rotary_tables(positions, self.inv_freq, 1.0, self.fuse.weight.dtype)

    def train_steps(self, features: torch.Tensor, tokens: torch.Tensor, steps: int) -> list[HeadOutputs]:
        """features [B, T, feature_width] (the target's, positions 0..T-1) and tokens [B, T] (positions
        1..T) -> the outputs [B, T, h] of each of `steps` training-time-test steps. At step k, position p
        is the k-th drafted pair of a chain whose last target-fed pair is p - k: its g is step k - 1's
        regressed feature at p - 1, and it attends the target-fed keys 0..p - k and its chain's keys at
        p - k + 1..p. Positions p < k have no such chain (leave their outputs out of any loss)."""
        batch, width = tokens.shape
        cos, sin = self.rotary(torch.arange(width, device=tokens.device).expand(batch, width))
        g = self.fused(features)
        keys, values, outputs = [], [], []
        for step in range(steps):
            if step:
                regress = outputs[-1].regress
                g = torch.cat((regress[:, :1], regress[:, :-1]), 1)  # position 0: a placeholder
            x = self.sampled(g, tokens)
            query, key, value = self.attention_inputs(x, cos, sin)
            keys.append(key)
            values.append(value)
            outputs.append(self.output(x, chain_attention(query, keys, values, self.scaling)))
        return outputs

    def slot_forward(self, spans: list[Span], g: torch.Tensor, tokens: torch.Tensor,
                     positions: torch.Tensor) -> HeadOutputs:
        """Pairs (g [rows, T, h], tokens [rows, T]) at positions [rows, T] appended to the spans' slots (one
        layer) -> their outputs."""
        cos, sin = self.rotary(positions)
        x = self.sampled(g, tokens)
        query, keys, values = self.attention_inputs(x, cos, sin)
        write_spans(spans, 0, keys, values)
        return self.output(x, attend_spans(spans, span_masks(spans), 0, query, self.scaling, self.gqa))


def chain_attention(query: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor],
                    scaling: float) -> torch.Tensor:
    """Attention of training-time-test step k = len(keys) - 1 (`FeatureHead.train_steps`): query [B, heads, T, d]
    over keys/values [B, kv_heads, T, d] of steps 0..k. Position p sees step 0 at positions 0..p - k and
    step i at position p - k + i (i = 1..k); the keys a position cannot have are masked."""
    step, width = len(keys) - 1, query.shape[2]
    groups = query.shape[1] // keys[0].shape[1]
    keys = [key.repeat_interleave(groups, 1) for key in keys] if groups > 1 else keys
    values = [value.repeat_interleave(groups, 1) for value in values] if groups > 1 else values
    scores = [(query @ keys[0].transpose(-1, -2)) * scaling]  # [B, heads, T, T]
    visible = torch.ones(width, width, dtype=torch.bool, device=query.device).tril(-step)
    scores[0] = scores[0].masked_fill(~visible, float("-inf"))
    position = torch.arange(width, device=query.device)
    shifted_values = []
    for index in range(1, step + 1):
        shift = step - index  # step i's key for position p sits at p - shift
        key, value = (_shifted(t, shift) for t in (keys[index], values[index]))
        score = (query * key).sum(-1, keepdim=True) * scaling  # [B, heads, T, 1]
        scores.append(score.masked_fill((position < shift)[:, None], float("-inf")))
        shifted_values.append(value)
    weights = torch.softmax(torch.cat(scores, -1).float(), -1).to(query.dtype)
    out = weights[..., :width] @ values[0]
    for index, value in enumerate(shifted_values):
        out = out + weights[..., width + index: width + index + 1] * value
    return out


def _shifted(tensor: torch.Tensor, shift: int) -> torch.Tensor:
    """tensor [B, heads, T, d] moved `shift` positions later along T (zeros in front)."""
    if not shift:
        return tensor
    return torch.cat((tensor.new_zeros(*tensor.shape[:2], shift, tensor.shape[-1]), tensor[:, :, :-shift]), 2)
