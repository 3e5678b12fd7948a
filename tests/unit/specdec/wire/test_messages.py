"""specdec.v1 messages <-> specdec.types dataclasses: every pair round-trips through the serialized wire
form, a call whose settings are held leaves them out and gets them back from the service's HeldSettings,
proto3's zero defaults read as the dataclasses' defaults, and malformed input raises InvalidField naming
the field at fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import pytest
import torch
from google.protobuf.message import Message

from specdec.distributions.scoring import StatisticsSpec, WindowStatistics
from specdec.errors import InvalidField
from specdec.types import (
    FeatureRows,
    Lane,
    ModelInfo,
    Proposal,
    ProposeCall,
    SamplingParams,
    TopRows,
    Verification,
    VerifyCall,
)
from specdec.v1 import specdec_pb2 as pb
from specdec.wire import encoding, messages
from specdec.wire.held_settings import PROPOSE_SETTINGS, VERIFY_SETTINGS, HeldSettings

M = TypeVar("M", bound=Message)

VOCAB = 64
WIRE_BYTES = 321
SAMPLING = SamplingParams(0.5, top_k=5, top_p=0.75)  # exact in float32, as they travel


def over_the_wire(message: M) -> M:
    """The message as the peer parses it."""
    return type(message).FromString(message.SerializeToString())


def top_rows(rows: int, k: int = 4, vocab: int = VOCAB, seed: int = 0) -> TopRows:
    generator = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(vocab, generator=generator)[:k] for _ in range(rows)])  # distinct a row
    values = torch.softmax(torch.randn(rows, k, generator=generator), -1)
    return TopRows(indices, values, vocab)


def same_rows(got: TopRows | None, want: TopRows | None) -> bool:
    if got is None or want is None:
        return got is want
    return (torch.equal(got.indices, want.indices) and got.indices.dtype == torch.long
            and torch.equal(got.values, want.values) and got.values.dtype == torch.float32
            and got.vocab_size == want.vocab_size)


def without_rows(value: Proposal | ProposeCall | VerifyCall) -> Proposal | ProposeCall | VerifyCall:
    """The dataclass without its TopRows (tensors do not compare with ==), to compare the rest at once."""
    return value if isinstance(value, ProposeCall) else replace(value, draft_probs=None, draft_raw_probs=None)


def set_fields(message: Message) -> set[str]:
    """The fields a message carries: set sub-messages, and scalars and lists that are not proto3's zero."""
    return {descriptor.name for descriptor, _ in message.ListFields()}


def expect_invalid(field_name: str, code: str, decode: Callable[[], object]) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        decode()
    error = info.value
    assert (error.field, error.code) == (field_name, code) and str(error) == f"{field_name}: {error.reason}"
    return error


# ---- sampling, model info, statistics ----

@pytest.mark.parametrize("sampling", [
    SamplingParams(),
    SamplingParams(temperature=0.0),  # greedy
    SAMPLING,
    SamplingParams(temperature=1.5, top_k=40, top_p=0.25),
    SamplingParams(temperature=1.0, top_k=0, top_p=0.5),
])
def test_sampling_params_round_trip(sampling: SamplingParams) -> None:
    assert messages.sampling_from_pb(over_the_wire(messages.sampling_to_pb(sampling))) == sampling


@pytest.mark.parametrize("message, sampling", [
    (pb.SamplingParams(), SamplingParams(temperature=0.0, top_k=0, top_p=1.0)),
    (pb.SamplingParams(temperature=0.5, top_k=3, top_p=0.0), SamplingParams(0.5, 3, 1.0)),
    (pb.SamplingParams(temperature=0.5, top_p=0.25), SamplingParams(0.5, 0, 0.25)),
], ids=["empty", "top_p 0 is disabled", "top_p kept"])
def test_sampling_read_from_the_wire_takes_top_p_zero_as_disabled(message: pb.SamplingParams,
                                                                  sampling: SamplingParams) -> None:
    assert messages.sampling_from_pb(message) == sampling


