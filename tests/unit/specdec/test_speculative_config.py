"""vLLM's --speculative-config keys onto the serve config: the ones that map, and the others refused by name."""

from __future__ import annotations

import pytest

from specdec.config import ServeConfig
from specdec.speculative_config import apply_speculative_config, parse_speculative_config


def test_vllm_keys_map_onto_the_serve_config():
    config = apply_speculative_config(ServeConfig(), parse_speculative_config(
        '{"method": "draft_model", "model": "org/small", "num_speculative_tokens": 6, "disable_by_batch_size": 16,'
        ' "acceptance_method": "typical_acceptance_sampler", "draft_tensor_parallel_size": 1,'
        ' "disable_logprobs": true}'))
    assert config.draft.model == "org/small" and config.defaults.gamma == 6
    assert config.defaults.disable_by_batch_size == 16 and config.defaults.rule == "typical"
    assert config.target == ServeConfig().target and config.limits == ServeConfig().limits


def test_a_model_alone_means_a_draft_model():
    draft = apply_speculative_config(ServeConfig(), {"model": "demo:draft"}).draft
    assert (draft.model, draft.kind) == ("demo:draft", "model")


@pytest.mark.parametrize("method", ["eagle", "eagle3"])
def test_vllms_eagle_methods_select_a_feature_head(method):
    draft = apply_speculative_config(ServeConfig(), {"method": method, "model": "demo:head"}).draft
    assert (draft.model, draft.kind) == ("demo:head", "head")


@pytest.mark.parametrize("values, message", [
    ({"method": "medusa", "model": "x"}, "speculative_config.method: one of draft_model, eagle, eagle3"),
    ({"method": "ngram", "prompt_lookup_max": 4}, "speculative_config.prompt_lookup_max: not supported"),
    ({"quantization": "fp8"}, "speculative_config.quantization: not supported"),
    ({"num_speculative_tokens": "4"}, "speculative_config.num_speculative_tokens: expected int"),
    ({"num_speculative_tokens": 99}, "speculative_config: defaults.gamma"),
    ({"draft_tensor_parallel_size": 2}, "speculative_config.draft_tensor_parallel_size: only 1"),
    ({"acceptance_method": "magic"}, "speculative_config.acceptance_method"),
    ({"num_lookahead": 1}, "speculative_config.num_lookahead: unknown key; specdec maps method, model"),
])
def test_keys_it_cannot_honour_are_refused_by_name(values, message):
    with pytest.raises(ValueError) as info:
        apply_speculative_config(ServeConfig(), values)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("text", ["{", "[1, 2]"])
def test_not_a_json_object_is_refused(text):
    with pytest.raises(ValueError, match="speculative_config"):
        parse_speculative_config(text)
