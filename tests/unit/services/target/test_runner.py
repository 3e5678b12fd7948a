"""The target runner on the real demo target: a batch's results (argmaxes, decoded tokens, statistics,
rows) come back to the host in one read, whatever the window's length and the statistics asked for."""

from __future__ import annotations

from collections import Counter

import pytest

from specdec.config import resolve_model
from specdec.distributions.scoring import StatisticsSpec
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.types import SamplingParams, VerifyCall
from tests.helpers import host_reads

PROMPT = [5, 17, 99, 250, 3, 41]
STATISTICS = StatisticsSpec(recover="target", entropy=True)


@pytest.fixture(scope="module")
def runner() -> TargetRunner:
    return TargetRunner(CausalLM(LoadSpec(resolve_model("demo:target"))))


def window(session: str, gamma: int, **fields) -> VerifyCall:
    return VerifyCall(session, 1, 0, PROMPT, list(range(7, 7 + gamma)), SamplingParams(temperature=0.8),
                      statistics=STATISTICS, uniforms=tuple(0.5 for _ in range(gamma + 1)), **fields)


def test_a_batch_reads_back_once_with_its_statistics_and_rows(runner, monkeypatch):
    short = host_reads(lambda: runner.verify_batch([window("a", 1), window("b", 2)]), monkeypatch)
    long = host_reads(lambda: runner.verify_batch([window("a", 8), window("b", 6, want_probs=True)]), monkeypatch)
    assert short == long == Counter(tolist=1)  # the argmaxes; the rest arrives as host tensors


def test_the_statistics_arrive_on_the_host(runner):
    result = runner.verify(window("c", 3))
    assert result.statistics.candidates.device.type == "cpu" and result.statistics.candidates.shape == (4,)
    assert result.statistics.entropies.shape == (3,) and len(result.target_argmax) == 4