def test_model_info_round_trips() -> None:
    info = ModelInfo(model="org/target-7b", vocab_size=32_000, max_context=4096, tokenizer_fingerprint="ab12cd",
                     device="cuda:0", dtype="bfloat16", eos_token_id=2)
    assert messages.info_from_pb(over_the_wire(messages.info_to_pb(info))) == info


@pytest.mark.parametrize("spec", [
    StatisticsSpec(),
    StatisticsSpec(recover="residual", entropy=True),
    StatisticsSpec(recover="target", divergence="kl", divergence_top_k=7, divergence_on_raw=True),
    StatisticsSpec(divergence="js_topk", divergence_top_k=1),
])
def test_statistics_specs_round_trip(spec: StatisticsSpec) -> None:
    assert messages.statistics_from_pb(over_the_wire(messages.statistics_to_pb(spec))) == spec


def test_statistics_without_a_divergence_top_k_read_as_the_default() -> None:
    assert messages.statistics_from_pb(pb.Statistics(divergence="tv")) == StatisticsSpec(divergence="tv")
    assert StatisticsSpec().divergence_top_k == 50


@pytest.mark.parametrize("message, field_name", [
    (pb.Statistics(recover="bogus"), "statistics.recover"),
    (pb.Statistics(divergence="euclid"), "statistics.divergence"),
    (pb.Statistics(divergence="kl", divergence_top_k=-3), "statistics.divergence_top_k"),
])
def test_bad_statistics_name_the_field_under_statistics(message: pb.Statistics, field_name: str) -> None:
    expect_invalid(field_name, "INVALID_ARGUMENT", lambda: messages.statistics_from_pb(message))
    request = pb.VerifyRequest(session_id="s", new_tokens=[1], draft_tokens=[2], statistics=message)
    expect_invalid(field_name, "INVALID_ARGUMENT", lambda: messages.verify_call_from_pb(request, VOCAB))


# ---- propose ----

FULL_PROPOSE = ProposeCall(session_id="session-7", round=12, keep_len=40, new_tokens=[1, 2, 3], gamma=5,
                           sampling=SAMPLING, seed=2**40 + 3, want_probs=True, confidence_threshold=0.25,
                           want_raw_probs=True, num_draft_sequences=1, num_alternatives=3)


@pytest.mark.parametrize("call", [
    ProposeCall(session_id="s", round=0, keep_len=0, new_tokens=[5], gamma=1, sampling=SamplingParams(), seed=0,
                want_probs=False),
    FULL_PROPOSE,
    replace(FULL_PROPOSE, num_draft_sequences=4, confidence_threshold=0.0, num_alternatives=0),
    replace(FULL_PROPOSE, new_tokens=[], confidence_threshold=0.0, lanes=(Lane(41, 9), Lane(38, 4))),
    replace(FULL_PROPOSE, sampling=SamplingParams(temperature=0.0), want_probs=False, want_raw_probs=False),
], ids=["minimal", "every setting", "several drafts", "lanes", "greedy"])
def test_propose_calls_round_trip(call: ProposeCall) -> None:
    assert messages.propose_call_from_pb(over_the_wire(messages.propose_call_to_pb(call))) == call


def test_a_propose_request_without_num_draft_sequences_asks_for_one_sequence() -> None:
    call = messages.propose_call_from_pb(pb.ProposeRequest(session_id="s", new_tokens=[1], gamma=2))
    assert call.num_draft_sequences == 1 and call.sampling == SamplingParams(temperature=0.0)


