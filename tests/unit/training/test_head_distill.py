"""`specdec distill --kind head` on a tiny corpus: refusals naming the field, a run that checkpoints and
resumes, and a head that loads in the draft runtime and serves, its greedy output the target's own."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.orchestrator.adapters.local import LocalProposer, LocalScorer
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.round.engine import GenerationRequest, generate
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import make_rule
from specdec.services.head.checkpoint import HEAD_CONFIG, HEAD_WEIGHTS
from specdec.services.head.runner import HeadDraftRunner
from specdec.services.head.session_lm import HeadLM
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.training.head_distill import HeadSpec, distill_head
from specdec.training.head_evaluation import _decide
from specdec.types import SamplingParams


def tiny(corpus, out, **fields) -> HeadSpec:
    settings = {"steps": 2, "seq_len": 24, "batch_size": 2, "checkpoint_every": 2, "eval_prompts": 1,
                "ttt_steps": 3} | fields
    return HeadSpec(target="demo:target", out=str(out), corpus=str(corpus), **settings)


@pytest.mark.parametrize("fields, field_name", [
    ({"steps": 0, "minutes": 0}, "steps"), ({"ttt_steps": 0}, "ttt_steps"), ({"ttt_steps": 24}, "ttt_steps"),
    ({"step_decay": 0}, "step_decay"), ({"feature_weight": -1}, "feature_weight"), ({"lr": 2}, "lr"),
    ({"eval_prompts": 0}, "eval_prompts"), ({"feature_layers": (1, 8)}, "feature_layers"),
    ({"feature_layers": (2, 2)}, "feature_layers"), ({"seq_len": 4}, "seq_len"),
])
def test_bad_parameters_are_refused_naming_the_field(tmp_path, corpus, fields, field_name):
    with pytest.raises(InvalidField) as refused:
        distill_head(tiny(corpus, tmp_path / "out", **fields))
    assert refused.value.field == field_name
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_a_run_checkpoints_resumes_and_its_head_loads_and_serves(tmp_path, corpus):
    out = tmp_path / "head"
    first = distill_head(tiny(corpus, out, steps=2, feature_layers=(2, 7)))
    assert (first["steps"], first["runs"]) == (2, 1) and (out / "checkpoint.pt").exists()
    resumed = distill_head(tiny(corpus, out, steps=4, feature_layers=(2, 7)), resume=True)
    assert (resumed["steps"], resumed["runs"], len(resumed["losses"])) == (4, 2, 2)  # continued, not restarted
    assert resumed["acceptance_length_greedy_gamma4"] >= 1 and resumed["head_forward_ms"] > 0
    config = json.loads((out / HEAD_CONFIG).read_text())
    assert config["target"] == "demo:target" and config["feature_layers"] == [2, 7]
    assert (out / HEAD_WEIGHTS).stat().st_size < 10 * 2**20 and "4 steps of 2 x 24 tokens" in (
        out / "MODEL_CARD.md").read_text()

    head = HeadLM(LoadSpec(str(out)))  # as the draft service loads it
    target = CausalLM(LoadSpec(resolve_model("demo:target")))
    prompt = target.tokenizer("def fibonacci(n):\n", add_special_tokens=False)["input_ids"]

    def decode(gamma: int, request_id: str) -> list[int]:
        request = GenerationRequest(request_id=request_id, prompt_ids=prompt, max_new_tokens=16,
                                    sampling=SamplingParams(temperature=0.0), seed=0, max_context=512,
                                    feature_layers=head.feature_layers)
        stats = RequestStats(request_id, "greedy", gamma, len(prompt))

        async def collect() -> list[int]:
            tokens = []
            async for emitted in generate(request, LocalProposer(HeadDraftRunner(head)),
                                          LocalScorer(TargetRunner(target)), make_rule("greedy"), FixedGamma(gamma),
                                          stats):
                tokens += emitted
            return tokens

        return asyncio.run(collect())

    assert decode(4, "speculative") == decode(0, "target-only")


def test_the_replayed_rule_accepts_what_the_target_would_emit():
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    one_hot = [torch.nn.functional.one_hot(torch.tensor(t), 3).float() for t in (1, 2)]
    generator = torch.Generator().manual_seed(0)
    assert _decide(logits, [1, 2], one_hot, 0.0, generator) == (2, 0)  # both accepted, the bonus is the argmax
    assert _decide(logits, [1, 0], one_hot, 0.0, generator) == (1, 2)  # the second missed: the target's token
    same = [torch.softmax(logits[i], -1) for i in range(2)]  # drafts from the target's own rows: always accepted
    assert all(_decide(logits, [1, 2], same, 1.0, generator)[0] == 2 for _ in range(20))
