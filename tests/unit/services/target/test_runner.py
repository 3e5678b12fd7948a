"""The target runner on the real demo target: a batch's results (argmaxes, decoded tokens, statistics,
rows) come back to the host in one read, whatever the window's length and the statistics asked for."""

from __future__ import annotations

from collections import Counter

import pytest

from specdec.config import resolve_model
from specdec.distributions.scoring import StatisticsSpec
from specdec.services.runtime.batcher import run_to_end
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


@pytest.mark.parametrize("forward", ["auto", "transformers"])
def test_features_are_the_asked_layers_outputs_at_every_token_fed(forward, monkeypatch):
    """A window's and a decoded run's features: the outputs of the asked decoder layers (before the final
    norm) at each token fed, side by side, in float16, read back with the rest of the batch."""
    import torch
    from transformers import AutoModelForCausalLM

    from specdec.services.runtime.features import captured_layers

    runner = TargetRunner(CausalLM(LoadSpec(resolve_model("demo:target"), forward=forward)))
    layers = (7, 2)
    window_call = VerifyCall("w", 1, 0, PROMPT, [7, 8, 9], SamplingParams(temperature=0.0), feature_layers=layers)
    run_call = VerifyCall("r", 1, 0, PROMPT, [], SamplingParams(temperature=0.0), decode_tokens=4,
                          feature_layers=layers)
    plain = VerifyCall("p", 1, 0, PROMPT, [7], SamplingParams(temperature=0.0))
    reads = host_reads(lambda: run_to_end(runner.verify_batch, [window_call, run_call, plain]), monkeypatch)
    assert reads == Counter(tolist=2)  # the forward that finished the window and the plain call; the run's last
    window_result, run_result, plain_result = run_to_end(runner.verify_batch, [
        VerifyCall(**{**vars(call), "session_id": call.session_id + "2"}) for call in (window_call, run_call, plain)])
    assert plain_result.features is None
    reference = AutoModelForCausalLM.from_pretrained(resolve_model("demo:target"), dtype=torch.float32).eval()
    for result, fed in ((window_result, PROMPT + [7, 8, 9]), (run_result, PROMPT + run_result.decoded_tokens[:-1])):
        with torch.inference_mode(), captured_layers(reference, layers) as captured:
            hidden = reference(torch.tensor([fed]), output_hidden_states=True).hidden_states
        assert result.features.start == 0 and result.features.values.dtype == torch.float16
        torch.testing.assert_close(result.features.values, captured[0][0].half(), rtol=2e-3, atol=2e-2)
        torch.testing.assert_close(result.features.values[:, 320:], hidden[3][0].half(), rtol=2e-3, atol=2e-2)
