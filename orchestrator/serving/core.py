"""The orchestrator's request handling: validate, run the round loop, detokenize, free sessions.

Knows the engine, the rules, the controllers and a tokenizer; knows nothing of gRPC or Ray (the
servicer and the actor are thin shells around this). Every request gets its own session id in both
services, its own seeded generator, and its own rule and gamma controller.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from specdec.config import DefaultsConfig, LimitsConfig
from specdec.errors import InvalidField
from specdec.orchestrator.controllers import (
    CONTROLLER_NAMES,
    ControllerParams,
    CostEstimates,
    GammaController,
    make_controller,
)
from specdec.orchestrator.controllers.governor import Governed, SpeculationGovernor
from specdec.orchestrator.round.engine import GenerationRequest, generate
from specdec.orchestrator.serving.admission import Admission
from specdec.orchestrator.round.sessions import Proposer, Scorer
from specdec.orchestrator.round.speculation import OverlapChoice
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import MULTI_WINDOW_RULES, RULE_NAMES, AcceptanceRule, RuleParams, make_rule
from specdec.orchestrator.serving.detokenize import IncrementalDetokenizer
from specdec.orchestrator.serving.metrics import OrchestratorMetrics
from specdec.types import ModelInfo, SamplingParams
from specdec.wire.validation import check_finite_fields, check_range, check_sampling

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GenerateParams:
    """A client's request as received; None means "use the server default"."""

    prompt: str
    max_new_tokens: int | None = None
    sampling: SamplingParams = SamplingParams()
    rule: str | None = None
    gamma: int | None = None
    seed: int | None = None
    ignore_eos: bool = False
    rule_params: RuleParams = field(default_factory=RuleParams)
    gamma_controller: str | None = None
    controller_params: ControllerParams = field(default_factory=ControllerParams)
    num_draft_sequences: int | None = None
    overlap: bool | None = None
    speculation_lanes: int | None = None


@dataclass(frozen=True)
class PreparedRequest:
    request: GenerationRequest
    rule: AcceptanceRule
    controller: GammaController
    controller_name: str
    gamma: int
    overlap_choice: OverlapChoice | None = None  # overlap "auto": the deployment's measure of whether it pays


@dataclass
class Route:
    """One draft/target pair a request can run on; several routes may share a draft."""

    proposer: Proposer
    scorer: Scorer
    name: str = "local"
    active: int = 0  # requests in flight on this route


@dataclass(frozen=True)
class TextDelta:
    text: str
    token_ids: list[int]
    # The request's statistics so far: the live object the stream ends with, for an adapter that ends a
    # request early (a stop string) and still reports what it did.
    stats: RequestStats | None = field(default=None, compare=False, repr=False)


def check_pair(draft_info: ModelInfo, target_info: ModelInfo) -> None:
    """Refuse a draft/target pair whose token ids do not mean the same thing."""
    if draft_info.tokenizer_fingerprint != target_info.tokenizer_fingerprint:
        raise ValueError(
            f"draft and target tokenizers do not match: draft {draft_info.model!r} (vocab {draft_info.vocab_size}, "
            f"fingerprint {draft_info.tokenizer_fingerprint}) vs target {target_info.model!r} (vocab "
            f"{target_info.vocab_size}, fingerprint {target_info.tokenizer_fingerprint})")
    if draft_info.draft_kind == "head" and draft_info.target_fingerprint != target_info.model_fingerprint:
        raise ValueError(
            f"draft.model: the feature head {draft_info.model!r} belongs to a target with fingerprint "
            f"{draft_info.target_fingerprint}, not to the target served, {target_info.model!r} (fingerprint "
            f"{target_info.model_fingerprint})")


def check_defaults(defaults: DefaultsConfig) -> None:
    """The serve config's default rule and gamma controller exist: names only the orchestrator knows, so
    `specdec/config.py` cannot check them. Raises ValueError naming the key."""
    if defaults.rule not in RULE_NAMES:
        raise ValueError(f"defaults.rule: must be one of {RULE_NAMES}, got {defaults.rule!r}")
    if defaults.gamma_controller not in CONTROLLER_NAMES:
        raise ValueError(f"defaults.gamma_controller: must be one of {CONTROLLER_NAMES}, "
                         f"got {defaults.gamma_controller!r}")


