"""TargetService over gRPC: a thin adapter, message -> dataclass -> TargetRunner -> message."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import InvalidField
from specdec.net.rpc import abort_on_bad_input
from specdec.services.runtime.batcher import MAX_BATCH_TOKENS, Batcher
from specdec.services.runtime.model import CausalLM
from specdec.services.runtime.model_servicer import ModelServicerBase
from specdec.services.runtime.service_actor import ModelServiceActor
from specdec.services.target.runner import TargetRunner
from specdec.types import VerifyCall
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from specdec.wire import messages
from specdec.wire.held_settings import VERIFY_SETTINGS
from specdec.wire.validation import check_range, check_sampling, check_token_ids

MAX_DRAFT_TOKENS = 256
MAX_DRAFT_SEQUENCES = 16
MAX_DECODE_TOKENS = 64


class TargetServicer(ModelServicerBase, pb_grpc.TargetServiceServicer):
    settings_fields = VERIFY_SETTINGS
    def __init__(self, lm: CausalLM, executor: ThreadPoolExecutor, max_batch: int = 64,
                 max_batch_tokens: int = MAX_BATCH_TOKENS):
        super().__init__(lm, executor, max_batch)
        self.batcher = Batcher(TargetRunner(lm, max_batch_tokens).verify_batch, executor, max_batch)

    @abort_on_bad_input
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext) -> pb.VerifyResponse:
        return await self.verify(request)

    async def VerifyStream(self, calls, context: grpc.aio.ServicerContext) -> None:
        await self.serve_stream(calls, context, self.verify, pb.VerifyResultEnvelope)

    async def verify(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        """Check a verify request and answer it once per (session, round); raises InvalidField / SessionError."""
        call = messages.verify_call_from_pb(self.settings.resolve(request), self._lm.vocab_size)
        self.check_session_call(call.session_id, call.keep_len)
        if len(call.draft_tokens) > MAX_DRAFT_TOKENS:
            raise InvalidField("draft_tokens", f"at most {MAX_DRAFT_TOKENS} per call, got {len(call.draft_tokens)}")
        check_range("num_draft_sequences", call.num_draft_sequences, 1, MAX_DRAFT_SEQUENCES)
        if len(call.draft_tokens) % call.num_draft_sequences:
            raise InvalidField("draft_tokens", f"{len(call.draft_tokens)} tokens do not split into "
                                               f"{call.num_draft_sequences} equal windows")
        check_range("decode_tokens", call.decode_tokens, 1, MAX_DECODE_TOKENS)
        if call.decode_tokens > 1 and (call.draft_tokens or call.want_probs):
            raise InvalidField("decode_tokens", "a decoded run takes no draft tokens and returns no whole rows")
        check_sampling(call.sampling, self._lm.vocab_size)
        check_token_ids("new_tokens", call.new_tokens, self._lm.vocab_size)
        check_token_ids("draft_tokens", call.draft_tokens, self._lm.vocab_size)
        check_statistics(call)
        check_feature_layers(call, self._lm.model.config.num_hidden_layers)
        self.settings.hold(request)
        return await self.rounds.answer(call.session_id, call.round, request, lambda: self._verify(call))

    async def _verify(self, call: VerifyCall) -> pb.VerifyResponse:
        return messages.verification_to_pb(await self.batcher.submit(call))


class TargetServiceActor(ModelServiceActor):
    service_name = "specdec.v1.TargetService"
    role = "target"

    def register(self, server: grpc.aio.Server, lm: CausalLM, executor: ThreadPoolExecutor) -> TargetServicer:
        servicer = TargetServicer(lm, executor, self.max_batch, self.max_batch_tokens)
        pb_grpc.add_TargetServiceServicer_to_server(servicer, server)
        return servicer


def check_statistics(call: VerifyCall) -> None:
    """The statistics a call asks for must come with what they are computed from."""
    spec = call.statistics
    if spec == StatisticsSpec():
        return
    gamma = len(call.draft_tokens)
    if call.num_draft_sequences > 1:
        raise InvalidField("statistics", "computed for one window only; several windows get whole rows")
    if spec.recover:
        if len(call.uniforms) != call.positions:
            raise InvalidField("uniforms", f"need {call.positions} (one per position) with statistics.recover, "
                                           f"got {len(call.uniforms)}")
        if not all(0.0 <= u < 1.0 for u in call.uniforms):
            raise InvalidField("uniforms", "must be in [0, 1)")
    if spec.needs_draft_rows and gamma and call.draft_probs is None:
        raise InvalidField("draft_probs", f"statistics ({spec.recover or spec.divergence}) need the draft's rows")


def check_feature_layers(call: VerifyCall, num_layers: int) -> None:
    """Features come from distinct decoder layers of this model, for one window."""
    layers = call.feature_layers
    if not layers:
        return
    if len(set(layers)) != len(layers) or not all(0 <= layer < num_layers for layer in layers):
        raise InvalidField("feature_layers", f"must be distinct decoder layers of the target, 0..{num_layers - 1}, "
                                             f"got {list(layers)}")
    if call.num_draft_sequences > 1:
        raise InvalidField("feature_layers", "features are returned for one window only")
