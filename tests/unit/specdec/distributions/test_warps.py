"""Sampling warps: temperature, top-k, top-p as Hugging Face applies them."""

from __future__ import annotations

import torch

from specdec.distributions.warps import warped_probs
from specdec.types import SamplingParams

LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])


def test_temperature_zero_is_one_hot_argmax():
    assert warped_probs(LOGITS, SamplingParams(temperature=0.0)).tolist() == [[1.0, 0, 0, 0, 0]]


def test_temperature_scales_logits():
    assert torch.allclose(warped_probs(LOGITS, SamplingParams(temperature=0.5)), torch.softmax(LOGITS * 2, -1))


def test_top_k_keeps_the_k_most_likely():
    probs = warped_probs(LOGITS, SamplingParams(top_k=2))
    assert torch.allclose(probs[0, :2], torch.softmax(LOGITS[0, :2], -1))
    assert probs[0, 2:].sum() == 0


def test_top_p_keeps_the_smallest_set_reaching_p():
    base = torch.softmax(LOGITS, -1)[0]  # about [0.56, 0.21, 0.13, 0.08, 0.03]
    probs = warped_probs(LOGITS, SamplingParams(top_p=0.75))[0]
    kept = (probs > 0).sum().item()
    assert kept == 2 and base[:1].sum() < 0.75 <= base[:2].sum()
    assert torch.allclose(probs[:2], base[:2] / base[:2].sum())


def test_top_p_always_keeps_the_most_likely_token():
    probs = warped_probs(LOGITS, SamplingParams(top_p=0.01))[0]
    assert probs.tolist() == [1.0, 0, 0, 0, 0]
