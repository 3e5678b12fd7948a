"""The OpenAI API's requests and responses, as vLLM's OpenAI-compatible server speaks them, mapped onto
specdec's GenerateParams and RequestStats.

Requests: `/v1/completions` (a prompt or a list of them) and `/v1/chat/completions` (messages rendered with
the tokenizer's chat template, or `PLAIN_CHAT_TEMPLATE` when it has none), with the sampling fields,
`stop`, `n`, `stream` and `stream_options.include_usage`, `echo`; specdec's own request fields (rule,
rule_params, gamma, gamma_controller, controller_params, num_draft_sequences, overlap, speculation_lanes,
ignore_eos) and vLLM's `return_token_ids` as extra body fields, the way vLLM takes its extra sampling
parameters. Fields that change what a request means and that specdec cannot honour (penalties, logit
bias, logprobs, tools, ...) are refused naming the field; other unknown fields are ignored, as vLLM does.
Responses carry the request's speculative statistics in `spec_decode_stats`, and in vLLM's per-request
shape (`--per-request-spec-decode-metrics`) at `metrics.speculative_decoding`, so that tools that read
vLLM's (aiperf's speculative-decoding section) read specdec's acceptance unchanged.

Pure: knows pydantic models and the OpenAI shapes; knows nothing of HTTP servers, the orchestrator's loop
or Ray (`http_gateway.py` is the adapter).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from specdec.errors import InvalidField
from specdec.orchestrator.controllers import ControllerParams
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import RuleParams
from specdec.orchestrator.serving.core import GenerateParams
from specdec.renamed import REQUEST_FIELDS as RENAMED_REQUEST_FIELDS
from specdec.renamed import current_names
from specdec.types import SamplingParams

# The fallback chat template (the demo pair's tokenizer has none): each message on a line of its own as
# "<role>: <content>", then "assistant:" for the model to continue.
PLAIN_CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
                       "{% if add_generation_prompt %}assistant:{% endif %}")
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
# Fields specdec cannot honour, with the values that mean "off" (accepted).
UNSUPPORTED = {"best_of": (None, 1), "suffix": (None, ""), "presence_penalty": (None, 0),
               "frequency_penalty": (None, 0), "repetition_penalty": (None, 1), "logit_bias": (None, {}),
               "min_p": (None, 0), "top_logprobs": (None, 0), "prompt_logprobs": (None,), "tools": (None, []),
               "tool_choice": (None, "none", "auto"), "response_format": (None, {"type": "text"})}
# Core field names -> the request fields a client sent.
HTTP_FIELDS = {"sampling.temperature": "temperature", "sampling.top_k": "top_k", "sampling.top_p": "top_p",
               "max_new_tokens": "max_tokens"}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Request(BaseModel):
    """The fields both endpoints share."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # vLLM's extra field; -1 or 0: off
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # specdec's request fields, as vLLM takes its extra sampling parameters
    rule: str | None = None
    rule_params: dict[str, Any] | None = None
    gamma: int | None = None
    gamma_controller: str | None = None
    controller_params: dict[str, Any] | None = None
    num_draft_sequences: int | None = None
    num_drafts: int | None = None  # the deprecated spelling of num_draft_sequences (specdec/renamed.py)
    overlap: bool | None = None
    speculation_lanes: int | None = None
    ignore_eos: bool = False
    return_token_ids: bool = False  # vLLM's: each choice (and chunk) carries its output token ids


class CompletionRequest(_Request):
    prompt: Any = None  # a string or a list of strings (checked by `completion_plan`)
    echo: bool = False
    logprobs: int | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    add_generation_prompt: bool = True  # vLLM's extra field


@dataclass(frozen=True)
class Plan:
    """What one OpenAI request asks the orchestrator for: one GenerateParams per choice, in index order
    (choice i answers prompt i // n)."""

    prompts: list[str]
    choices: list[GenerateParams]
    n: int
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool
    echo: bool
    return_token_ids: bool
    ignored: list[str] = field(default_factory=list)  # unknown fields, ignored


@dataclass(frozen=True)
class Identity:
    """What every response and chunk of one request repeats."""

    id: str
    created: int
    model: str


def new_identity(prefix: str, model: str) -> Identity:
    """`prefix` is `cmpl` for completions and `chatcmpl` for chat, as OpenAI and vLLM name them."""
    return Identity(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model)


