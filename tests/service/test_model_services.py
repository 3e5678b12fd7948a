"""Draft and target services over real gRPC on loopback: contract, compact wire, bad input."""

from __future__ import annotations

import math

import grpc
import pytest

from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from tests.helpers import TargetOracle


@pytest.fixture(scope="module")
def stubs(servers):
    draft_channel = grpc.insecure_channel(servers["draft"])
    target_channel = grpc.insecure_channel(servers["target"])
    yield pb_grpc.DraftServiceStub(draft_channel), pb_grpc.TargetServiceStub(target_channel)
    draft_channel.close()
    target_channel.close()


PROMPT = [10, 20, 30, 40, 50]
GREEDY = pb.SamplingParams(temperature=0.0)
SAMPLED = pb.SamplingParams(temperature=1.0)


def test_info_matches_between_draft_and_target(stubs):
    draft, target = stubs
    d, t = draft.GetInfo(pb.GetInfoRequest()), target.GetInfo(pb.GetInfoRequest())
    assert d.tokenizer_fingerprint == t.tokenizer_fingerprint and d.vocab_size == t.vocab_size > 0
    assert d.device == "cpu" and t.max_context > 0


def test_greedy_propose_sends_token_ids_only(stubs):
    draft, _ = stubs
    response = draft.Propose(pb.ProposeRequest(session_id="g1", keep_len=0, new_tokens=PROMPT, gamma=4,
                                               sampling=GREEDY, want_probs=False))
    assert len(response.draft_tokens) == 4 and not response.HasField("draft_probs")
    assert response.cache_len == len(PROMPT) + 3  # the last draft token is never fed
    draft.EndSession(pb.EndSessionRequest(session_id="g1"))


def test_sampled_propose_reports_the_distributions_it_sampled_from(stubs):
    draft, _ = stubs
    response = draft.Propose(pb.ProposeRequest(session_id="s1", keep_len=0, new_tokens=PROMPT, gamma=3,
                                               sampling=pb.SamplingParams(temperature=1.0, top_k=5), seed=9,
                                               want_probs=True))
    from specdec.wire.encoding import decode_top

    rows = decode_top(response.draft_probs).dense()  # the draft's top-K rows, exactly; top_k 5 leaves 5 non-zero
    assert response.draft_probs.rows == 3 and [int((row > 0).sum()) for row in rows] == [5, 5, 5]
    assert [float(rows[i, tok]) for i, tok in enumerate(response.draft_tokens)] == list(response.draft_token_probs)
    assert all(p > 0 for p in response.draft_token_probs)
    again = draft.Propose(pb.ProposeRequest(session_id="s2", keep_len=0, new_tokens=PROMPT, gamma=3,
                                            sampling=pb.SamplingParams(temperature=1.0, top_k=5), seed=9,
                                            want_probs=True))
    assert list(again.draft_tokens) == list(response.draft_tokens)  # same seed, same round: same draft
    for sid in ("s1", "s2"):
        draft.EndSession(pb.EndSessionRequest(session_id=sid))


def test_verify_returns_gamma_plus_one_positions_from_one_call(stubs, oracle: TargetOracle):
    _, target = stubs
    response = target.Verify(pb.VerifyRequest(session_id="v1", keep_len=0, new_tokens=PROMPT,
                                              draft_tokens=[1, 2, 3], sampling=SAMPLED, want_probs=True))
    assert len(response.target_argmax) == 4
    assert response.target_probs.rows == 4 and response.target_probs.encoding == pb.Distributions.DENSE_FP16
    assert len(response.target_probs.values) == 4 * response.target_probs.vocab_size * 2
    assert response.cache_len == len(PROMPT) + 3
    assert not response.HasField("statistics")  # nothing asked for
    # Roll back two draft tokens and extend: the argmax matches the plain model on the same tokens.
    response = target.Verify(pb.VerifyRequest(session_id="v1", round=1, keep_len=len(PROMPT) + 1, new_tokens=[7],
                                              draft_tokens=[], sampling=GREEDY))
    import torch

    logits = oracle.model(torch.tensor([PROMPT + [1, 7]])).logits[0, -1]
    assert list(response.target_argmax) == [int(logits.argmax())]
    assert response.cache_len == len(PROMPT) + 2
    target.EndSession(pb.EndSessionRequest(session_id="v1"))


def propose(**fields) -> pb.ProposeRequest:
    base = {"session_id": "bad", "keep_len": 0, "new_tokens": PROMPT, "gamma": 2, "sampling": SAMPLED}
    base.update(fields)
    return pb.ProposeRequest(**base)


def verify(**fields) -> pb.VerifyRequest:
    base = {"session_id": "bad", "keep_len": 0, "new_tokens": PROMPT, "draft_tokens": [1], "sampling": SAMPLED}
    base.update(fields)
    return pb.VerifyRequest(**base)


