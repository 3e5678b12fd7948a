"""Conversions between specdec.v1 messages and the dataclasses of specdec.types.

Thin and symmetric: the services use the *_call_from_pb / *_to_pb pairs, the orchestrator's remote
clients the reverse ones. Decoding checks what a peer could get wrong and raises InvalidField.
"""

from __future__ import annotations

import torch

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
from specdec.wire import encoding
from specdec.wire.held_settings import PROPOSE_SETTINGS, VERIFY_SETTINGS, without_settings


def sampling_from_pb(message: pb.SamplingParams) -> SamplingParams:
    # proto3 cannot tell an unset top_p from 0; 0 is read as "disabled", like 1.
    top_p = 1.0 if message.top_p == 0 else float(message.top_p)
    return SamplingParams(temperature=float(message.temperature), top_k=int(message.top_k), top_p=top_p)


def sampling_to_pb(sampling: SamplingParams) -> pb.SamplingParams:
    return pb.SamplingParams(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)


def info_to_pb(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(model=info.model, vocab_size=info.vocab_size, max_context=info.max_context,
                        tokenizer_fingerprint=info.tokenizer_fingerprint, device=info.device, dtype=info.dtype,
                        eos_token_id=info.eos_token_id, draft_kind=info.draft_kind,
                        feature_layers=info.feature_layers, target_fingerprint=info.target_fingerprint,
                        model_fingerprint=info.model_fingerprint)


def info_from_pb(message: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(model=message.model, vocab_size=message.vocab_size, max_context=message.max_context,
                     tokenizer_fingerprint=message.tokenizer_fingerprint, device=message.device,
                     dtype=message.dtype, eos_token_id=message.eos_token_id,
                     draft_kind=message.draft_kind or "model", feature_layers=tuple(message.feature_layers),
                     target_fingerprint=message.target_fingerprint, model_fingerprint=message.model_fingerprint)


def propose_call_from_pb(message: pb.ProposeRequest) -> ProposeCall:
    return ProposeCall(session_id=message.session_id, round=message.round, keep_len=message.keep_len,
                       new_tokens=list(message.new_tokens), gamma=message.gamma,
                       sampling=sampling_from_pb(message.sampling), seed=message.seed, want_probs=message.want_probs,
                       confidence_threshold=message.confidence_threshold, want_raw_probs=message.want_raw_probs,
                       num_draft_sequences=message.num_draft_sequences or 1,
                       num_alternatives=message.num_alternatives,
                       features=_optional_features(message, "INVALID_ARGUMENT"),
                       lanes=tuple(Lane(lane.keep_len, lane.token) for lane in message.lanes),
                       adopt_lane=message.adopt_lane)


def propose_call_to_pb(call: ProposeCall) -> pb.ProposeRequest:
    message = pb.ProposeRequest(session_id=call.session_id, round=call.round, keep_len=call.keep_len,
                                new_tokens=call.new_tokens, gamma=call.gamma, sampling=sampling_to_pb(call.sampling),
                                seed=call.seed, want_probs=call.want_probs,
                                confidence_threshold=call.confidence_threshold, want_raw_probs=call.want_raw_probs,
                                num_draft_sequences=call.num_draft_sequences, num_alternatives=call.num_alternatives,
                                lanes=[pb.Lane(keep_len=lane.keep_len, token=lane.token) for lane in call.lanes],
                                adopt_lane=call.adopt_lane)
    if call.features is not None:
        message.features.CopyFrom(encoding.encode_features(call.features))
    return without_settings(message, PROPOSE_SETTINGS) if call.settings_held else message


def proposal_to_pb(proposal: Proposal) -> pb.ProposeResponse:
    message = pb.ProposeResponse(draft_tokens=proposal.draft_tokens, cache_len=proposal.cache_len,
                                 compute_seconds=proposal.compute_seconds,
                                 alternative_tokens=proposal.alternative_tokens,
                                 draft_token_probs=proposal.draft_token_probs,
                                 lanes=[proposal_to_pb(lane) for lane in proposal.lanes])
    return _with_draft_rows(message, proposal.draft_probs, proposal.draft_raw_probs)


def proposal_from_pb(message: pb.ProposeResponse, wire_bytes: int, vocab_size: int | None = None) -> Proposal:
    rows = len(message.draft_tokens)
    return Proposal(draft_tokens=list(message.draft_tokens),
                    draft_probs=_optional_top(message, "draft_probs", rows, vocab_size, "INTERNAL"),
                    cache_len=message.cache_len, compute_seconds=message.compute_seconds, wire_bytes=wire_bytes,
                    draft_raw_probs=_optional_top(message, "draft_raw_probs", rows, vocab_size, "INTERNAL"),
                    draft_token_probs=tuple(message.draft_token_probs),
                    alternative_tokens=tuple(message.alternative_tokens),
                    lanes=tuple(proposal_from_pb(lane, 0, vocab_size) for lane in message.lanes))


def statistics_to_pb(spec: StatisticsSpec) -> pb.Statistics:
    return pb.Statistics(recover=spec.recover, entropy=spec.entropy, divergence=spec.divergence,
                         divergence_top_k=spec.divergence_top_k, divergence_on_raw=spec.divergence_on_raw)


def statistics_from_pb(message: pb.Statistics) -> StatisticsSpec:
    try:
        return StatisticsSpec(recover=message.recover, entropy=message.entropy, divergence=message.divergence,
                              divergence_top_k=message.divergence_top_k or 50,
                              divergence_on_raw=message.divergence_on_raw)
    except ValueError as exc:
        field_name, _, detail = str(exc).partition(": ")
        raise InvalidField(f"statistics.{field_name}", detail) from exc


def verify_call_from_pb(message: pb.VerifyRequest, vocab_size: int) -> VerifyCall:
    """Decode a verify request; the draft rows are checked here (shape, vocabulary, normalization)."""
    gamma = len(message.draft_tokens) // (message.num_draft_sequences or 1)
    return VerifyCall(session_id=message.session_id, round=message.round, keep_len=message.keep_len,
                      new_tokens=list(message.new_tokens), draft_tokens=list(message.draft_tokens),
                      sampling=sampling_from_pb(message.sampling), want_probs=message.want_probs,
                      num_draft_sequences=message.num_draft_sequences or 1,
                      statistics=statistics_from_pb(message.statistics),
                      uniforms=tuple(message.uniforms), decode_tokens=message.decode_tokens or 1,
                      draft_probs=_optional_top(message, "draft_probs", gamma, vocab_size, "INVALID_ARGUMENT"),
                      draft_raw_probs=_optional_top(message, "draft_raw_probs", gamma, vocab_size,
                                                    "INVALID_ARGUMENT"),
                      feature_layers=tuple(message.feature_layers))


def verify_call_to_pb(call: VerifyCall) -> pb.VerifyRequest:
    message = pb.VerifyRequest(session_id=call.session_id, round=call.round, keep_len=call.keep_len,
                               new_tokens=call.new_tokens, draft_tokens=call.draft_tokens,
                               sampling=sampling_to_pb(call.sampling), want_probs=call.want_probs,
                               num_draft_sequences=call.num_draft_sequences,
                               statistics=statistics_to_pb(call.statistics),
                               uniforms=call.uniforms, decode_tokens=call.decode_tokens,
                               feature_layers=call.feature_layers)
    if call.settings_held:
        without_settings(message, VERIFY_SETTINGS)
    return _with_draft_rows(message, call.draft_probs, call.draft_raw_probs)


def verification_to_pb(verification: Verification) -> pb.VerifyResponse:
    message = pb.VerifyResponse(target_argmax=verification.target_argmax, cache_len=verification.cache_len,
                                compute_seconds=verification.compute_seconds, batch_size=verification.batch_size,
                                batch_tokens=verification.batch_tokens,
                                decoded_tokens=verification.decoded_tokens)
    if verification.target_probs is not None:
        message.target_probs.CopyFrom(encoding.encode(verification.target_probs))
    if verification.features is not None:
        message.features.CopyFrom(encoding.encode_features(verification.features))
    computed = verification.statistics
    if computed is not None:
        message.statistics.CopyFrom(pb.WindowStatistics(
            target_token_probs=computed.target_token_probs.tolist(), candidates=computed.candidates.tolist(),
            entropies=computed.entropies.tolist(), divergences=computed.divergences.tolist()))
    return message


def verification_from_pb(message: pb.VerifyResponse, wire_bytes: int) -> Verification:
    rows = len(message.target_argmax)
    computed = None
    if message.HasField("statistics"):
        answer = message.statistics
        computed = WindowStatistics(torch.tensor(answer.target_token_probs, dtype=torch.float32),
                                    torch.tensor(answer.candidates, dtype=torch.long),
                                    torch.tensor(answer.entropies, dtype=torch.float32),
                                    torch.tensor(answer.divergences, dtype=torch.float32))
    return Verification(target_argmax=list(message.target_argmax),
                        target_probs=_optional(message, "target_probs", rows), cache_len=message.cache_len,
                        compute_seconds=message.compute_seconds, wire_bytes=wire_bytes, statistics=computed,
                        batch_size=message.batch_size, batch_tokens=message.batch_tokens,
                        decoded_tokens=list(message.decoded_tokens), features=_optional_features(message, "INTERNAL"))


def _with_draft_rows(message, draft_probs: TopRows | None, draft_raw_probs: TopRows | None):
    """`message` with the draft's rows (a propose response, or a verify request forwarding them) set."""
    for field_name, rows in (("draft_probs", draft_probs), ("draft_raw_probs", draft_raw_probs)):
        if rows is not None:
            getattr(message, field_name).CopyFrom(encoding.encode_top(rows))
    return message


def _optional_top(message, field_name: str, rows: int, vocab_size: int | None, code: str) -> TopRows | None:
    if not message.HasField(field_name):
        return None
    try:
        top = encoding.decode_top(getattr(message, field_name), vocab_size)
    except ValueError as exc:
        raise InvalidField(field_name, str(exc), code=code) from exc
    if top.rows != rows:
        raise InvalidField(field_name, f"{top.rows} rows for {rows} draft tokens", code=code)
    return top


def _optional_features(message, code: str) -> FeatureRows | None:
    if not message.HasField("features"):
        return None
    try:
        return encoding.decode_features(message.features)
    except ValueError as exc:
        raise InvalidField("features", str(exc), code=code) from exc


def _optional(message, field_name: str, rows: int):
    return _decode(getattr(message, field_name), rows, field_name) if message.HasField(field_name) else None


def _decode(message: pb.Distributions, rows: int, field_name: str):
    try:
        probs = encoding.decode(message)
    except ValueError as exc:
        raise InvalidField(field_name, str(exc), code="INTERNAL") from exc
    if probs.shape[0] != rows:
        raise InvalidField(field_name, f"{probs.shape[0]} rows for {rows} tokens", code="INTERNAL")
    return probs