@dataclass
class ChoiceOutput:
    """What one choice produced."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stats: RequestStats | None = None


def check_model(requested: str | None, served: str) -> None:
    """A request for another model than the one served is NOT_FOUND (404); no model means the served one."""
    if requested is not None and requested != served:
        raise InvalidField("model", f"the model `{requested}` does not exist; this server serves `{served}`",
                           "NOT_FOUND")


def completion_plan(request: CompletionRequest) -> Plan:
    prompt = request.prompt
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InvalidField("prompt", "expected a string or a non-empty list of strings (token-id prompts are not "
                                     "supported: send text)")
    if request.logprobs is not None:
        raise InvalidField("logprobs", _NO_LOGPROBS)
    return _plan(request, prompts, request.max_tokens, "max_tokens", request.echo)


def chat_plan(request: ChatCompletionRequest, tokenizer) -> Plan:
    """Render the messages with the tokenizer's chat template (or PLAIN_CHAT_TEMPLATE) into one prompt."""
    if request.logprobs:
        raise InvalidField("logprobs", _NO_LOGPROBS)
    if not request.messages:
        raise InvalidField("messages", "must not be empty")
    conversation = [{"role": _role(i, m), "content": _text(i, m)} for i, m in enumerate(request.messages)]
    try:
        prompt = tokenizer.apply_chat_template(conversation, chat_template=tokenizer.chat_template or
                                               PLAIN_CHAT_TEMPLATE, tokenize=False,
                                               add_generation_prompt=request.add_generation_prompt)
    except Exception as exc:  # noqa: BLE001 - a template that cannot render these messages is the request's fault
        raise InvalidField("messages", f"the chat template cannot render them: {exc}") from exc
    name = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    max_tokens = request.max_tokens if request.max_completion_tokens is None else request.max_completion_tokens
    return _plan(request, [prompt], max_tokens, name, echo=False)


def http_field(core_field: str, chat: bool) -> str:
    """The request field a core error names: `sampling.temperature` -> `temperature`, `prompt` -> `messages`
    for chat, and so on."""
    if chat and core_field == "prompt":
        return "messages"
    return HTTP_FIELDS.get(core_field, core_field)


def completion_response(identity: Identity, outputs: list[ChoiceOutput], plan: Plan) -> dict:
    choices = [{"index": o.index, "text": (plan.prompts[o.index // plan.n] if plan.echo else "") + o.text,
                "logprobs": None, "finish_reason": o.finish_reason} | _token_ids(o, plan) for o in outputs]
    return _envelope(identity, "text_completion") | {
        "choices": choices, "usage": usage(outputs, plan.n), "spec_decode_stats": spec_decode_stats(outputs),
        "metrics": metrics(outputs)}


def chat_response(identity: Identity, outputs: list[ChoiceOutput], plan: Plan) -> dict:
    choices = [{"index": o.index, "message": {"role": "assistant", "content": o.text}, "logprobs": None,
                "finish_reason": o.finish_reason} | _token_ids(o, plan) for o in outputs]
    return _envelope(identity, "chat.completion") | {
        "choices": choices, "usage": usage(outputs, plan.n), "spec_decode_stats": spec_decode_stats(outputs),
        "metrics": metrics(outputs)}


def completion_chunk(identity: Identity, output: ChoiceOutput, plan: Plan) -> dict:
    """A streamed piece of one choice: `output` holds the new text and token ids; with a finish_reason it is
    the choice's last chunk and carries the choice's spec_decode_stats."""
    choice = {"index": output.index, "text": output.text, "logprobs": None,
              "finish_reason": output.finish_reason} | _token_ids(output, plan)
    return _chunk(identity, "text_completion", choice, output, plan)


def chat_chunk(identity: Identity, output: ChoiceOutput, plan: Plan, role: bool = False) -> dict:
    """As `completion_chunk`; `role` makes it the choice's first chunk, which names the assistant role."""
    delta = ({"role": "assistant", "content": ""} if role else {"content": output.text} if output.text else {})
    choice = {"index": output.index, "delta": delta, "logprobs": None,
              "finish_reason": output.finish_reason} | _token_ids(output, plan)
    return _chunk(identity, "chat.completion.chunk", choice, output, plan)


def usage_chunk(identity: Identity, kind: str, outputs: list[ChoiceOutput], plan: Plan) -> dict:
    """The last chunk of a stream with stream_options.include_usage: no choices, the request's usage."""
    return _envelope(identity, kind) | {
        "choices": [], "usage": usage(outputs, plan.n), "spec_decode_stats": spec_decode_stats(outputs),
        "metrics": metrics(outputs)}


def usage(outputs: list[ChoiceOutput], n: int) -> dict:
    """Prompt tokens once per prompt (its n choices share it), completion tokens of every choice."""
    prompt = sum(o.stats.prompt_tokens for o in outputs if o.stats and o.index % n == 0)
    completion = sum(o.stats.output_tokens for o in outputs if o.stats)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def spec_decode_stats(outputs: list[ChoiceOutput]) -> dict:
    """The speculative statistics of the choices' requests together, with vLLM's names and definitions."""
    stats = [o.stats for o in outputs if o.stats]
    total = dataclasses.replace(stats[0]) if stats else RequestStats("", "", 0, 0, gamma_controller="")
    for other in stats[1:]:
        total.merge(other)
    names = ("rule", "gamma", "gamma_controller", "num_drafts", "num_draft_tokens", "num_accepted_tokens",
             "num_accepted_tokens_per_pos", "acceptance_rate", "mean_acceptance_length")
    return {name: getattr(total, name) for name in names}


def metrics(outputs: list[ChoiceOutput]) -> dict:
    """vLLM's per-request `metrics` of a response (or its usage chunk): its `speculative_decoding` for one
    choice, None for several (as vLLM's)."""
    return {"speculative_decoding": vllm_speculative_decoding(outputs[0].stats)
            if len(outputs) == 1 and outputs[0].stats else None}


def vllm_speculative_decoding(stats: RequestStats) -> dict:
    """One request's statistics in vLLM's per-request shape. `acceptance_histogram[j]`: the rounds that
    accepted exactly j draft tokens (the bonus or recovered token not counted), j = 0 .. num_spec_tokens,
    the longest window drafted; rounds that drafted nothing are not steps."""
    per_position = stats.num_accepted_tokens_per_pos
    reached = [stats.num_drafts, *per_position, 0]  # rounds that accepted at least j tokens, j = 0, 1, ...
    return {"acceptance_histogram": [reached[j] - reached[j + 1] for j in range(len(per_position) + 1)],
            "num_spec_steps": stats.num_drafts, "num_spec_tokens": len(per_position),
            "num_draft_tokens": stats.num_draft_tokens, "num_accepted_draft_tokens": stats.num_accepted_tokens,
            "draft_acceptance_rate": stats.acceptance_rate, "mean_acceptance_length": stats.mean_acceptance_length}


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


_NO_LOGPROBS = ("not supported: the services send the orchestrator what the acceptance rule needs, not the "
                "target's log-probabilities")


def _plan(request: _Request, prompts: list[str], max_tokens: int | None, max_tokens_field: str,
          echo: bool) -> Plan:
    extra = request.model_extra or {}
    for name, value in extra.items():
        if name in UNSUPPORTED and value not in UNSUPPORTED[name]:
            raise InvalidField(name, "not supported by specdec")
    if request.n < 1:
        raise InvalidField("n", f"must be at least 1, got {request.n}")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidField(max_tokens_field, f"must be at least 1, got {max_tokens}")
    if request.stream_options is not None and not request.stream:
        raise InvalidField("stream_options", "only with stream: true")
    stops = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    if any(not stop for stop in stops):
        raise InvalidField("stop", "stop strings must not be empty")
    sampling = SamplingParams(temperature=1.0 if request.temperature is None else request.temperature,
                              top_k=max(0, request.top_k or 0), top_p=1.0 if request.top_p is None else request.top_p)
    rule_params = _dataclass("rule_params", RuleParams, request.rule_params)
    controller_params = _dataclass("controller_params", ControllerParams, request.controller_params)
    num_draft_sequences = _num_draft_sequences(request)
    choices = [GenerateParams(prompt=prompt, max_new_tokens=max_tokens, sampling=sampling, rule=request.rule,
                              gamma=request.gamma, seed=None if request.seed is None else request.seed + j,
                              ignore_eos=request.ignore_eos, rule_params=rule_params,
                              gamma_controller=request.gamma_controller, controller_params=controller_params,
                              num_draft_sequences=num_draft_sequences, overlap=request.overlap,
                              speculation_lanes=request.speculation_lanes)
               for prompt in prompts for j in range(request.n)]
    return Plan(prompts, choices, request.n, stops, request.stream,
                bool(request.stream_options and request.stream_options.include_usage), echo,
                request.return_token_ids, sorted(set(extra) - set(UNSUPPORTED)))


def _dataclass(name: str, cls: type, values: dict[str, Any] | None):
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values or {}) - known)
    if unknown:
        raise InvalidField(f"{name}.{unknown[0]}", f"unknown field; known: {', '.join(sorted(known))}")
    return cls(**(values or {}))


