"""The check that a model fits its share of a GPU: exact weights from the config on the meta device, the
cache of a full batch, and a refusal naming the field."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.services.runtime.gpu_fit import (
    CACHE_TOKENS_PER_SESSION,
    HEADROOM,
    check_share,
    kv_bytes_per_token,
    needed_bytes,
    weights_bytes,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_are_counted_exactly_without_loading_them(dtype):
    path = resolve_model("demo:draft")
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    expected = sum(t.numel() * t.element_size() for t in [*loaded.parameters(), *loaded.buffers()])
    assert weights_bytes(path, dtype) == expected


def test_the_cache_of_a_full_batch_is_counted_up_to_the_context():
    per_token = kv_bytes_per_token(layers=4, kv_heads=2, head_dim=64, dtype=torch.float16)
    assert per_token == 2 * 4 * 2 * 64 * 2
    assert needed_bytes(1000, per_token, 8, 10**6) == int((1000 + per_token * 8 * CACHE_TOKENS_PER_SESSION) * HEADROOM)
    assert needed_bytes(1000, per_token, 8, 512) == int((1000 + per_token * 8 * 512) * HEADROOM)  # short context


def test_a_share_too_small_is_refused_naming_the_field():
    gib = 2**30
    check_share("draft.num_gpus", 10 * gib, 0.25, 141 * gib)  # 35 GiB of an H200: fits
    with pytest.raises(InvalidField) as refused:
        check_share("target.num_gpus", 120 * gib, 0.75, 141 * gib)
    assert refused.value.field == "target.num_gpus" and "105.75 GiB" in refused.value.reason