BAD_PROPOSALS = [
    (propose(session_id=""), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
    (propose(gamma=0), grpc.StatusCode.INVALID_ARGUMENT, "gamma"),
    (propose(gamma=1000), grpc.StatusCode.INVALID_ARGUMENT, "gamma"),
    (propose(sampling=pb.SamplingParams(temperature=math.nan)), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
    (propose(sampling=pb.SamplingParams(temperature=-1)), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
    (propose(sampling=pb.SamplingParams(temperature=1, top_p=1.5)), grpc.StatusCode.INVALID_ARGUMENT, "top_p"),
    (propose(sampling=pb.SamplingParams(temperature=1, top_k=-3)), grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    (propose(new_tokens=[10**6]), grpc.StatusCode.INVALID_ARGUMENT, "new_tokens"),
    (propose(new_tokens=[]), grpc.StatusCode.FAILED_PRECONDITION, "new_tokens"),
    (propose(keep_len=50), grpc.StatusCode.NOT_FOUND, "session_id"),  # "bad" holds no tokens: not a session
]
BAD_VERIFIES = [
    (verify(session_id="x" * 1000), grpc.StatusCode.INVALID_ARGUMENT, "session_id"),
    (verify(draft_tokens=[-1]), grpc.StatusCode.INVALID_ARGUMENT, "draft_tokens"),
    (verify(draft_tokens=[1] * 500), grpc.StatusCode.INVALID_ARGUMENT, "draft_tokens"),
    (verify(sampling=pb.SamplingParams(temperature=math.inf)), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
    (verify(keep_len=-2), grpc.StatusCode.INVALID_ARGUMENT, "keep_len"),
    (verify(new_tokens=[1] * 5000), grpc.StatusCode.FAILED_PRECONDITION, "context"),
]


@pytest.mark.parametrize("request_message, code, field", BAD_PROPOSALS)
def test_bad_propose_gets_a_status_naming_the_field(stubs, request_message, code, field):
    with pytest.raises(grpc.RpcError) as info:
        stubs[0].Propose(request_message)
    assert info.value.code() == code and field in info.value.details()


@pytest.mark.parametrize("request_message, code, field", BAD_VERIFIES)
def test_bad_verify_gets_a_status_naming_the_field(stubs, request_message, code, field):
    with pytest.raises(grpc.RpcError) as info:
        stubs[1].Verify(request_message)
    assert info.value.code() == code and field in info.value.details()


def test_services_keep_serving_after_bad_input(stubs):
    draft, target = stubs
    for request_message, _, _ in BAD_PROPOSALS:
        with pytest.raises(grpc.RpcError):
            draft.Propose(request_message)
    assert len(draft.Propose(propose(session_id="ok")).draft_tokens) == 2
    assert len(target.Verify(verify(session_id="ok")).target_argmax) == 2
    for stub in stubs:
        stub.EndSession(pb.EndSessionRequest(session_id="ok"))


def test_every_service_has_health_checking_and_reflection(servers):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for address, name in ((servers["draft"], "specdec.v1.DraftService"),
                          (servers["target"], "specdec.v1.TargetService"),
                          (servers["orchestrator"], "specdec.v1.OrchestratorService")):
        with grpc.insecure_channel(address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=name))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            listing = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            services = {s.name for s in listing.list_services_response.service}
            assert {name, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_verify_computes_the_statistics_asked_for_beside_its_logits(stubs, oracle: TargetOracle):
    _, target = stubs
    import torch

    from specdec.distributions.scoring import inverse_cdf

    draft_rows = pb.TopDistributions(rows=3, k=1, vocab_size=oracle.model.config.vocab_size,
                                     indices=torch.tensor([1, 2, 3], dtype=torch.int32).numpy().tobytes(),
                                     values=torch.ones(3).numpy().tobytes())  # one-hot drafts
    uniforms = [0.1, 0.5, 0.9, 0.3]
    response = target.Verify(pb.VerifyRequest(
        session_id="st1", keep_len=0, new_tokens=PROMPT, draft_tokens=[1, 2, 3], sampling=SAMPLED,
        statistics=pb.Statistics(recover="target", entropy=True, divergence="tv"), uniforms=uniforms,
        draft_probs=draft_rows))
    computed = response.statistics
    assert len(computed.target_token_probs) == 3 and len(computed.entropies) == 3 and len(computed.divergences) == 3
    assert not response.HasField("target_probs")
    with torch.inference_mode():
        probs = torch.softmax(oracle.model(torch.tensor([PROMPT + [1, 2, 3]])).logits[0, -4:].float(), -1)
    assert list(computed.candidates) == inverse_cdf(probs, torch.tensor(uniforms, dtype=torch.float64)).tolist()
    assert list(computed.target_token_probs) == pytest.approx([float(probs[i, t]) for i, t in enumerate([1, 2, 3])],
                                                              rel=1e-4)
    assert list(computed.divergences) == pytest.approx([1 - float(probs[i, t]) for i, t in enumerate([1, 2, 3])],
                                                       rel=1e-4)
    target.EndSession(pb.EndSessionRequest(session_id="st1"))



def test_health_says_which_forward_each_service_runs(servers):
    for name in ("draft_actor", "target_actor"):
        assert servers["loop"].run(servers[name].health())["forward"] == "lean"  # the demo pair is Llama