def _role(index: int, message: ChatMessage) -> str:
    if message.role not in CHAT_ROLES:
        raise InvalidField(f"messages[{index}].role", f"must be one of {', '.join(CHAT_ROLES)}, got {message.role!r}")
    return message.role


def _text(index: int, message: ChatMessage) -> str:
    """A message's content as text: a string, or the text of its parts."""
    if not isinstance(message.content, list):
        return message.content or ""
    if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in message.content):
        raise InvalidField(f"messages[{index}].content", "only text parts ({\"type\": \"text\", \"text\": ...}) "
                                                         "are supported")
    return "".join(part["text"] for part in message.content)


def _num_draft_sequences(request: _Request) -> int | None:
    """M from `num_draft_sequences`, or from its deprecated spelling `num_drafts` (with a FutureWarning)."""
    given = {name: getattr(request, name) for name in ("num_drafts", "num_draft_sequences")
             if getattr(request, name) is not None}
    return current_names(given, RENAMED_REQUEST_FIELDS).get("num_draft_sequences")


def _token_ids(output: ChoiceOutput, plan: Plan) -> dict:
    return {"token_ids": output.token_ids} if plan.return_token_ids else {}


def _envelope(identity: Identity, kind: str) -> dict:
    return {"id": identity.id, "object": kind, "created": identity.created, "model": identity.model}


def _chunk(identity: Identity, kind: str, choice: dict, output: ChoiceOutput, plan: Plan) -> dict:
    if output.finish_reason is not None:
        choice["spec_decode_stats"] = spec_decode_stats([output])
    return _envelope(identity, kind) | {"choices": [choice]} | ({"usage": None} if plan.include_usage else {})
