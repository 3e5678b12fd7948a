"""`specdec distill --kind model` on a tiny corpus: the corpus readers, refusals naming the field, a run that
checkpoints and resumes, and a draft that loads and serves, its greedy speculative output the target's own."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from specdec.config import resolve_model
from specdec.errors import InvalidField
from specdec.orchestrator.adapters.local import LocalProposer, LocalScorer
from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.round.engine import GenerationRequest, generate
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import make_rule
from specdec.services.draft.runner import DraftRunner
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.training.corpus import read_corpus
from specdec.training.distill import DistillSpec, distill
from specdec.training.evaluation import greedy_acceptance_length, mean_acceptance_length
from specdec.types import SamplingParams


def tiny(corpus, out, init: str = "", **fields) -> DistillSpec:
    settings = {"steps": 2, "seq_len": 24, "batch_size": 2, "checkpoint_every": 2, "eval_batches": 1} | fields
    return DistillSpec(target=resolve_model("demo:target"), out=str(out), init=init or resolve_model("demo:draft"),
                       corpus=str(corpus), **settings)


def test_corpora_are_read_and_split_the_same_way_every_time(tmp_path, corpus):
    train, heldout = read_corpus(str(corpus))
    assert len(train) + len(heldout) == 40 and heldout and (train, heldout) == read_corpus(str(corpus))
    rows = tmp_path / "rows.jsonl.gz"
    with gzip.open(rows, "wt") as fh:
        fh.writelines(json.dumps({"text": f"x = {i}\n"}) + "\n" for i in range(60))
    assert sum(map(len, read_corpus(str(rows)))) == 60
    (tmp_path / "one.txt").write_text("first piece\n\nsecond piece\n\nthird")
    assert sum(map(len, read_corpus(str(tmp_path / "one.txt")))) == 3


@pytest.mark.parametrize("source, text, reason", [
    ("missing", None, "neither `demo` nor an existing"),
    ("bad.jsonl", '{"text": "ok"}\n[1, 2]\n', "line 2: not a JSON object"),
    ("empty.txt", "\n\n", "holds no text"),
])
def test_a_bad_corpus_is_refused_naming_the_field(tmp_path, source, text, reason):
    if text is not None:
        (tmp_path / source).write_text(text)
    with pytest.raises(InvalidField, match=reason) as refused:
        read_corpus(str(tmp_path / source))
    assert refused.value.field == "corpus"


@pytest.mark.parametrize("fields, field", [
    ({"steps": 0, "minutes": 0}, "steps"), ({"kl_weight": 1.5}, "kl_weight"), ({"on_policy": -0.1}, "on_policy"),
    ({"seq_len": 4}, "seq_len"), ({"lr": 0}, "lr"), ({"heads": 3}, "heads"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
])
def test_bad_distill_parameters_are_refused_naming_the_field(tmp_path, corpus, fields, field):
    with pytest.raises(InvalidField) as refused:
        distill(tiny(corpus, tmp_path, **fields))
    assert refused.value.field == field


def test_a_draft_of_another_vocabulary_is_refused(tmp_path, corpus):
    from tests.helpers import random_llama

    other = random_llama(tmp_path / "other", vocab_size=50)
    with pytest.raises(InvalidField, match="vocabulary") as refused:
        distill(tiny(corpus, tmp_path / "out", init=other))
    assert refused.value.field == "init"


def test_a_run_checkpoints_resumes_and_its_draft_loads_and_serves(tmp_path, corpus):
    out = tmp_path / "draft"
    first = distill(tiny(corpus, out, steps=2))
    assert (first["steps"], first["runs"]) == (2, 1) and (out / "checkpoint.pt").exists()
    resumed = distill(tiny(corpus, out, steps=4), resume=True)
    assert (resumed["steps"], resumed["runs"], len(resumed["losses"])) == (4, 2, 2)  # continued, not restarted
    card = (out / "MODEL_CARD.md").read_text()
    assert "4 steps of 2 x 24 tokens" in card and "greedy agreement" in card
    assert 0 <= resumed["greedy_agreement"] <= 1 and resumed["draft_forward_ms"] > 0

    draft = CausalLM(LoadSpec(str(out)))  # as the draft service loads it
    target = CausalLM(LoadSpec(resolve_model("demo:target")))
    prompt = target.tokenizer("def fibonacci(n):\n", add_special_tokens=False)["input_ids"]

    def decode(gamma: int, request_id: str) -> list[int]:
        request = GenerationRequest(request_id=request_id, prompt_ids=prompt, max_new_tokens=16,
                                    sampling=SamplingParams(temperature=0.0), seed=0, max_context=512)
        stats = RequestStats(request_id, "sd", gamma, len(prompt))

        async def collect() -> list[int]:
            out_tokens = []
            async for emitted in generate(request, LocalProposer(DraftRunner(draft)), LocalScorer(TargetRunner(target)),
                                          make_rule("sd"), FixedGamma(gamma), stats):
                out_tokens += emitted
            return out_tokens

        return asyncio.run(collect())

    assert decode(4, "speculative") == decode(0, "target-only")  # greedy: the target's own output


def test_on_policy_batches_are_the_targets_own_samples_after_a_corpus_prefix(tmp_path, corpus):
    figures = distill(tiny(corpus, tmp_path / "on-policy", steps=2, on_policy=1.0))
    assert figures["steps"] == 2 and len(figures["losses"]) == 1


def test_a_draft_that_is_the_target_is_accepted_whole_every_round():
    target = AutoModelForCausalLM.from_pretrained(resolve_model("demo:target")).eval()
    prompts = [[5, 17, 99, 250, 3, 41], [8, 9, 10, 11]]
    assert greedy_acceptance_length(target, target, prompts, gamma=4, new_tokens=20) == 5.0  # 20 = 4 rounds of 5
    draft = AutoModelForCausalLM.from_pretrained(resolve_model("demo:draft")).eval()
    assert 1.0 <= greedy_acceptance_length(target, draft, prompts, gamma=4, new_tokens=20) < 5.0


def test_mean_acceptance_length_counts_the_bonus_token():
    assert mean_acceptance_length(0.0, 4) == 1.0 and mean_acceptance_length(1.0, 4) == 5.0
    assert mean_acceptance_length(0.5, 4) == pytest.approx(1.9375)
    assert torch.isclose(torch.tensor(mean_acceptance_length(0.8, 4)), torch.tensor(3.3616))
