"""OrchestratorService over real gRPC with the real draft and target services (no Ray)."""

from __future__ import annotations

import math

import grpc
import pytest

from specdec.orchestrator.client import Client
from tests.helpers import TargetOracle

PROMPTS = ["import os\nimport sys\n\n\ndef main(", "class Stack:\n    def __init__(self):\n        self."]


@pytest.fixture(scope="module")
def client(servers):
    with Client(servers["orchestrator"], timeout_s=120) as c:
        yield c


@pytest.mark.parametrize("gamma", [0, 1, 4])
def test_greedy_output_equals_the_targets_generate(client: Client, oracle: TargetOracle, gamma):
    for prompt in PROMPTS:
        completion = client.generate(prompt, max_new_tokens=24, temperature=0.0, gamma=gamma, ignore_eos=True)
        assert completion.token_ids == oracle.hf_generate(prompt, 24)
        assert completion.stats["output_tokens"] == 24 and completion.stats["rule"] == "greedy"
        assert completion.text == oracle.tokenizer.decode(completion.token_ids, skip_special_tokens=True)


@pytest.mark.parametrize("gamma, lanes", [(1, 0), (4, 0), (4, 3)])
def test_overlapped_greedy_output_equals_the_targets_generate(client: Client, oracle: TargetOracle, servers, gamma,
                                                              lanes):
    pre_drafted = 0
    for prompt in PROMPTS:
        completion = client.generate(prompt, max_new_tokens=24, temperature=0.0, gamma=gamma, overlap=True,
                                     speculation_lanes=lanes, ignore_eos=True)
        assert completion.token_ids == oracle.hf_generate(prompt, 24)
        stats = completion.stats
        assert stats["overlap"] and stats["speculation_lanes"] == lanes
        assert (stats["num_lane_draft_tokens"] > 0) == (lanes > 0)
        pre_drafted += stats["num_pre_drafted"]
    assert pre_drafted > 0  # some windows went to verification without waiting for the draft
    assert servers["loop"].run(servers["draft_actor"].health())["sessions"] == 0  # lane sessions ended too


def test_stream_yields_deltas_then_stats(client: Client):
    deltas = list(client.stream(PROMPTS[0], max_new_tokens=16, temperature=1.0, gamma=3, seed=4, ignore_eos=True))
    assert sum(len(d.token_ids) for d in deltas) == 16 and len(deltas) > 1
    stats = deltas[-1].stats
    assert stats == client.last_stats and all(d.stats is None for d in deltas[:-1])
    assert stats["num_draft_tokens"] >= stats["num_accepted_tokens"] >= 0
    assert stats["mean_acceptance_length"] == pytest.approx(1 + stats["num_accepted_tokens"] / stats["num_drafts"])
    assert 0 < stats["wire_bytes"]


def test_same_seed_same_output(client: Client):
    runs = [client.generate(PROMPTS[1], max_new_tokens=20, temperature=1.0, top_p=0.9, gamma=3, seed=s,
                            ignore_eos=True).token_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


BAD = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x = 1\n" * 2000}, "prompt"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 10**6}, "max_new_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"top_k": 10**7}, "top_k"),
    ({"gamma": -1}, "gamma"),
    ({"gamma": 1000}, "gamma"),
    ({"seed": -5}, "seed"),
    ({"rule": "bogus"}, "rule"),
    ({"rule": "greedy", "temperature": 1.0}, "rule"),
    ({"rule": "fsd", "rule_params": {"threshold": -1.0}}, "rule_params.threshold"),
    ({"rule": "fsd", "rule_params": {"threshold": math.nan}}, "rule_params.threshold"),
    ({"rule": "fsd", "rule_params": {"divergence": "hellinger"}}, "rule_params.divergence"),
    ({"rule": "opt", "rule_params": {"epsilon": -0.5}}, "rule_params.epsilon"),
    ({"rule": "uno", "rule_params": {"epsilon": math.inf}}, "rule_params.epsilon"),
    ({"rule": "typical", "rule_params": {"delta": math.nan}}, "rule_params.delta"),
    ({"gamma_controller": "psychic"}, "gamma_controller"),
    ({"gamma_controller": "gammatune", "controller_params": {"eta": 2.0}}, "controller_params.eta"),
    ({"gamma_controller": "cost", "controller_params": {"gamma_max": 999}}, "controller_params.gamma_max"),
    ({"num_draft_sequences": 100}, "num_draft_sequences"),
    ({"num_draft_sequences": 2, "rule": "fsd"}, "num_draft_sequences"),
]


