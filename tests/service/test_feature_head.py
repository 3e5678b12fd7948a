"""A feature head served as the draft, through the real gRPC services: the demo target returns its features
with every verify, the head drafts from them, greedy output is the target's own, `sd` stays exact under
three warp settings (the first drafted token follows the target's warped distribution), overlapped too
(windows drafted ahead on the head's own features), and a head is refused at start for a target it was not
trained for, naming both."""

from __future__ import annotations

import pytest
import torch

from specdec.config import ServeConfig, resolve_model
from specdec.distributions.warps import warped_probs
from specdec.orchestrator.client import Client
from specdec.orchestrator.serving.actor import OrchestratorActor
from specdec.services.draft.servicer import DraftServiceActor
from specdec.services.runtime.model import LoadSpec
from specdec.services.target.servicer import TargetServiceActor
from specdec.types import SamplingParams
from tests.helpers import BackgroundLoop, TargetOracle, joint_expected, joint_pvalue

PROMPTS = ["import os\nimport sys\n\n\ndef main():\n    ", "class Stack:\n    def push(self, item):\n"]
PROMPT = "def parse(line):\n    "
TRIALS = 300


@pytest.fixture(scope="module")
def head_servers(tmp_path_factory):
    loop = BackgroundLoop()
    draft = DraftServiceActor(LoadSpec(resolve_model("demo:head"), kind="auto"))
    target = TargetServiceActor(LoadSpec(resolve_model("demo:target")))
    draft_address, target_address = loop.run(draft.ready()), loop.run(target.ready())
    config = ServeConfig().with_overrides(orchestrator={"port": 0}, defaults={"load_governor": False},
                                          draft={"model": "demo:head"},
                                          jobs={"journal_path": str(tmp_path_factory.mktemp("jobs") / "j.sqlite")})
    orchestrator = OrchestratorActor(config, [draft_address], [target_address])
    yield {"orchestrator": loop.run(orchestrator.ready()), "draft": draft_address, "loop": loop, "config": config}
    loop.stop()


def test_greedy_output_with_the_head_is_the_targets_own(head_servers, oracle: TargetOracle):
    with Client(head_servers["orchestrator"]) as client:
        for prompt in PROMPTS:
            out = client.generate(prompt, max_new_tokens=40, temperature=0.0, gamma=4, ignore_eos=True)
            assert out.token_ids == oracle.hf_generate(prompt, 40)
            stats = out.stats
            assert stats["num_drafts"] > 0 and stats["num_accepted_tokens"] > 0 and stats["feature_bytes"] > 0
            assert stats["gamma_trace"][0] == 0  # the first round is the target's prefill


@pytest.mark.parametrize("sampling", [SamplingParams(1.0), SamplingParams(1.0, top_k=6),
                                      SamplingParams(0.8, top_p=0.7)], ids=["t1", "t1-topk6", "t0.8-topp0.7"])
def test_the_first_drafted_token_follows_the_targets_warped_distribution(head_servers, oracle: TargetOracle,
                                                                          sampling):
    """x1 is the prefill's (the target's own), x2 the head's first drafted position judged by `sd`: the pair
    must follow P(x1) P(x2 | x1)."""
    expected = joint_expected(oracle, oracle.encode(PROMPT), sampling, TRIALS)
    pairs, drafted_accepted = [], 0
    with Client(head_servers["orchestrator"]) as client:
        for seed in range(TRIALS):
            out = client.generate(PROMPT, max_new_tokens=3, temperature=sampling.temperature, top_k=sampling.top_k,
                                  top_p=sampling.top_p, gamma=1, seed=seed, rule="sd", ignore_eos=True)
            assert out.stats["gamma_trace"][:2] == [0, 1]  # prefill, then one drafted token judged
            drafted_accepted += out.stats["num_accepted_tokens"]
            pairs.append(tuple(out.token_ids[:2]))
    assert drafted_accepted > TRIALS // 10  # the accept path ran, not only the residual's
    assert joint_pvalue(expected, pairs) > 1e-3


def test_windows_the_head_drafted_ahead_follow_the_targets_distribution(head_servers, oracle: TargetOracle):
    """Overlapped, with lanes, at T=1 (the three warps of the lanes are tested with the draft model, in
    test_lossless_through_services.py): x1 is the prefill's, x2 judged on a fresh window, x3 on a window
    drafted ahead on the head's own features whenever its premise held. Given the likeliest x1, (x2, x3) must
    follow P(x2 | x1) P(x3 | x1, x2)."""
    sampling = SamplingParams(1.0)
    prompt_ids = oracle.encode(PROMPT)
    with torch.inference_mode():
        x1 = int(warped_probs(oracle.model(torch.tensor([prompt_ids])).logits[0, -1:], sampling)[0].argmax())
    expected = joint_expected(oracle, prompt_ids + [x1], sampling, TRIALS)
    pairs, drafted_ahead = [], 0
    with Client(head_servers["orchestrator"]) as client:
        for seed in range(2 * TRIALS):
            out = client.generate(PROMPT, max_new_tokens=4, temperature=sampling.temperature, top_k=sampling.top_k,
                                  top_p=sampling.top_p, gamma=1, seed=seed, rule="sd", overlap=True,
                                  speculation_lanes=4, ignore_eos=True)
            if out.token_ids[0] == x1:
                pairs.append(tuple(out.token_ids[1:3]))
                drafted_ahead += out.stats["num_pre_drafted"] > 0
    assert len(pairs) > TRIALS // 5 and drafted_ahead > len(pairs) // 4  # windows drafted ahead were judged
    assert joint_pvalue(expected, pairs) > 1e-3


def test_greedy_output_with_the_head_overlapped_is_the_targets_own(head_servers, oracle: TargetOracle):
    with Client(head_servers["orchestrator"]) as client:
        for prompt in PROMPTS:
            out = client.generate(prompt, max_new_tokens=40, temperature=0.0, gamma=4, overlap=True,
                                  speculation_lanes=8, ignore_eos=True)
            assert out.token_ids == oracle.hf_generate(prompt, 40)
            assert out.stats["num_pre_drafted"] > 0


def test_a_head_for_another_target_is_refused_at_start_naming_both(head_servers):
    loop = head_servers["loop"]
    other = TargetServiceActor(LoadSpec(resolve_model("demo:draft")))  # a model of the same tokenizer
    other_address = loop.run(other.ready())
    orchestrator = OrchestratorActor(head_servers["config"], [head_servers["draft"]], [other_address])
    with pytest.raises(ValueError) as refused:
        loop.run(orchestrator.ready())
    message = str(refused.value)
    assert "draft.model" in message and "demo_pair/head" in message and "demo_pair/draft" in message
    loop.run(other.stop())
