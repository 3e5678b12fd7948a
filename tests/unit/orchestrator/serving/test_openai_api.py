"""The OpenAI request/response mapping without a server: requests -> GenerateParams, refusals naming the
field, chat rendering, usage and speculative statistics, chunk shapes, and the gateway's error mapping."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from specdec.config import resolve_model
from specdec.errors import InvalidField, ServiceDown, ServiceFailed
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.serving import openai_api as api
from specdec.orchestrator.serving.http_gateway import Refused, refusal
from specdec.orchestrator.serving.openai_api import ChatCompletionRequest, ChoiceOutput, CompletionRequest


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("demo:target"))


def test_a_completion_maps_onto_one_request_per_prompt_and_choice():
    plan = api.completion_plan(CompletionRequest(
        prompt=["a", "b"], n=2, max_tokens=7, temperature=0.5, top_p=0.9, top_k=-1, seed=10, stop="\n",
        rule="fsd", rule_params={"threshold": 0.3}, gamma=3, gamma_controller="heuristic",
        controller_params={"gamma_max": 6}, num_draft_sequences=1, overlap=True, ignore_eos=True))
    assert [(c.prompt, c.seed) for c in plan.choices] == [("a", 10), ("a", 11), ("b", 10), ("b", 11)]
    first = plan.choices[0]
    assert (first.max_new_tokens, first.sampling.temperature, first.sampling.top_p, first.sampling.top_k) == \
        (7, 0.5, 0.9, 0)
    assert (first.rule, first.rule_params.threshold, first.gamma) == ("fsd", 0.3, 3)
    assert first.gamma_controller == "heuristic"
    assert (first.controller_params.gamma_max, first.overlap, first.ignore_eos) == (6, True, True)
    assert plan.stops == ("\n",) and plan.n == 2 and not plan.stream


def test_unset_fields_mean_openai_defaults_or_the_servers():
    first = api.completion_plan(CompletionRequest(prompt="x")).choices[0]
    assert first.sampling.temperature == 1.0 and first.sampling.top_p == 1.0 and first.sampling.top_k == 0
    assert first.max_new_tokens is None and first.gamma is None and first.rule is None and first.seed is None


@pytest.mark.parametrize("fields, field", [
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": "x", "logprobs": 1}, "logprobs"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": "x", "stop": ["ok", ""]}, "stop"),
    ({"prompt": "x", "presence_penalty": 0.5}, "presence_penalty"),
    ({"prompt": "x", "logit_bias": {"5": 1}}, "logit_bias"),
    ({"prompt": "x", "rule_params": {"treshold": 1}}, "rule_params.treshold"),
    ({"prompt": "x", "controller_params": {"gamma": 1}}, "controller_params.gamma"),
])
def test_bad_completion_fields_are_named(fields, field):
    with pytest.raises(InvalidField) as info:
        api.completion_plan(CompletionRequest(**fields))
    assert info.value.field == field


def test_off_values_of_unsupported_fields_and_unknown_fields_pass():
    plan = api.completion_plan(CompletionRequest(prompt="x", presence_penalty=0, frequency_penalty=0.0, best_of=1,
                                                 some_tool_option=True))
    assert plan.ignored == ["some_tool_option"]


def test_chat_renders_with_the_plain_template_when_the_tokenizer_has_none(tokenizer):
    assert tokenizer.chat_template is None  # the demo pair's case
    plan = api.chat_plan(ChatCompletionRequest(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "def "}, {"type": "text", "text": "add"}]}],
        max_completion_tokens=5, max_tokens=9), tokenizer)
    assert plan.prompts == ["system: Be brief.\nuser: def add\nassistant:"]
    assert plan.choices[0].max_new_tokens == 5  # max_completion_tokens wins over the older max_tokens


@pytest.mark.parametrize("fields, field", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}, "max_completion_tokens"),
])
def test_bad_chat_fields_are_named(tokenizer, fields, field):
    with pytest.raises(InvalidField) as info:
        api.chat_plan(ChatCompletionRequest(**fields), tokenizer)
    assert info.value.field == field


def test_an_unknown_model_is_not_found_and_no_model_means_the_served_one():
    api.check_model(None, "demo:target")
    api.check_model("demo:target", "demo:target")
    with pytest.raises(InvalidField) as info:
        api.check_model("gpt-4", "demo:target")
    assert info.value.field == "model" and info.value.code == "NOT_FOUND"


def stats(prompt_tokens: int, output_tokens: int, drafts: int, drafted: int, per_pos: list[int]) -> RequestStats:
    s = RequestStats("r", "sd", 4, prompt_tokens, output_tokens=output_tokens, num_drafts=drafts,
                     num_draft_tokens=drafted, num_accepted_tokens=sum(per_pos), finish_reason="length")
    s.num_accepted_tokens_per_pos = per_pos
    return s


def test_usage_counts_each_prompt_once_and_every_choice():
    plan = api.completion_plan(CompletionRequest(prompt=["a", "b"], n=2))
    outputs = [ChoiceOutput(i, stats=stats(prompt_tokens=10 + i // 2, output_tokens=5, drafts=1, drafted=4,
                                           per_pos=[1])) for i in range(4)]
    assert api.usage(outputs, plan.n) == {"prompt_tokens": 21, "completion_tokens": 20, "total_tokens": 41}


def test_spec_decode_stats_add_up_the_choices_with_vllms_definitions():
    combined = api.spec_decode_stats([ChoiceOutput(0, stats=stats(3, 9, 2, 8, [2, 1, 1])),
                                      ChoiceOutput(1, stats=stats(3, 9, 3, 9, [3, 2]))])
    assert combined["num_drafts"] == 5 and combined["num_draft_tokens"] == 17
    assert combined["num_accepted_tokens_per_pos"] == [5, 3, 1] and combined["num_accepted_tokens"] == 9
    assert combined["acceptance_rate"] == pytest.approx(9 / 17)
    assert combined["mean_acceptance_length"] == pytest.approx(1 + 9 / 5)


def test_vllms_per_request_speculative_metrics_in_vllms_shape():
    """What vLLM's --per-request-spec-decode-metrics puts at metrics.speculative_decoding, which aiperf reads:
    the histogram has num_spec_tokens + 1 buckets, sums to the steps, and weighs to the accepted tokens."""
    request = stats(3, 12, 4, 14, [3, 2, 1, 0])  # 4 rounds: accepted 0, 1, 2 and 3 of up to 4 drafts
    metrics = api.vllm_speculative_decoding(request)
    assert metrics == {"acceptance_histogram": [1, 1, 1, 1, 0], "num_spec_steps": 4, "num_spec_tokens": 4,
                       "num_draft_tokens": 14, "num_accepted_draft_tokens": 6,
                       "draft_acceptance_rate": pytest.approx(6 / 14), "mean_acceptance_length": pytest.approx(2.5)}
    assert sum(j * count for j, count in enumerate(metrics["acceptance_histogram"])) == 6
    target_only = api.vllm_speculative_decoding(stats(3, 12, 0, 0, []))
    assert target_only["acceptance_histogram"] == [0] and target_only["num_spec_steps"] == 0
    identity, plan = api.Identity("cmpl-1", 123, "m"), api.completion_plan(CompletionRequest(prompt="x"))
    one = api.completion_response(identity, [ChoiceOutput(0, stats=request)], plan)
    assert one["metrics"]["speculative_decoding"]["num_spec_steps"] == 4
    several = api.completion_response(identity, [ChoiceOutput(0, stats=request), ChoiceOutput(1, stats=request)],
                                      api.completion_plan(CompletionRequest(prompt="x", n=2)))
    assert several["metrics"] == {"speculative_decoding": None}  # as vLLM's, for n > 1
    streamed = api.completion_plan(CompletionRequest(prompt="x", stream=True, stream_options={"include_usage": True}))
    usage = api.usage_chunk(identity, "text_completion", [ChoiceOutput(0, stats=request)], streamed)
    assert usage["metrics"]["speculative_decoding"]["acceptance_histogram"] == [1, 1, 1, 1, 0]


def test_response_and_chunk_shapes():
    identity = api.Identity("cmpl-1", 123, "demo:target")
    plan = api.completion_plan(CompletionRequest(prompt="def f", echo=True, return_token_ids=True))
    done = ChoiceOutput(0, " x", [5, 6], "stop", stats(2, 2, 1, 4, [1]))
    response = api.completion_response(identity, [done], plan)
    assert response["object"] == "text_completion" and response["choices"] == [
        {"index": 0, "text": "def f x", "logprobs": None, "finish_reason": "stop", "token_ids": [5, 6]}]
    assert response["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert response["spec_decode_stats"]["num_drafts"] == 1
    chat_plan = api.completion_plan(CompletionRequest(prompt="x", stream=True, stream_options={"include_usage": True}))
    chunk = api.chat_chunk(identity, ChoiceOutput(0, "hi"), chat_plan)
    assert chunk["object"] == "chat.completion.chunk" and chunk["choices"][0]["delta"] == {"content": "hi"}
    assert chunk["usage"] is None and "spec_decode_stats" not in chunk["choices"][0]
    assert api.chat_chunk(identity, ChoiceOutput(0), chat_plan, role=True)["choices"][0]["delta"] == \
        {"role": "assistant", "content": ""}
    last = api.chat_chunk(identity, done, chat_plan)["choices"][0]
    assert last["finish_reason"] == "stop" and last["spec_decode_stats"]["num_draft_tokens"] == 4
    usage = api.usage_chunk(identity, "chat.completion.chunk", [done], chat_plan)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 4


@pytest.mark.parametrize("error, chat, status, param", [
    (InvalidField("sampling.temperature", "must be 0 (greedy) or in (0, 100], got -1"), False, 400, "temperature"),
    (InvalidField("max_new_tokens", "must be in [1, 4096], got 9999"), False, 400, "max_tokens"),
    (InvalidField("prompt", "600 tokens; the model's context is 512"), True, 400, "messages"),
    (InvalidField("model", "the model `x` does not exist", "NOT_FOUND"), False, 404, "model"),
    (InvalidField("max_active_requests", "at its limit", "RESOURCE_EXHAUSTED"), False, 429, "max_active_requests"),
    (ServiceDown("target: did not come back"), False, 503, None),
    (Refused(401, "authorization: a bearer token (API key) is required"), False, 401, None),
])
def test_core_errors_map_to_openai_errors(error, chat, status, param):
    answer = refusal(error, chat)
    body = answer.body()["error"]
    assert answer.status == status and body["param"] == param and set(body) == {"message", "type", "param", "code"}
    if param:
        assert body["message"].startswith(f"{param}: ")


def test_a_failed_service_call_is_503():
    answer = refusal(ServiceFailed("127.0.0.1:1", "INTERNAL", "gone"))
    assert answer.status == 503 and answer.body()["error"]["message"] == "a model service failed: INTERNAL: gone"
