"""The feature head's two forwards over the same weights: training-time test over whole sequences, and the
runtime's KV slots a pair at a time, as drafting runs it."""

from __future__ import annotations

import pytest
import torch

from specdec.services.head.model import FeatureHead, HeadConfig, default_feature_layers
from specdec.services.runtime.kv_cache import KVShape, Slot, Span

CONFIG = HeadConfig(target="t", target_fingerprint="f", feature_layers=(1, 4, 7), hidden_size=32,
                    intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=50,
                    max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding (the norms run in float32, as the runtime's do)."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def head() -> FeatureHead:
    torch.manual_seed(0)
    model = FeatureHead(CONFIG).double()
    for parameter in model.parameters():  # away from the initial ones (norms of 1): any mix-up shows
        parameter.data += 0.1 * torch.randn_like(parameter)
    model.attach_target(torch.randn(50, 32), torch.rand(32) + 0.5, torch.randn(50, 32))
    return model


@pytest.mark.parametrize("steps", [1, 4])
def test_each_training_step_is_what_drafting_computes_over_the_slots(steps):
    """Step k at position p = the k-th pair drafted after the target-fed pairs 0..p - k, fed its own
    regressed features: the same outputs as the slot forward (GQA heads included)."""
    model = head()
    width = 10
    features = torch.randn(1, width, CONFIG.feature_width, dtype=torch.double)
    tokens = torch.randint(0, 50, (1, width))
    outputs = model.train_steps(features, tokens, steps)
    shape = KVShape(1, CONFIG.num_key_value_heads, CONFIG.head_dim, torch.double, torch.device("cpu"))
    for last_fed in range(width - steps + 1):
        slot = Slot(shape, 1, 64)
        out = model.slot_forward([Span(slot, 0, 0, last_fed + 1)], model.fused(features[:, : last_fed + 1]),
                                 tokens[:, : last_fed + 1], torch.arange(last_fed + 1)[None])
        slot.length = last_fed + 1
        close(out.predict, outputs[0].predict[:, : last_fed + 1])
        for step in range(1, steps):
            position = last_fed + step
            out = model.slot_forward([Span(slot, 0, slot.length, 1)], out.regress[:, -1:],
                                     tokens[:, position: position + 1], torch.tensor([[position]]))
            slot.length += 1
            close(out.predict[:, 0], outputs[step].predict[:, position])
            close(out.regress[:, 0], outputs[step].regress[:, position])


def test_a_position_sees_nothing_after_it():
    """Changing the last position's inputs changes no earlier output, at any step."""
    model = head()
    features = torch.randn(1, 8, CONFIG.feature_width, dtype=torch.double)
    tokens = torch.randint(0, 50, (1, 8))
    before = model.train_steps(features, tokens, 3)
    features[:, -1] += 1.0
    tokens[:, -1] = (tokens[:, -1] + 1) % 50
    after = model.train_steps(features, tokens, 3)
    for step in range(3):
        torch.testing.assert_close(before[step].predict[:, :-1], after[step].predict[:, :-1])


def test_the_logits_are_the_targets_lm_head_over_the_predict_half():
    model = head()
    predict = torch.randn(3, 32, dtype=torch.double)
    normed = predict * torch.rsqrt(predict.pow(2).mean(-1, keepdim=True) + 1e-6) * model.final_norm
    close(model.logits(predict), normed @ model.lm_head.T)


def test_the_config_round_trips_and_the_default_layers_are_early_middle_last():
    assert HeadConfig.from_dict(CONFIG.to_dict() | {"unknown": 1}) == CONFIG
    assert CONFIG.feature_width == 96
    assert default_feature_layers(8) == (1, 4, 7)
    assert default_feature_layers(2) == (1,)