@pytest.mark.parametrize("proposal, vocab_size", [
    (Proposal(draft_tokens=[], draft_probs=None, cache_len=0, compute_seconds=0.0), VOCAB),
    (Proposal(draft_tokens=[5, 6], draft_probs=None, cache_len=9, compute_seconds=1e-3), VOCAB),
    (Proposal(draft_tokens=[3, 1, 4], draft_probs=top_rows(3), cache_len=17, compute_seconds=0.0123,
              draft_raw_probs=top_rows(3, k=6, seed=1), draft_token_probs=(0.5, 0.25, 0.125),
              alternative_tokens=(9, 8, 7)), VOCAB),
    (Proposal(draft_tokens=[3, 1, 4, 1, 5, 9], draft_probs=top_rows(6, k=2), cache_len=4, compute_seconds=2.5),
     None),  # None: trust the message's own vocabulary
    (Proposal(draft_tokens=[], draft_probs=None, cache_len=5, compute_seconds=1e-3,
              lanes=(Proposal([7, 8], None, 0, 0.0, alternative_tokens=(1, 2, 3, 4)), Proposal([3], None, 0, 0.0))),
     VOCAB),
], ids=["empty", "tokens only", "every field", "several drafts", "lanes"])
def test_proposals_round_trip(proposal: Proposal, vocab_size: int | None) -> None:
    back = messages.proposal_from_pb(over_the_wire(messages.proposal_to_pb(proposal)), WIRE_BYTES, vocab_size)
    assert without_rows(back) == without_rows(replace(proposal, wire_bytes=WIRE_BYTES))
    assert same_rows(back.draft_probs, proposal.draft_probs)
    assert same_rows(back.draft_raw_probs, proposal.draft_raw_probs)


def spoil_values(field_name: str) -> Callable[[Message], None]:
    """The field's rows with values that no longer sum to 1 (the shape left as it was)."""
    def spoil(message: Message) -> None:
        rows = getattr(message, field_name)
        rows.values = torch.full((rows.rows * rows.k,), 0.5).numpy().tobytes()
    return spoil


def spoil_indices(field_name: str) -> Callable[[Message], None]:
    """The field's rows pointing just past the vocabulary (the shape left as it was)."""
    def spoil(message: Message) -> None:
        rows = getattr(message, field_name)
        rows.indices = torch.full((rows.rows * rows.k,), VOCAB, dtype=torch.int32).numpy().tobytes()
    return spoil


def untouched(message: Message) -> None:
    pass


@pytest.mark.parametrize("proposal, spoil, vocab_size, field_name, match", [
    (Proposal([1, 2], top_rows(3), 0, 0.0), untouched, VOCAB, "draft_probs", "3 rows for 2 draft tokens"),
    (Proposal([1, 2, 3], top_rows(3), 0, 0.0, draft_raw_probs=top_rows(4)), untouched, VOCAB, "draft_raw_probs",
     "4 rows for 3"),
    (Proposal([1, 2, 3], top_rows(3), 0, 0.0), untouched, 100, "draft_probs", "vocab"),
    (Proposal([1, 2, 3], top_rows(3), 0, 0.0), spoil_values("draft_probs"), VOCAB, "draft_probs", "sum to 1"),
    (Proposal([1, 2, 3], None, 0, 0.0, draft_raw_probs=top_rows(3)), spoil_indices("draft_raw_probs"), VOCAB,
     "draft_raw_probs", "out of vocabulary"),
], ids=["rows for fewer tokens", "raw rows for more tokens", "another vocabulary", "not a distribution",
        "index out of vocabulary"])
def test_a_malformed_proposal_is_an_internal_error_naming_its_field(
        proposal: Proposal, spoil: Callable[[Message], None], vocab_size: int, field_name: str, match: str) -> None:
    message = messages.proposal_to_pb(proposal)
    spoil(message)
    error = expect_invalid(field_name, "INTERNAL", lambda: messages.proposal_from_pb(message, 0, vocab_size))
    assert match in error.reason


# ---- verify ----

FULL_VERIFY = VerifyCall(session_id="t-1", round=3, keep_len=20, new_tokens=[7, 8], draft_tokens=[4, 5, 6],
                         sampling=SAMPLING, want_probs=True,
                         statistics=StatisticsSpec("residual", entropy=True, divergence="kl", divergence_top_k=8,
                                                   divergence_on_raw=True),
                         uniforms=(0.125, 0.25, 0.5, 0.75), draft_probs=top_rows(3),
                         draft_raw_probs=top_rows(3, k=5, seed=2))


