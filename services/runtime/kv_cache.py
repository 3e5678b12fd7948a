"""Preallocated KV slots and the attention that reads them: the KV cache of the model runtime.

A `Slot` holds the keys and values of `width` sequences of one length (a session has width 1; a fork of
a session for M draft windows has width M) in one tensor [2, layers, width, kv_heads, capacity, head_dim]
(one per device, for a model whose layers span several).
Capacity grows in blocks, at least doubling, up to the model's context: a slot is allocated when its
session first runs, not up front. Rolling back is setting `length`; nothing is freed or copied.

A batched forward is a list of `Span`s, one per slot: rows [first, first + width) of the batch append
`count` tokens after the slot's `past` tokens, at columns [offset, offset + count) of those rows (sessions
of any lengths share a forward packed into one row, each at its own offset: no padding). `SlotForward` is
the Cache handed to the model for one forward: its `update` writes each span's new keys/values into the
span's slot, and `slot_attention` (the attention function registered under `ATTENTION`) attends each
span's queries over a view of its own slot, with its own causal mask. No cache is stacked, padded or cut back out: each row reads its slot in place.

Knows torch and the transformers Cache / AttentionInterface contract; knows nothing about sessions,
tokens, rounds or sampling.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache

ATTENTION = "specdec_slots"  # the attn_implementation name the runtime loads models with
CAPACITY_BLOCK = 64  # a slot's capacity is a multiple of this (or the model's context)


def grown_capacity(needed: int, capacity: int, limit: int, block: int = CAPACITY_BLOCK) -> int:
    """The capacity a slot of `capacity` positions grows to so that it holds `needed`: rounded up to a
    whole `block`, at least doubled (so growth copies O(length) in total), never past `limit`."""
    if needed <= capacity:
        return capacity
    rounded = -(-needed // block) * block
    return min(limit, max(rounded, 2 * capacity))


def causal_mask(past: int, count: int, device: torch.device) -> torch.Tensor | None:
    """Boolean mask [count, past + count]: query i (at position past + i) sees keys 0..past + i. None for
    one query, which sees everything before it."""
    if count == 1:
        return None
    return torch.ones(count, past + count, dtype=torch.bool, device=device).tril(past)


def span_masks(spans: list[Span]) -> list[torch.Tensor | None]:
    """Each span's causal mask (`causal_mask`), on its slot's device."""
    return [causal_mask(span.past, span.count, span.slot.device) for span in spans]


@dataclass(frozen=True)
class KVShape:
    """The per-token K/V geometry of a model; `layer_devices` (one per layer) where a model spans devices,
    each layer's keys and values kept on its own layer's device (empty: every layer on `device`)."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    layer_devices: tuple[torch.device, ...] = ()

    def device_groups(self) -> list[tuple[torch.device, int]]:
        """Runs of consecutive layers on one device: (device, layers) in layer order."""
        groups: list[tuple[torch.device, int]] = []
        for device in self.layer_devices or (self.device,) * self.layers:
            if groups and groups[-1][0] == device:
                groups[-1] = (device, groups[-1][1] + 1)
            else:
                groups.append((device, 1))
        return groups