@pytest.mark.parametrize("fields, field", BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_bad_input_is_invalid_argument_naming_the_field(client: Client, fields, field):
    kwargs = {"prompt": "def f(x):", "max_new_tokens": 4} | fields
    with pytest.raises(grpc.RpcError) as info:
        client.generate(kwargs.pop("prompt"), **kwargs)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field) or f".{field}" in info.value.details()


def test_server_keeps_serving_and_frees_sessions(client: Client, servers):
    for fields, _ in BAD:
        kwargs = {"prompt": "def f(x):", "max_new_tokens": 4} | fields
        with pytest.raises(grpc.RpcError):
            client.generate(kwargs.pop("prompt"), **kwargs)
    assert client.generate("def f(x):", max_new_tokens=4, ignore_eos=True).stats["output_tokens"] == 4
    loop = servers["loop"]
    for actor in (servers["draft_actor"], servers["target_actor"]):
        assert loop.run(actor.health())["sessions"] == 0


@pytest.mark.parametrize("rule, params", [("fsd", {"threshold": 0.4, "divergence": "tv_topk"}),
                                          ("fsd", {"threshold": 0.2, "divergence": "kl", "divergence_on_warped": True}),
                                          ("opt", {"epsilon": 0.1}), ("uno", {"epsilon": 0.1}), ("typical", {})])
def test_every_rule_serves_through_the_services(client: Client, rule, params):
    out = client.generate(PROMPTS[0], max_new_tokens=16, temperature=0.8, top_k=50, rule=rule, rule_params=params,
                          gamma=3, seed=1, ignore_eos=True)
    assert out.stats["rule"] == rule and out.stats["output_tokens"] == 16


@pytest.mark.parametrize("controller", ["heuristic", "gammatune", "gammatune+", "cost"])
def test_every_controller_reports_its_gamma_trace(client: Client, controller):
    out = client.generate(PROMPTS[1], max_new_tokens=24, temperature=1.0, gamma=3, gamma_controller=controller,
                          seed=2, ignore_eos=True)
    stats = out.stats
    assert stats["gamma_controller"] == controller and len(stats["gamma_trace"]) == stats["num_rounds"]
    assert sum(stats["gamma_trace"]) == stats["num_draft_tokens"]
    # (cost starts where the deployment's measurements put it, which may be target-only throughout)
    assert (stats["measured_c"] > 0) == (stats["num_draft_tokens"] > 0)


def test_multi_draft_greedy_equals_the_targets_generate(client: Client, oracle: TargetOracle):
    out = client.generate(PROMPTS[0], max_new_tokens=20, temperature=0.0, gamma=3, num_draft_sequences=3,
                          ignore_eos=True)
    assert out.token_ids == oracle.hf_generate(PROMPTS[0], 20)
    sampled = client.generate(PROMPTS[0], max_new_tokens=20, temperature=1.0, gamma=3, num_draft_sequences=3, seed=5,
                              ignore_eos=True)
    assert sampled.stats["num_draft_sequences"] == 3 and sampled.stats["output_tokens"] == 20


def test_server_info(client: Client):
    info = client.server_info()
    assert info["draft"]["tokenizer_fingerprint"] == info["target"]["tokenizer_fingerprint"]
    assert info["default_rule"] == "sd"


def test_concurrent_requests_are_batched_and_unchanged(client: Client, servers):
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"def f{i}(x):\n    return x * {i}\n\n\ndef g(" for i in range(6)]

    def greedy(prompt: str) -> list[int]:
        return client.generate(prompt, max_new_tokens=24, temperature=0.0, gamma=3, ignore_eos=True).token_ids

    sequential = [greedy(p) for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(greedy, prompts))
    assert concurrent == sequential
    loop = servers["loop"]
    health = [loop.run(servers[name].health()) for name in ("draft_actor", "target_actor")]
    assert all(h["largest_batch"] > 1 for h in health), health


def test_the_clients_deprecated_num_drafts_still_sets_m_with_a_warning(client: Client):
    with pytest.warns(FutureWarning, match="num_drafts is deprecated: it is now num_draft_sequences"):
        out = client.generate(PROMPTS[0], max_new_tokens=8, temperature=0.0, gamma=3, num_drafts=2, ignore_eos=True)
    assert out.stats["num_draft_sequences"] == 2
    with pytest.raises(TypeError, match="num_drafs"):
        client.generate(PROMPTS[0], max_new_tokens=8, num_drafs=2)
