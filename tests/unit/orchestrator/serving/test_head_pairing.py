"""A feature-head draft in the orchestrator: refused for a target it was not trained for (naming both), its
requests carry its feature layers, and what it cannot do yet (overlap, several drafts) is refused naming
the field."""

from __future__ import annotations

from dataclasses import replace

import pytest
from transformers import AutoTokenizer

from specdec.config import DefaultsConfig, LimitsConfig, resolve_model
from specdec.errors import InvalidField
from specdec.orchestrator.serving.core import GenerateParams, Orchestrator, Route
from specdec.types import ModelInfo

TARGET = ModelInfo("demo:target", vocab_size=2048, max_context=512, tokenizer_fingerprint="f", device="cpu",
                   dtype="float32", eos_token_id=0, model_fingerprint="target-fp")
HEAD = replace(TARGET, model="heads/demo", draft_kind="head", feature_layers=(1, 4, 7), target_fingerprint="target-fp",
               model_fingerprint="")


class Idle:
    available = True


def orchestrator(draft: ModelInfo, target: ModelInfo = TARGET, defaults: DefaultsConfig | None = None
                 ) -> Orchestrator:
    return Orchestrator([Route(Idle(), Idle())], AutoTokenizer.from_pretrained(resolve_model("demo:target")), draft,
                        target, defaults or DefaultsConfig(), LimitsConfig())


def test_a_head_for_another_target_is_refused_naming_both():
    with pytest.raises(ValueError) as refused:
        orchestrator(HEAD, replace(TARGET, model="other", model_fingerprint="other-fp"))
    message = str(refused.value)
    assert message.startswith("draft.model") and "'heads/demo'" in message and "'other'" in message
    assert "target-fp" in message and "other-fp" in message


def test_a_heads_requests_carry_its_layers_and_a_models_do_not():
    assert orchestrator(HEAD).prepare(GenerateParams("def f():")).request.feature_layers == (1, 4, 7)
    assert orchestrator(TARGET).prepare(GenerateParams("def f():")).request.feature_layers == ()


def test_several_draft_sequences_are_refused_with_a_head_naming_the_field():
    with pytest.raises(InvalidField) as refused:
        orchestrator(HEAD).prepare(GenerateParams("def f():", num_draft_sequences=2, rule="sd"))
    assert refused.value.field == "num_draft_sequences"


def test_a_head_overlaps_by_request_and_by_default():
    request = orchestrator(HEAD).prepare(GenerateParams("def f():", overlap=True, speculation_lanes=3)).request
    assert (request.overlap, request.speculation_lanes, request.feature_layers) == (True, 3, (1, 4, 7))
    assert orchestrator(HEAD, defaults=DefaultsConfig(overlap=True)).prepare(GenerateParams("x")).request.overlap