@pytest.mark.parametrize("call", [
    VerifyCall(session_id="s", round=0, keep_len=0, new_tokens=[1], draft_tokens=[],
               sampling=SamplingParams(temperature=0.0)),
    FULL_VERIFY,
    replace(FULL_VERIFY, draft_raw_probs=None, statistics=StatisticsSpec("residual")),
    VerifyCall(session_id="s", round=9, keep_len=11, new_tokens=[1, 2], draft_tokens=[3, 4, 5, 6, 7, 8],
               sampling=SAMPLING, want_probs=True, num_draft_sequences=2),
    VerifyCall(session_id="s", round=2, keep_len=5, new_tokens=[3], draft_tokens=[], sampling=SAMPLING,
               statistics=StatisticsSpec("target"), uniforms=(0.0, 0.5, 0.875, 0.25, 0.5), decode_tokens=5),
], ids=["greedy, one position", "every field", "warped rows only", "several windows", "decoded run"])
def test_verify_calls_round_trip(call: VerifyCall) -> None:
    back = messages.verify_call_from_pb(over_the_wire(messages.verify_call_to_pb(call)), VOCAB)
    assert without_rows(back) == without_rows(call)
    assert same_rows(back.draft_probs, call.draft_probs) and same_rows(back.draft_raw_probs, call.draft_raw_probs)


def test_a_verify_request_without_num_draft_sequences_or_decode_tokens_reads_one_of_each() -> None:
    call = messages.verify_call_from_pb(pb.VerifyRequest(session_id="s", new_tokens=[1], draft_tokens=[2, 3]), VOCAB)
    assert (call.num_draft_sequences, call.decode_tokens, call.statistics) == (1, 1, StatisticsSpec())
    assert call.draft_probs is None and call.draft_raw_probs is None and call.uniforms == ()


@pytest.mark.parametrize("call, spoil, vocab_size, field_name, match", [
    (replace(FULL_VERIFY, draft_probs=top_rows(2)), untouched, VOCAB, "draft_probs", "2 rows for 3 draft tokens"),
    (replace(FULL_VERIFY, draft_raw_probs=top_rows(4)), untouched, VOCAB, "draft_raw_probs", "4 rows for 3"),
    (FULL_VERIFY, untouched, 100, "draft_probs", "vocab"),  # the rows of another model's vocabulary
    (FULL_VERIFY, spoil_values("draft_raw_probs"), VOCAB, "draft_raw_probs", "sum to 1"),
    (FULL_VERIFY, spoil_indices("draft_probs"), VOCAB, "draft_probs", "out of vocabulary"),
], ids=["rows for more tokens", "raw rows for fewer tokens", "another vocabulary", "not a distribution",
        "index out of vocabulary"])
def test_a_verify_request_with_bad_draft_rows_is_invalid_naming_the_field(
        call: VerifyCall, spoil: Callable[[Message], None], vocab_size: int, field_name: str, match: str) -> None:
    message = messages.verify_call_to_pb(call)
    spoil(message)
    error = expect_invalid(field_name, "INVALID_ARGUMENT", lambda: messages.verify_call_from_pb(message, vocab_size))
    assert match in error.reason


def window_statistics(gamma: int, candidates: bool = True, entropies: bool = True,
                      divergences: bool = True) -> WindowStatistics:
    generator = torch.Generator().manual_seed(gamma)

    def floats(wanted: bool) -> torch.Tensor:
        return torch.rand(gamma if wanted else 0, generator=generator)

    return WindowStatistics(target_token_probs=torch.rand(gamma, generator=generator),
                            candidates=torch.randint(VOCAB, (gamma + 1 if candidates else 0,), generator=generator),
                            entropies=floats(entropies), divergences=floats(divergences))


def dense_probs(rows: int, truncate_to: int = VOCAB) -> torch.Tensor:
    probs = torch.softmax(torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(rows)), -1)
    probs[:, truncate_to:] = 0
    return probs / probs.sum(-1, keepdim=True)


