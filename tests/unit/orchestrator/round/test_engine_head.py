"""The round loop with a feature-head draft, over the real demo target and an untrained head (no RPC): the
first round is the target's prefill, each later one drafts from the target's features, and greedy output
is the target's own, through draft and target restarts (the head gets every feature again from
position 0) and lost answers."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM

from specdec.config import resolve_model
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.round.engine import GenerationRequest, generate
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import make_rule
from specdec.services.head.runner import HeadDraftRunner
from specdec.services.head.session_lm import HeadLM
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.types import SamplingParams
from tests.helpers import random_head
from tests.unit.orchestrator.round.test_engine_faults import Faults, FaultyProposer, FaultyScorer

PROMPTS = [[5, 17, 99, 250, 3, 41], [300, 12]]
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    head = HeadLM(LoadSpec(random_head(tmp_path_factory.mktemp("head") / "head")))
    return HeadDraftRunner(head), TargetRunner(CausalLM(LoadSpec(resolve_model("demo:target"))))


@pytest.fixture(scope="module")
def reference():
    model = AutoModelForCausalLM.from_pretrained(resolve_model("demo:target"), dtype=torch.float32).eval()
    with torch.inference_mode():
        return {tuple(prompt): model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                              eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
                for prompt in PROMPTS}


def run(runners, prompt: list[int], faults: tuple[Faults, Faults], request_id: str) -> tuple[list[int], RequestStats]:
    draft, target = runners
    proposer, scorer = FaultyProposer(draft, faults[0]), FaultyScorer(target, faults[1])
    request = GenerationRequest(request_id, list(prompt), NEW_TOKENS, SamplingParams(0.0), 0, 512,
                                feature_layers=draft.lm.feature_layers)
    stats = RequestStats(request_id, "greedy", 3, len(prompt))

    async def collect() -> list[int]:
        out = []
        async for emitted in generate(request, proposer, scorer, make_rule("greedy"), FixedGamma(3), stats):
            out += emitted
        await proposer.end_session(request_id)
        await scorer.end_session(request_id)
        return out

    return asyncio.run(collect()), stats


@pytest.mark.parametrize("faults", [
    (Faults(), Faults()),
    (Faults(restart=[2], lost_answer=[3]), Faults()),
    (Faults(down=[1]), Faults(restart=[3], lost_answer=[5])),
], ids=["no-faults", "draft-restarts", "target-restarts"])
def test_greedy_output_with_a_head_is_the_targets_own(runners, reference, faults):
    for index, prompt in enumerate(PROMPTS):
        out, stats = run(runners, prompt, faults, f"r{index}")
        assert out == reference[tuple(prompt)]
        assert stats.num_drafts > 0 and stats.feature_bytes > 0
        if not faults[0].down and not faults[0].restart:
            assert stats.num_target_only_rounds == 0  # the first round is the prefill, not a missing draft
            assert stats.gamma_trace[0] == 0 and all(stats.gamma_trace[1:-1])  # then every round drafts


@pytest.mark.parametrize("rule", ["sd", "fsd", "opt", "uno", "typical"])
def test_every_rule_runs_with_a_head_at_t1(runners, rule):
    """The head reports the distribution each token was drafted from, as a draft model does: every rule
    reads it (and `sd`'s exactness is checked through the services)."""
    draft, target = runners
    request = GenerationRequest(f"rule-{rule}", PROMPTS[0], NEW_TOKENS, SamplingParams(1.0), 3, 512,
                                feature_layers=draft.lm.feature_layers)
    stats = RequestStats(request.request_id, rule, 3, len(PROMPTS[0]))
    proposer, scorer = FaultyProposer(draft, Faults()), FaultyScorer(target, Faults())

    async def collect() -> list[int]:
        out = []
        async for emitted in generate(request, proposer, scorer, make_rule(rule), FixedGamma(3), stats):
            out += emitted
        return out

    assert len(asyncio.run(collect())) == NEW_TOKENS and stats.num_drafts > 0
