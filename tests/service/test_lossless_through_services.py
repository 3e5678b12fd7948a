"""Losslessness on the real demo pair through the real gRPC services: the first emitted token of a
speculative round (a drafted position judged by `sd`) follows the target's own warped distribution, and so do
the first two when the second is judged on a window drafted ahead (overlapped, with speculation lanes)."""

from __future__ import annotations

import pytest
import torch

from specdec.distributions.warps import warped_probs
from specdec.orchestrator.client import Client
from specdec.types import SamplingParams
from tests.helpers import TargetOracle, chisquare_pvalue, joint_expected, joint_pvalue

PROMPT = "import os\nimport sys\n\n\ndef main():\n    "


@pytest.mark.parametrize("sampling, overlap", [(SamplingParams(1.0, top_k=6), False),
                                               (SamplingParams(0.8, top_p=0.7), False),
                                               (SamplingParams(0.8, top_p=0.7), True)],
                         ids=["t1-topk6", "t0.8-topp0.7", "t0.8-topp0.7-overlapped"])
def test_first_token_follows_the_targets_warped_distribution(servers, oracle: TargetOracle, sampling, overlap):
    prompt_ids = oracle.encode(PROMPT)
    with torch.inference_mode():
        logits = oracle.model(torch.tensor([prompt_ids])).logits[0, -1:]
    expected = warped_probs(logits, sampling)[0]
    support = (expected > 0).nonzero()[:, 0].tolist()
    counts = dict.fromkeys(support, 0)
    trials = 400
    with Client(servers["orchestrator"]) as client:
        for seed in range(trials):
            out = client.generate(PROMPT, max_new_tokens=2, temperature=sampling.temperature, top_k=sampling.top_k,
                                  top_p=sampling.top_p, gamma=1, seed=seed, overlap=overlap, ignore_eos=True)
            assert out.stats["num_draft_tokens"] == 1  # the first token was drafted and judged
            first = out.token_ids[0]
            assert first in counts, f"token {first} is outside the target's warped support"
            counts[first] += 1
    observed = [counts[t] for t in support]
    probs = expected[support].double() / expected[support].double().sum()
    assert chisquare_pvalue(observed, (probs * sum(observed)).tolist()) > 1e-3


TRIALS = 400


@pytest.mark.parametrize("sampling", [SamplingParams(1.0), SamplingParams(1.0, top_k=6),
                                      SamplingParams(0.8, top_p=0.7)], ids=["t1", "t1-topk6", "t0.8-topp0.7"])
def test_windows_drafted_ahead_follow_the_targets_warped_distribution(servers, oracle: TargetOracle, sampling):
    """gamma 1, overlapped with lanes: x1 is judged on a fresh window, x2 on a window drafted ahead during the
    first verification whenever its premise held (all accepted, or the recovered token among the lanes'):
    the pair must follow P(x1) P(x2 | x1)."""
    expected = joint_expected(oracle, oracle.encode(PROMPT), sampling, TRIALS)
    pairs, drafted_ahead = [], 0
    with Client(servers["orchestrator"]) as client:
        for seed in range(TRIALS):
            out = client.generate(PROMPT, max_new_tokens=3, temperature=sampling.temperature, top_k=sampling.top_k,
                                  top_p=sampling.top_p, gamma=1, seed=seed, overlap=True, speculation_lanes=4,
                                  ignore_eos=True)
            pairs.append(tuple(out.token_ids[:2]))
            drafted_ahead += out.stats["num_pre_drafted"] > 0
    assert drafted_ahead > TRIALS // 6  # windows drafted ahead were judged
    assert joint_pvalue(expected, pairs) > 1e-3