@pytest.mark.parametrize("verification", [
    Verification(target_argmax=[5], target_probs=None, cache_len=1, compute_seconds=0.0),
    Verification(target_argmax=[1, 2, 3], target_probs=None, cache_len=30, compute_seconds=0.0101,
                 statistics=window_statistics(2), batch_size=4, batch_tokens=17),
    Verification(target_argmax=[1, 2, 3], target_probs=None, cache_len=30, compute_seconds=0.5,
                 statistics=window_statistics(2, candidates=False, entropies=False, divergences=False)),
    Verification(target_argmax=[1, 2, 3, 4, 5, 6], target_probs=dense_probs(6), cache_len=12, compute_seconds=1.0,
                 batch_size=2, batch_tokens=9),
    Verification(target_argmax=[7, 8, 9], target_probs=dense_probs(3, truncate_to=5), cache_len=8,
                 compute_seconds=0.25, decoded_tokens=[7, 8, 9]),
], ids=["argmax only", "statistics", "token probabilities only", "dense rows", "sparse rows of a decoded run"])
def test_verifications_round_trip(verification: Verification) -> None:
    back = messages.verification_from_pb(over_the_wire(messages.verification_to_pb(verification)), WIRE_BYTES)
    assert replace(back, target_probs=None, statistics=None) == \
        replace(verification, target_probs=None, statistics=None, wire_bytes=WIRE_BYTES)
    if verification.target_probs is None:
        assert back.target_probs is None
    else:  # fp16 on the wire: the receiver reads exactly what the sender's wire_precision says
        assert torch.equal(back.target_probs, encoding.wire_precision(verification.target_probs))
    if verification.statistics is None:
        assert back.statistics is None
    else:
        for name, dtype in [("target_token_probs", torch.float32), ("candidates", torch.long),
                            ("entropies", torch.float32), ("divergences", torch.float32)]:
            got, want = getattr(back.statistics, name), getattr(verification.statistics, name)
            assert got.dtype == dtype and torch.equal(got, want), name


@pytest.mark.parametrize("spoil, match", [
    (lambda message: message.target_argmax.append(1), "4 rows for 5 tokens"),
    (lambda message: setattr(message.target_probs, "values", b"\0" * 6), "values"),
    (lambda message: setattr(message.target_probs, "encoding", pb.Distributions.ENCODING_UNSPECIFIED), "encoding"),
], ids=["rows for fewer tokens", "values for another shape", "no encoding"])
def test_a_malformed_verification_is_an_internal_error_naming_target_probs(
        spoil: Callable[[pb.VerifyResponse], None], match: str) -> None:
    message = messages.verification_to_pb(
        Verification(target_argmax=[1, 2, 3, 4], target_probs=dense_probs(4), cache_len=4, compute_seconds=0.0))
    spoil(message)
    error = expect_invalid("target_probs", "INTERNAL", lambda: messages.verification_from_pb(message, 0))
    assert match in error.reason


# ---- settings held by the service ----

HELD_CASES = [
    pytest.param(FULL_PROPOSE, messages.propose_call_to_pb, PROPOSE_SETTINGS,
                 {"session_id", "round", "keep_len", "new_tokens", "gamma"}, id="propose"),
    pytest.param(FULL_VERIFY, messages.verify_call_to_pb, VERIFY_SETTINGS,
                 {"session_id", "round", "keep_len", "new_tokens", "draft_tokens", "want_probs", "num_draft_sequences",
                  "statistics", "uniforms", "draft_probs", "draft_raw_probs", "decode_tokens"}, id="verify"),
]


