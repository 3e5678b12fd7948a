from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ...) -> None: ...

class Distributions(_message.Message):
    __slots__ = ("encoding", "rows", "vocab_size", "values", "indices", "row_lengths")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[Distributions.Encoding]
        DENSE_FP16: _ClassVar[Distributions.Encoding]
        SPARSE_FP16: _ClassVar[Distributions.Encoding]
    ENCODING_UNSPECIFIED: Distributions.Encoding
    DENSE_FP16: Distributions.Encoding
    SPARSE_FP16: Distributions.Encoding
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    ROW_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    encoding: Distributions.Encoding
    rows: int
    vocab_size: int
    values: bytes
    indices: bytes
    row_lengths: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, encoding: _Optional[_Union[Distributions.Encoding, str]] = ..., rows: _Optional[int] = ..., vocab_size: _Optional[int] = ..., values: _Optional[bytes] = ..., indices: _Optional[bytes] = ..., row_lengths: _Optional[_Iterable[int]] = ...) -> None: ...

class TopDistributions(_message.Message):
    __slots__ = ("rows", "k", "vocab_size", "indices", "values")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    rows: int
    k: int
    vocab_size: int
    indices: bytes
    values: bytes
    def __init__(self, rows: _Optional[int] = ..., k: _Optional[int] = ..., vocab_size: _Optional[int] = ..., indices: _Optional[bytes] = ..., values: _Optional[bytes] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("recover", "entropy", "divergence", "divergence_top_k", "divergence_on_raw")
    RECOVER_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_TOP_K_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_ON_RAW_FIELD_NUMBER: _ClassVar[int]
    recover: str
    entropy: bool
    divergence: str
    divergence_top_k: int
    divergence_on_raw: bool
    def __init__(self, recover: _Optional[str] = ..., entropy: _Optional[bool] = ..., divergence: _Optional[str] = ..., divergence_top_k: _Optional[int] = ..., divergence_on_raw: _Optional[bool] = ...) -> None: ...

class WindowStatistics(_message.Message):
    __slots__ = ("target_token_probs", "candidates", "entropies", "divergences")
    TARGET_TOKEN_PROBS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ENTROPIES_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCES_FIELD_NUMBER: _ClassVar[int]
    target_token_probs: _containers.RepeatedScalarFieldContainer[float]
    candidates: _containers.RepeatedScalarFieldContainer[int]
    entropies: _containers.RepeatedScalarFieldContainer[float]
    divergences: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, target_token_probs: _Optional[_Iterable[float]] = ..., candidates: _Optional[_Iterable[int]] = ..., entropies: _Optional[_Iterable[float]] = ..., divergences: _Optional[_Iterable[float]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "vocab_size", "max_context", "tokenizer_fingerprint", "device", "dtype", "eos_token_id", "draft_kind", "feature_layers", "target_fingerprint", "model_fingerprint")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    DRAFT_KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    model: str
    vocab_size: int
    max_context: int
    tokenizer_fingerprint: str
    device: str
    dtype: str
    eos_token_id: int
    draft_kind: str
    feature_layers: _containers.RepeatedScalarFieldContainer[int]
    target_fingerprint: str
    model_fingerprint: str
    def __init__(self, model: _Optional[str] = ..., vocab_size: _Optional[int] = ..., max_context: _Optional[int] = ..., tokenizer_fingerprint: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., eos_token_id: _Optional[int] = ..., draft_kind: _Optional[str] = ..., feature_layers: _Optional[_Iterable[int]] = ..., target_fingerprint: _Optional[str] = ..., model_fingerprint: _Optional[str] = ...) -> None: ...

class Features(_message.Message):
    __slots__ = ("start", "rows", "width", "dtype", "data")
    START_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    start: int
    rows: int
    width: int
    dtype: str
    data: bytes
    def __init__(self, start: _Optional[int] = ..., rows: _Optional[int] = ..., width: _Optional[int] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProposeRequest(_message.Message):
    __slots__ = ("session_id", "round", "keep_len", "new_tokens", "gamma", "sampling", "seed", "want_probs", "confidence_threshold", "want_raw_probs", "num_draft_sequences", "settings_held", "features", "num_alternatives", "lanes", "adopt_lane")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEEP_LEN_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WANT_PROBS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WANT_RAW_PROBS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_HELD_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    NUM_ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    ADOPT_LANE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    keep_len: int
    new_tokens: _containers.RepeatedScalarFieldContainer[int]
    gamma: int
    sampling: SamplingParams
    seed: int
    want_probs: bool
    confidence_threshold: float
    want_raw_probs: bool
    num_draft_sequences: int
    settings_held: bool
    features: Features
    num_alternatives: int
    lanes: _containers.RepeatedCompositeFieldContainer[Lane]
    adopt_lane: int
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., keep_len: _Optional[int] = ..., new_tokens: _Optional[_Iterable[int]] = ..., gamma: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., seed: _Optional[int] = ..., want_probs: _Optional[bool] = ..., confidence_threshold: _Optional[float] = ..., want_raw_probs: _Optional[bool] = ..., num_draft_sequences: _Optional[int] = ..., settings_held: _Optional[bool] = ..., features: _Optional[_Union[Features, _Mapping]] = ..., num_alternatives: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[Lane, _Mapping]]] = ..., adopt_lane: _Optional[int] = ...) -> None: ...

