"""Conversions between specdec.v1 messages and the dataclasses of specdec.types.

Thin and symmetric: the services use the *_call_from_pb / *_to_pb pairs, the orchestrator's remote
clients the reverse ones. Decoding checks what a peer could get wrong and raises InvalidField.
"""

from __future__ import annotations

from specdec.runtime import wire
from specdec.runtime.validation import InvalidField
from specdec.types import ModelInfo, Proposal, ProposeCall, SamplingParams, Verification, VerifyCall
from specdec.v1 import specdec_pb2 as pb


def sampling_from_pb(message: pb.SamplingParams) -> SamplingParams:
    # proto3 cannot tell an unset top_p from 0; 0 is read as "disabled", like 1.
    top_p = 1.0 if message.top_p == 0 else float(message.top_p)
    return SamplingParams(temperature=float(message.temperature), top_k=int(message.top_k), top_p=top_p)


def sampling_to_pb(sampling: SamplingParams) -> pb.SamplingParams:
    return pb.SamplingParams(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)


def info_to_pb(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(model=info.model, vocab_size=info.vocab_size, max_context=info.max_context,
                        tokenizer_fingerprint=info.tokenizer_fingerprint, device=info.device, dtype=info.dtype,
                        eos_token_id=info.eos_token_id)


def info_from_pb(message: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(model=message.model, vocab_size=message.vocab_size, max_context=message.max_context,
                     tokenizer_fingerprint=message.tokenizer_fingerprint, device=message.device,
                     dtype=message.dtype, eos_token_id=message.eos_token_id)


def propose_call_from_pb(message: pb.ProposeRequest) -> ProposeCall:
    return ProposeCall(session_id=message.session_id, round=message.round, keep_len=message.keep_len,
                       new_tokens=list(message.new_tokens), gamma=message.gamma,
                       sampling=sampling_from_pb(message.sampling), seed=message.seed, want_probs=message.want_probs,
                       confidence_threshold=message.confidence_threshold, want_raw_probs=message.want_raw_probs,
                       num_drafts=message.num_drafts or 1)


def propose_call_to_pb(call: ProposeCall) -> pb.ProposeRequest:
    return pb.ProposeRequest(session_id=call.session_id, round=call.round, keep_len=call.keep_len,
                             new_tokens=call.new_tokens, gamma=call.gamma, sampling=sampling_to_pb(call.sampling),
                             seed=call.seed, want_probs=call.want_probs,
                             confidence_threshold=call.confidence_threshold, want_raw_probs=call.want_raw_probs,
                             num_drafts=call.num_drafts)


def proposal_to_pb(proposal: Proposal) -> pb.ProposeResponse:
    message = pb.ProposeResponse(draft_tokens=proposal.draft_tokens, cache_len=proposal.cache_len,
                                 compute_seconds=proposal.compute_seconds,
                                 alternative_tokens=proposal.alternative_tokens)
    if proposal.draft_probs is not None:
        message.draft_probs.CopyFrom(wire.encode(proposal.draft_probs))
    if proposal.draft_raw_probs is not None:
        message.draft_raw_probs.CopyFrom(wire.encode(proposal.draft_raw_probs))
    return message


def proposal_from_pb(message: pb.ProposeResponse, wire_bytes: int) -> Proposal:
    rows = len(message.draft_tokens)
    return Proposal(draft_tokens=list(message.draft_tokens), draft_probs=_optional(message, "draft_probs", rows),
                    cache_len=message.cache_len, compute_seconds=message.compute_seconds, wire_bytes=wire_bytes,
                    draft_raw_probs=_optional(message, "draft_raw_probs", rows),
                    alternative_tokens=tuple(message.alternative_tokens))


def verify_call_from_pb(message: pb.VerifyRequest) -> VerifyCall:
    return VerifyCall(session_id=message.session_id, round=message.round, keep_len=message.keep_len,
                      new_tokens=list(message.new_tokens), draft_tokens=list(message.draft_tokens),
                      sampling=sampling_from_pb(message.sampling), want_probs=message.want_probs,
                      want_raw_probs=message.want_raw_probs, num_drafts=message.num_drafts or 1)


def verify_call_to_pb(call: VerifyCall) -> pb.VerifyRequest:
    return pb.VerifyRequest(session_id=call.session_id, round=call.round, keep_len=call.keep_len,
                            new_tokens=call.new_tokens, draft_tokens=call.draft_tokens,
                            sampling=sampling_to_pb(call.sampling), want_probs=call.want_probs,
                            want_raw_probs=call.want_raw_probs, num_drafts=call.num_drafts)


def verification_to_pb(verification: Verification) -> pb.VerifyResponse:
    message = pb.VerifyResponse(target_argmax=verification.target_argmax, cache_len=verification.cache_len,
                                compute_seconds=verification.compute_seconds, batch_size=verification.batch_size,
                                batch_tokens=verification.batch_tokens)
    if verification.target_probs is not None:
        message.target_probs.CopyFrom(wire.encode(verification.target_probs))
    if verification.target_raw_probs is not None:
        message.target_raw_probs.CopyFrom(wire.encode(verification.target_raw_probs))
    return message


def verification_from_pb(message: pb.VerifyResponse, wire_bytes: int) -> Verification:
    rows = len(message.target_argmax)
    return Verification(target_argmax=list(message.target_argmax),
                        target_probs=_optional(message, "target_probs", rows), cache_len=message.cache_len,
                        compute_seconds=message.compute_seconds, wire_bytes=wire_bytes,
                        target_raw_probs=_optional(message, "target_raw_probs", rows),
                        batch_size=message.batch_size, batch_tokens=message.batch_tokens)


def _optional(message, field_name: str, rows: int):
    return _decode(getattr(message, field_name), rows, field_name) if message.HasField(field_name) else None


def _decode(message: pb.Distributions, rows: int, field_name: str):
    try:
        probs = wire.decode(message)
    except ValueError as exc:
        raise InvalidField(field_name, str(exc), code="INTERNAL") from exc
    if probs.shape[0] != rows:
        raise InvalidField(field_name, f"{probs.shape[0]} rows for {rows} tokens", code="INTERNAL")
    return probs