@pytest.mark.parametrize("call, to_pb, settings, travelling", HELD_CASES)
def test_a_call_whose_settings_are_held_leaves_them_out_and_keeps_the_rest(
        call: ProposeCall | VerifyCall, to_pb: Callable[..., Message], settings: tuple[str, ...],
        travelling: set[str]) -> None:
    first = set_fields(to_pb(call))
    assert first >= set(settings) | travelling and "settings_held" not in first  # the first call carries all
    later = to_pb(replace(call, settings_held=True))
    assert later.settings_held
    assert set_fields(later) == travelling | {"settings_held"}  # no setting travels, everything else does
    assert later.ByteSize() < to_pb(call).ByteSize()


@pytest.mark.parametrize("call, to_pb, settings, travelling", HELD_CASES)
def test_settings_left_out_come_back_from_the_ones_the_service_holds(
        call: ProposeCall | VerifyCall, to_pb: Callable[..., Message], settings: tuple[str, ...],
        travelling: set[str]) -> None:
    held = HeldSettings(settings)
    held.hold(over_the_wire(to_pb(call)))
    later = replace(call, round=call.round + 1, keep_len=call.keep_len + 4, new_tokens=[11, 12], settings_held=True)
    resolved = held.resolve(over_the_wire(to_pb(later)))
    back = messages.propose_call_from_pb(resolved) if isinstance(call, ProposeCall) else \
        messages.verify_call_from_pb(resolved, VOCAB)
    assert without_rows(back) == without_rows(replace(later, settings_held=False))  # as if it carried them
    if isinstance(call, VerifyCall):
        assert same_rows(back.draft_probs, call.draft_probs) and same_rows(back.draft_raw_probs, call.draft_raw_probs)



# ---- a feature head's features ----

def test_a_heads_model_info_round_trips() -> None:
    info = ModelInfo(model="heads/demo", vocab_size=2048, max_context=512, tokenizer_fingerprint="ab12cd",
                     device="cpu", dtype="float32", eos_token_id=0, draft_kind="head", feature_layers=(1, 4, 7),
                     target_fingerprint="0123abcd", model_fingerprint="")
    assert messages.info_from_pb(over_the_wire(messages.info_to_pb(info))) == info


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_features_travel_as_their_own_bytes_with_calls_and_verifications(dtype: torch.dtype) -> None:
    values = torch.randn(3, 10, generator=torch.Generator().manual_seed(0)).to(dtype)
    features = FeatureRows(4, values)
    call = replace(FULL_PROPOSE, features=features)
    back = messages.propose_call_from_pb(over_the_wire(messages.propose_call_to_pb(call)))
    assert torch.equal(back.features.values, values) and back.features.values.dtype == dtype
    assert back.features.start == 4 and replace(back, features=None) == replace(call, features=None)
    message = messages.propose_call_to_pb(call)
    assert len(message.features.data) == 2 * values.numel()  # two bytes a value
    verify = VerifyCall("s", 1, 0, [1, 2], [], SAMPLING, feature_layers=(7, 2))
    assert messages.verify_call_from_pb(over_the_wire(messages.verify_call_to_pb(verify)), VOCAB) == verify
    verification = Verification(target_argmax=[3], target_probs=None, cache_len=2, compute_seconds=0.0,
                                features=FeatureRows(0, values))
    back = messages.verification_from_pb(over_the_wire(messages.verification_to_pb(verification)), WIRE_BYTES)
    assert torch.equal(back.features.values, values) and back.features.start == 0


@pytest.mark.parametrize("spoil, match", [
    (lambda m: setattr(m.features, "dtype", "float32"), "dtype"),
    (lambda m: setattr(m.features, "rows", 4), "rows x width"),
    (lambda m: setattr(m.features, "data", m.features.data[:-1]), "multiple of 2"),
    (lambda m: setattr(m.features, "start", -1), ">= 0"),
], ids=["dtype", "rows", "odd bytes", "negative start"])
def test_malformed_features_are_refused_naming_the_field(spoil, match) -> None:
    message = messages.propose_call_to_pb(replace(FULL_PROPOSE, features=FeatureRows(0, torch.zeros(3, 10).half())))
    spoil(message)
    error = expect_invalid("features", "INVALID_ARGUMENT", lambda: messages.propose_call_from_pb(message))
    assert match in error.reason
