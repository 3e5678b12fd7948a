"""Whether a model fits the share of a GPU its service was given: checked before the weights load.

A service that shares a GPU (`num_gpus` below 1) is capped at its share of the GPU's memory. Its weights
are counted exactly, from the model's config on PyTorch's meta device (no memory, no download of weights);
its KV cache as room for `max_batch` sessions of up to `CACHE_TOKENS_PER_SESSION` tokens each, the least
it needs to serve its batch. A share too small for both is refused naming the field that sets it.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from specdec.errors import InvalidField
from specdec.services.runtime.model import kv_shape

CACHE_TOKENS_PER_SESSION = 2048  # (or the model's context, if shorter)
HEADROOM = 1.2  # activations, the allocator's rounding, the CUDA context


def weights_bytes(model: str, dtype: torch.dtype) -> int:
    """The bytes of the model's parameters and buffers in `dtype`, built on the meta device from its config."""
    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = [*skeleton.parameters(), *skeleton.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
    return 2 * layers * kv_heads * head_dim * dtype.itemsize


def needed_bytes(weights: int, per_token: int, max_batch: int, max_context: int) -> int:
    """Weights plus the cache of a full batch, with headroom."""
    cache = per_token * max(1, max_batch) * min(CACHE_TOKENS_PER_SESSION, max_context)
    return int((weights + cache) * HEADROOM)


def check_fits_share(model: str, dtype: torch.dtype, share: float, max_batch: int) -> None:
    """Refuse (InvalidField naming `num_gpus`) a model that cannot fit `share` of CUDA device 0."""
    config = AutoConfig.from_pretrained(model)
    shape = kv_shape(config, dtype, torch.device("meta"))
    per_token = kv_bytes_per_token(shape.layers, shape.kv_heads, shape.head_dim, dtype)
    context = int(getattr(config, "max_position_embeddings", 0) or CACHE_TOKENS_PER_SESSION)
    check_share("num_gpus", needed_bytes(weights_bytes(model, dtype), per_token, max_batch, context), share,
                torch.cuda.get_device_properties(0).total_memory)


def check_share(field: str, needed: int, share: float, device_bytes: int) -> None:
    """Raise InvalidField naming `field` (the model's num_gpus) when `needed` bytes exceed its share."""
    available = share * device_bytes
    if needed > available:
        raise InvalidField(field, f"{share:g} of a GPU with {device_bytes / 2**30:.1f} GiB is "
                                  f"{available / 2**30:.2f} GiB, too little for this model's weights and the "
                                  f"cache of a full batch ({needed / 2**30:.2f} GiB): give it a larger share, a "
                                  f"GPU of its own, or a smaller dtype")