class Lane(_message.Message):
    __slots__ = ("keep_len", "token")
    KEEP_LEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    keep_len: int
    token: int
    def __init__(self, keep_len: _Optional[int] = ..., token: _Optional[int] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("draft_tokens", "cache_len", "compute_seconds", "draft_probs", "draft_raw_probs", "draft_token_probs", "alternative_tokens", "lanes")
    DRAFT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_LEN_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_PROBS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_RAW_PROBS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_TOKEN_PROBS_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    draft_tokens: _containers.RepeatedScalarFieldContainer[int]
    cache_len: int
    compute_seconds: float
    draft_probs: TopDistributions
    draft_raw_probs: TopDistributions
    draft_token_probs: _containers.RepeatedScalarFieldContainer[float]
    alternative_tokens: _containers.RepeatedScalarFieldContainer[int]
    lanes: _containers.RepeatedCompositeFieldContainer[ProposeResponse]
    def __init__(self, draft_tokens: _Optional[_Iterable[int]] = ..., cache_len: _Optional[int] = ..., compute_seconds: _Optional[float] = ..., draft_probs: _Optional[_Union[TopDistributions, _Mapping]] = ..., draft_raw_probs: _Optional[_Union[TopDistributions, _Mapping]] = ..., draft_token_probs: _Optional[_Iterable[float]] = ..., alternative_tokens: _Optional[_Iterable[int]] = ..., lanes: _Optional[_Iterable[_Union[ProposeResponse, _Mapping]]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("session_id", "round", "keep_len", "new_tokens", "draft_tokens", "sampling", "want_probs", "num_draft_sequences", "statistics", "uniforms", "draft_probs", "draft_raw_probs", "decode_tokens", "settings_held", "feature_layers")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KEEP_LEN_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    WANT_PROBS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    UNIFORMS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_PROBS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_RAW_PROBS_FIELD_NUMBER: _ClassVar[int]
    DECODE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_HELD_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    keep_len: int
    new_tokens: _containers.RepeatedScalarFieldContainer[int]
    draft_tokens: _containers.RepeatedScalarFieldContainer[int]
    sampling: SamplingParams
    want_probs: bool
    num_draft_sequences: int
    statistics: Statistics
    uniforms: _containers.RepeatedScalarFieldContainer[float]
    draft_probs: TopDistributions
    draft_raw_probs: TopDistributions
    decode_tokens: int
    settings_held: bool
    feature_layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., keep_len: _Optional[int] = ..., new_tokens: _Optional[_Iterable[int]] = ..., draft_tokens: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., want_probs: _Optional[bool] = ..., num_draft_sequences: _Optional[int] = ..., statistics: _Optional[_Union[Statistics, _Mapping]] = ..., uniforms: _Optional[_Iterable[float]] = ..., draft_probs: _Optional[_Union[TopDistributions, _Mapping]] = ..., draft_raw_probs: _Optional[_Union[TopDistributions, _Mapping]] = ..., decode_tokens: _Optional[int] = ..., settings_held: _Optional[bool] = ..., feature_layers: _Optional[_Iterable[int]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("target_probs", "target_argmax", "cache_len", "compute_seconds", "statistics", "batch_size", "batch_tokens", "decoded_tokens", "features")
    TARGET_PROBS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ARGMAX_FIELD_NUMBER: _ClassVar[int]
    CACHE_LEN_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DECODED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    target_probs: Distributions
    target_argmax: _containers.RepeatedScalarFieldContainer[int]
    cache_len: int
    compute_seconds: float
    statistics: WindowStatistics
    batch_size: int
    batch_tokens: int
    decoded_tokens: _containers.RepeatedScalarFieldContainer[int]
    features: Features
    def __init__(self, target_probs: _Optional[_Union[Distributions, _Mapping]] = ..., target_argmax: _Optional[_Iterable[int]] = ..., cache_len: _Optional[int] = ..., compute_seconds: _Optional[float] = ..., statistics: _Optional[_Union[WindowStatistics, _Mapping]] = ..., batch_size: _Optional[int] = ..., batch_tokens: _Optional[int] = ..., decoded_tokens: _Optional[_Iterable[int]] = ..., features: _Optional[_Union[Features, _Mapping]] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ProposeCallEnvelope(_message.Message):
    __slots__ = ("call_id", "request")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    request: ProposeRequest
    def __init__(self, call_id: _Optional[int] = ..., request: _Optional[_Union[ProposeRequest, _Mapping]] = ...) -> None: ...

class ProposeResultEnvelope(_message.Message):
    __slots__ = ("call_id", "response", "error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    response: ProposeResponse
    error: CallError
    def __init__(self, call_id: _Optional[int] = ..., response: _Optional[_Union[ProposeResponse, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ...) -> None: ...

class VerifyCallEnvelope(_message.Message):
    __slots__ = ("call_id", "request")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    request: VerifyRequest
    def __init__(self, call_id: _Optional[int] = ..., request: _Optional[_Union[VerifyRequest, _Mapping]] = ...) -> None: ...

class VerifyResultEnvelope(_message.Message):
    __slots__ = ("call_id", "response", "error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    response: VerifyResponse
    error: CallError
    def __init__(self, call_id: _Optional[int] = ..., response: _Optional[_Union[VerifyResponse, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class RuleParams(_message.Message):
    __slots__ = ("threshold", "divergence", "divergence_top_k", "divergence_on_warped", "epsilon", "delta")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_TOP_K_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_ON_WARPED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    divergence: str
    divergence_top_k: int
    divergence_on_warped: bool
    epsilon: float
    delta: float
    def __init__(self, threshold: _Optional[float] = ..., divergence: _Optional[str] = ..., divergence_top_k: _Optional[int] = ..., divergence_on_warped: _Optional[bool] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class ControllerParams(_message.Message):
    __slots__ = ("gamma_max", "gamma_min", "eta", "delta", "confidence_threshold", "smoothing", "probe_every")
    GAMMA_MAX_FIELD_NUMBER: _ClassVar[int]
    GAMMA_MIN_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    PROBE_EVERY_FIELD_NUMBER: _ClassVar[int]
    gamma_max: int
    gamma_min: int
    eta: float
    delta: int
    confidence_threshold: float
    smoothing: float
    probe_every: int
    def __init__(self, gamma_max: _Optional[int] = ..., gamma_min: _Optional[int] = ..., eta: _Optional[float] = ..., delta: _Optional[int] = ..., confidence_threshold: _Optional[float] = ..., smoothing: _Optional[float] = ..., probe_every: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "max_new_tokens", "sampling", "rule", "gamma", "seed", "ignore_eos", "rule_params", "gamma_controller", "controller_params", "num_draft_sequences", "overlap", "speculation_lanes")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IGNORE_EOS_FIELD_NUMBER: _ClassVar[int]
    RULE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    GAMMA_CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_PARAMS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    SPECULATION_LANES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    max_new_tokens: int
    sampling: SamplingParams
    rule: str
    gamma: int
    seed: int
    ignore_eos: bool
    rule_params: RuleParams
    gamma_controller: str
    controller_params: ControllerParams
    num_draft_sequences: int
    overlap: bool
    speculation_lanes: int
    def __init__(self, prompt: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., rule: _Optional[str] = ..., gamma: _Optional[int] = ..., seed: _Optional[int] = ..., ignore_eos: _Optional[bool] = ..., rule_params: _Optional[_Union[RuleParams, _Mapping]] = ..., gamma_controller: _Optional[str] = ..., controller_params: _Optional[_Union[ControllerParams, _Mapping]] = ..., num_draft_sequences: _Optional[int] = ..., overlap: _Optional[bool] = ..., speculation_lanes: _Optional[int] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text", "token_ids")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RequestStats(_message.Message):
    __slots__ = ("request_id", "prompt_tokens", "output_tokens", "finish_reason", "num_drafts", "num_draft_tokens", "num_accepted_tokens", "num_accepted_tokens_per_pos", "acceptance_rate", "mean_acceptance_length", "tokens_per_second", "seconds", "num_rounds", "draft_seconds", "verify_seconds", "num_draft_forwards", "num_verify_forwards", "rule", "gamma", "wire_bytes", "gamma_controller", "gamma_trace", "measured_c", "num_draft_sequences", "overlap", "speculation_lanes", "num_pre_drafted", "num_lane_hits", "num_lane_draft_tokens", "num_draft_faults", "num_target_faults", "num_target_only_rounds", "draft_call_seconds", "verify_call_seconds", "wait_seconds", "feature_bytes", "num_outcomes_per_accepted", "num_outcome_hits_per_accepted")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_ACCEPTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_ACCEPTED_TOKENS_PER_POS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_ACCEPTANCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NUM_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_FORWARDS_FIELD_NUMBER: _ClassVar[int]
    NUM_VERIFY_FORWARDS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    WIRE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GAMMA_CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    GAMMA_TRACE_FIELD_NUMBER: _ClassVar[int]
    MEASURED_C_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    SPECULATION_LANES_FIELD_NUMBER: _ClassVar[int]
    NUM_PRE_DRAFTED_FIELD_NUMBER: _ClassVar[int]
    NUM_LANE_HITS_FIELD_NUMBER: _ClassVar[int]
    NUM_LANE_DRAFT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_DRAFT_FAULTS_FIELD_NUMBER: _ClassVar[int]
    NUM_TARGET_FAULTS_FIELD_NUMBER: _ClassVar[int]
    NUM_TARGET_ONLY_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DRAFT_CALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_CALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_OUTCOMES_PER_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    NUM_OUTCOME_HITS_PER_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    num_accepted_tokens_per_pos: _containers.RepeatedScalarFieldContainer[int]
    acceptance_rate: float
    mean_acceptance_length: float
    tokens_per_second: float
    seconds: float
    num_rounds: int
    draft_seconds: float
    verify_seconds: float
    num_draft_forwards: int
    num_verify_forwards: int
    rule: str
    gamma: int
    wire_bytes: int
    gamma_controller: str
    gamma_trace: _containers.RepeatedScalarFieldContainer[int]
    measured_c: float
    num_draft_sequences: int
    overlap: bool
    speculation_lanes: int
    num_pre_drafted: int
    num_lane_hits: int
    num_lane_draft_tokens: int
    num_draft_faults: int
    num_target_faults: int
    num_target_only_rounds: int
    draft_call_seconds: float
    verify_call_seconds: float
    wait_seconds: float
    feature_bytes: int
    num_outcomes_per_accepted: _containers.RepeatedScalarFieldContainer[int]
    num_outcome_hits_per_accepted: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request_id: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., finish_reason: _Optional[str] = ..., num_drafts: _Optional[int] = ..., num_draft_tokens: _Optional[int] = ..., num_accepted_tokens: _Optional[int] = ..., num_accepted_tokens_per_pos: _Optional[_Iterable[int]] = ..., acceptance_rate: _Optional[float] = ..., mean_acceptance_length: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., seconds: _Optional[float] = ..., num_rounds: _Optional[int] = ..., draft_seconds: _Optional[float] = ..., verify_seconds: _Optional[float] = ..., num_draft_forwards: _Optional[int] = ..., num_verify_forwards: _Optional[int] = ..., rule: _Optional[str] = ..., gamma: _Optional[int] = ..., wire_bytes: _Optional[int] = ..., gamma_controller: _Optional[str] = ..., gamma_trace: _Optional[_Iterable[int]] = ..., measured_c: _Optional[float] = ..., num_draft_sequences: _Optional[int] = ..., overlap: _Optional[bool] = ..., speculation_lanes: _Optional[int] = ..., num_pre_drafted: _Optional[int] = ..., num_lane_hits: _Optional[int] = ..., num_lane_draft_tokens: _Optional[int] = ..., num_draft_faults: _Optional[int] = ..., num_target_faults: _Optional[int] = ..., num_target_only_rounds: _Optional[int] = ..., draft_call_seconds: _Optional[float] = ..., verify_call_seconds: _Optional[float] = ..., wait_seconds: _Optional[float] = ..., feature_bytes: _Optional[int] = ..., num_outcomes_per_accepted: _Optional[_Iterable[int]] = ..., num_outcome_hits_per_accepted: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("delta", "stats")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    delta: TextDelta
    stats: RequestStats
    def __init__(self, delta: _Optional[_Union[TextDelta, _Mapping]] = ..., stats: _Optional[_Union[RequestStats, _Mapping]] = ...) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("draft", "target", "default_rule", "default_gamma", "max_new_tokens_limit", "max_gamma")
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RULE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_GAMMA_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_GAMMA_FIELD_NUMBER: _ClassVar[int]
    draft: ModelInfo
    target: ModelInfo
    default_rule: str
    default_gamma: int
    max_new_tokens_limit: int
    max_gamma: int
    def __init__(self, draft: _Optional[_Union[ModelInfo, _Mapping]] = ..., target: _Optional[_Union[ModelInfo, _Mapping]] = ..., default_rule: _Optional[str] = ..., default_gamma: _Optional[int] = ..., max_new_tokens_limit: _Optional[int] = ..., max_gamma: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("requests", "name")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[GenerateRequest]
    name: str
    def __init__(self, requests: _Optional[_Iterable[_Union[GenerateRequest, _Mapping]]] = ..., name: _Optional[str] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "name", "state", "total", "done", "failed", "created_at", "finished_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: str
    total: int
    done: int
    failed: int
    created_at: float
    finished_at: float
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., total: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., created_at: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("index", "prompt", "completion", "token_ids", "stats", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    prompt: str
    completion: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    stats: RequestStats
    error: ItemError
    def __init__(self, index: _Optional[int] = ..., prompt: _Optional[str] = ..., completion: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., stats: _Optional[_Union[RequestStats, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...