class Slot:
    """Keys and values of `width` sequences sharing one length, preallocated to `capacity` positions: one
    tensor [2, layers, width, kv_heads, capacity, head_dim] per run of layers on one device (`parts`; one
    part unless the model spans devices)."""

    def __init__(self, shape: KVShape, width: int, capacity: int):
        self.shape, self.width, self.length = shape, width, 0
        self.parts = [torch.empty(2, layers, width, shape.kv_heads, capacity, shape.head_dim, dtype=shape.dtype,
                                  device=device) for device, layers in shape.device_groups()]
        # layer -> (its part, its index there)
        self._where = [(part, local) for part, (_, layers) in enumerate(shape.device_groups())
                       for local in range(layers)]

    @property
    def capacity(self) -> int:
        return self.parts[0].shape[4]

    @property
    def device(self) -> torch.device:
        """Where the first layer's keys and values are (the model's input device)."""
        return self.parts[0].device

    def reserve(self, needed: int, limit: int) -> None:
        """Make room for `needed` positions (growing by `grown_capacity`); the held positions are kept."""
        capacity = grown_capacity(needed, self.capacity, limit)
        if capacity == self.capacity:
            return
        for index, part in enumerate(self.parts):
            grown = part.new_empty(*part.shape[:4], capacity, part.shape[5])
            grown[:, :, :, :, : self.length] = part[:, :, :, :, : self.length]
            self.parts[index] = grown

    def copies(self, width: int, extra: int, limit: int) -> Slot:
        """A new slot of `width` copies of this one's (width-1) sequence, with room for `extra` more tokens."""
        fork = Slot(self.shape, width, grown_capacity(self.length + extra, 0, limit))
        for copy, part in zip(fork.parts, self.parts, strict=True):
            copy[:, :, :, :, : self.length] = part[:, :, :1, :, : self.length]
        fork.length = self.length
        return fork

    def write(self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """keys, values [width, kv_heads, n, head_dim] -> positions start..start + n of layer `layer`."""
        part, local = self._where[layer]
        stop = start + keys.shape[2]
        self.parts[part][0, local, :, :, start:stop] = keys
        self.parts[part][1, local, :, :, start:stop] = values

    def view(self, layer: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions 0..stop of layer `layer`, as views [width, kv_heads, stop, head_dim]."""
        part, local = self._where[layer]
        return self.parts[part][0, local, :, :, :stop], self.parts[part][1, local, :, :, :stop]


@dataclass(frozen=True)
class Span:
    """Rows [first, first + slot.width) of a batched forward, columns [offset, offset + count) of them: `count`
    new tokens after `past` in `slot`."""

    slot: Slot
    first: int
    past: int
    count: int
    offset: int = 0

    @property
    def rows(self) -> slice:
        return slice(self.first, self.first + self.slot.width)

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.count)


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword a model's forward takes its Cache by: transformers 5.24 renamed `past_key_values` to
    `cache`; earlier 5.x take `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class SlotForward(Cache):
    """The Cache of one batched forward over spans of slots: `update` writes the new keys/values of each
    span into its slot (only its own columns). The keys/values it returns are not read: `slot_attention`
    reads the slots, given this object as `slot_forward`."""

    def __init__(self, spans: list[Span], width: int):
        super().__init__(layers=[])
        self.spans, self.width = spans, width  # width: the batch's token positions per row (T)
        self.masks = span_masks(spans)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        write_spans(self.spans, layer_idx, key_states, value_states)
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(span.past for span in self.spans)


def write_spans(spans: list[Span], layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """keys, values [rows, kv_heads, T, head_dim] of one layer of a forward -> each span's slot, only its
    own columns."""
    for span in spans:
        span.slot.write(layer, span.past, keys[span.rows, :, span.columns], values[span.rows, :, span.columns])


def attend_spans(spans: list[Span], masks: list[torch.Tensor | None], layer: int, query: torch.Tensor,
                 scaling: float | None, gqa: bool) -> torch.Tensor:
    """query [rows, heads, T, head_dim] -> output [rows, heads, T, head_dim]: each span attends over its own
    slot (already holding this forward's keys and values) with its own causal mask, at its own columns;
    padding gets 0. A mask made on the first layer's device follows the query to a later layer's (a model
    spanning devices)."""
    if any(mask is not None and mask.device != query.device for mask in masks):
        masks = [mask.to(query.device) if mask is not None else None for mask in masks]
    if len(spans) == 1 and spans[0].count == query.shape[2]:  # one span, all columns: its output is the batch's
        keys, values = spans[0].slot.view(layer, spans[0].past + spans[0].count)
        return torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=masks[0],
                                                                scale=scaling, enable_gqa=gqa)
    out = query.new_zeros(query.shape)
    for span, mask in zip(spans, masks, strict=True):
        keys, values = span.slot.view(layer, span.past + span.count)
        out[span.rows, :, span.columns] = torch.nn.functional.scaled_dot_product_attention(
            query[span.rows, :, span.columns], keys, values, attn_mask=mask, scale=scaling, enable_gqa=gqa)
    return out


def slot_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                   slot_forward: SlotForward | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query [rows, heads, T, head_dim] -> output [rows, T, heads, head_dim], each span attending over its
    own slot (already updated with this forward's keys). `key`, `value` and `attention_mask` are unused."""
    if slot_forward is None:
        raise RuntimeError(f"attention {ATTENTION!r} runs only inside the runtime's forwards (slot_forward=...)")
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    out = attend_spans(slot_forward.spans, slot_forward.masks, module.layer_idx, query, scaling, gqa)
    return out.transpose(1, 2), None


AttentionInterface.register(ATTENTION, slot_attention)