class Orchestrator:
    def __init__(self, routes: list[Route], tokenizer: PreTrainedTokenizerBase, draft_info: ModelInfo,
                 target_info: ModelInfo, defaults: DefaultsConfig, limits: LimitsConfig,
                 metrics: OrchestratorMetrics | None = None):
        check_pair(draft_info, target_info)
        check_defaults(defaults)
        if not routes:
            raise ValueError("routes: at least one draft/target pair is needed")
        self.routes, self.tokenizer = routes, tokenizer
        self.draft_info, self.target_info = draft_info, target_info
        self.defaults, self.limits = defaults, limits
        self.max_context = min(draft_info.max_context, target_info.max_context)
        self.metrics = metrics or OrchestratorMetrics()
        self.governor = SpeculationGovernor()
        self.cost_estimates = CostEstimates(limits.max_gamma)  # what rounds cost here, from every `cost` request
        self.admission = Admission(limits.max_active_requests, limits.max_waiting_requests, self.metrics.waiting)
        # overlap "auto": whether drafting ahead pays, measured over the deployment's (greedy) rounds
        self.overlap_choice = OverlapChoice()

    @property
    def active_requests(self) -> int:
        return sum(route.active for route in self.routes)

    @property
    def speculation_disabled_by_load(self) -> bool:
        """vLLM's disable_by_batch_size: at this many requests in flight, new ones without a gamma go target-only."""
        return 0 < self.defaults.disable_by_batch_size <= self.active_requests

    @property
    def targets_recovering(self) -> bool:
        """True while every route's target is being brought back: no new request could start decoding now."""
        return not any(route.scorer.available for route in self.routes)

    def default_controller(self, params: GenerateParams) -> str:
        """The gamma controller of a request that names none: the configured default, unless the request
        names its gamma (then that gamma every round) or is sampled with a seed. A sampled request's output
        follows the windows its rounds drafted, and an adaptive controller's windows follow the load; a
        seed asks for the same output every time, so its windows are the default gamma's, fixed."""
        if params.gamma is not None or (params.seed is not None and not params.sampling.greedy):
            return "fixed"
        return self.defaults.gamma_controller

    def prepare(self, params: GenerateParams) -> PreparedRequest:
        """Validate and fill defaults. Raises InvalidField naming the first bad field."""
        if not params.prompt:
            raise InvalidField("prompt", "must not be empty")
        if len(params.prompt) > self.limits.max_prompt_chars:
            raise InvalidField("prompt", f"longer than {self.limits.max_prompt_chars} characters")
        max_new_tokens = self.defaults.max_new_tokens if not params.max_new_tokens else params.max_new_tokens
        check_range("max_new_tokens", max_new_tokens, 1, self.limits.max_new_tokens)
        check_sampling(params.sampling, self.target_info.vocab_size)
        check_finite_fields("rule_params", params.rule_params)  # also the fields this rule ignores
        check_finite_fields("controller_params", params.controller_params)
        rule_name = params.rule or self.defaults.rule
        if rule_name not in RULE_NAMES:
            raise InvalidField("rule", f"unknown rule {rule_name!r}; known: {', '.join(RULE_NAMES)}")
        if params.sampling.greedy and rule_name == "sd":
            rule_name = "greedy"  # sd at temperature 0 is greedy: one-hot distributions, token ids suffice
        if rule_name == "greedy" and not params.sampling.greedy:
            raise InvalidField("rule", "greedy needs sampling.temperature = 0")
        gamma = self.defaults.gamma if params.gamma is None else params.gamma
        check_range("gamma", gamma, 0, self.limits.max_gamma)
        controller_name = params.gamma_controller or self.default_controller(params)
        if params.gamma is None and params.gamma_controller is None and self.speculation_disabled_by_load:
            gamma, controller_name = 0, "fixed"
        if controller_name not in CONTROLLER_NAMES:
            raise InvalidField("gamma_controller", f"unknown controller {controller_name!r}; known: "
                                                   f"{', '.join(CONTROLLER_NAMES)}")
        if params.controller_params.gamma_max is not None:
            check_range("controller_params.gamma_max", params.controller_params.gamma_max, 1, self.limits.max_gamma)
        num_draft_sequences = params.num_draft_sequences or 1
        check_range("num_draft_sequences", num_draft_sequences, 1, self.limits.max_draft_sequences)
        rule = _build("rule_params", make_rule, rule_name, params.rule_params)
        if num_draft_sequences > 1 and not rule.multi_window:
            raise InvalidField("num_draft_sequences", f"more than one draft per round works with "
                                             f"{' and '.join(MULTI_WINDOW_RULES)}, not {rule_name}")
        controller = _build("controller_params", make_controller, controller_name, gamma, params.controller_params,
                            self.cost_estimates)
        if controller_name == "cost" and self.defaults.load_governor:
            controller = Governed(controller, self.governor)
        seed = secrets.randbelow(MAX_SEED) if params.seed is None else params.seed
        check_range("seed", seed, 0, MAX_SEED)
        prompt_ids = self.tokenizer(params.prompt, add_special_tokens=False)["input_ids"]
        if not prompt_ids:
            raise InvalidField("prompt", "encodes to no tokens")
        if len(prompt_ids) >= self.max_context:
            raise InvalidField("prompt", f"{len(prompt_ids)} tokens; the model's context is {self.max_context}")
        lanes = self.defaults.speculation_lanes if params.speculation_lanes is None else params.speculation_lanes
        check_range("speculation_lanes", lanes, 0, self.limits.max_speculation_lanes)
        overlap = self.defaults.overlap if params.overlap is None else params.overlap  # True, False or "auto"
        # "auto" drafts ahead for greedy requests only: which windows are drafted ahead depends on timing, and a
        # sampled request's output depends on its windows, so that a seed would no longer give the same output
        overlap = overlap if overlap != "auto" or params.sampling.greedy else False
        head = self.draft_info.draft_kind == "head"
        if head and num_draft_sequences > 1:
            raise InvalidField("num_draft_sequences", "a feature-head draft proposes one sequence (the target "
                                                      "returns features for one window)")
        eos = self.target_info.eos_token_id
        stops = frozenset() if params.ignore_eos or eos < 0 else frozenset({eos})
        request = GenerationRequest(request_id=uuid.uuid4().hex, prompt_ids=prompt_ids,
                                    max_new_tokens=max_new_tokens, sampling=params.sampling, seed=seed,
                                    max_context=self.max_context, stop_token_ids=stops,
                                    num_draft_sequences=num_draft_sequences,
                                    overlap=bool(overlap), speculation_lanes=lanes if overlap else 0,
                                    feature_layers=self.draft_info.feature_layers if head else ())
        choice = self.overlap_choice if overlap == "auto" else None
        return PreparedRequest(request, rule, controller, controller_name, gamma, choice)

    async def stream(self, params: GenerateParams) -> AsyncIterator[TextDelta | RequestStats]:
        """Yield text deltas as rounds commit, then the request's stats. Raises InvalidField before any output:
        a bad field at once, a full queue (`admission`) once the request would have to wait past its limit."""
        arrived = time.perf_counter()
        prepared = self.prepare(params)
        request = prepared.request
        stats = RequestStats(request_id=request.request_id, rule=prepared.rule.name, gamma=prepared.gamma,
                             prompt_tokens=len(request.prompt_ids), gamma_controller=prepared.controller_name,
                             num_draft_sequences=request.num_draft_sequences, overlap=request.overlap,
                             speculation_lanes=request.speculation_lanes)
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        await self.admission.enter()
        route = min(self.routes, key=lambda r: r.active)  # the least-loaded draft/target pair
        route.active += 1
        self.metrics.running(self.active_requests)
        first_token: float | None = None
        last_tokens = arrived
        try:
            async for emitted in generate(request, route.proposer, route.scorer, prepared.rule, prepared.controller,
                                          stats, prepared.overlap_choice):
                now = time.perf_counter()
                if first_token is None:
                    first_token = now - arrived
                    self.metrics.first_token(first_token)
                else:
                    self.metrics.next_tokens(now - last_tokens)
                last_tokens = now
                self.metrics.round(stats)
                if isinstance(prepared.controller, Governed):  # the governor measures the requests it governs
                    self.governor.record(len(emitted), self.active_requests)
                yield TextDelta(text=detokenizer.push(emitted), token_ids=emitted, stats=stats)
            tail = detokenizer.push([], final=True)
            if tail:
                yield TextDelta(text=tail, token_ids=[], stats=stats)
            yield stats
        finally:
            route.active -= 1
            self.admission.leave()  # the place goes to the longest waiting request
            self.metrics.running(self.active_requests)
            self.metrics.finished(stats, first_token, time.perf_counter() - arrived)
            # Free both sessions whether the request finished, failed or was cancelled.
            await asyncio.shield(asyncio.gather(route.proposer.end_session(request.request_id),
                                                route.scorer.end_session(request.request_id),
                                                return_exceptions=True))


def _build(prefix: str, factory, *args):
    """Call a rule/controller factory; its InvalidField("field") becomes InvalidField("prefix.field")."""
    try:
        return factory(*args)
    except InvalidField as exc:
        raise exc.within(prefix) from exc
