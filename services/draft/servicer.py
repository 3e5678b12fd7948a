"""DraftService over gRPC: a thin adapter, message -> dataclass -> DraftRunner -> message."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc

from specdec.errors import InvalidField
from specdec.net.rpc import abort_on_bad_input
from specdec.services.draft.runner import DraftRunner
from specdec.services.head.checkpoint import is_head
from specdec.services.head.runner import HeadDraftRunner, check_head_features
from specdec.services.head.session_lm import HeadLM
from specdec.services.runtime.batcher import MAX_BATCH_TOKENS, Batcher
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.runtime.model_servicer import ModelServicerBase
from specdec.services.runtime.service_actor import ModelServiceActor
from specdec.types import ProposeCall
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from specdec.wire import messages
from specdec.wire.held_settings import PROPOSE_SETTINGS
from specdec.wire.validation import check_fraction, check_range, check_sampling, check_token_ids

MAX_GAMMA = 64
MAX_DRAFT_SEQUENCES = 16
MAX_LANES = 32  # speculation lanes of one call
MAX_ALTERNATIVES = 16  # alternative tokens a draft position


class DraftServicer(ModelServicerBase, pb_grpc.DraftServiceServicer):
    settings_fields = PROPOSE_SETTINGS
    def __init__(self, lm: CausalLM | HeadLM, executor: ThreadPoolExecutor, max_batch: int = 64,
                 max_batch_tokens: int = MAX_BATCH_TOKENS):
        super().__init__(lm, executor, max_batch)
        runner = (HeadDraftRunner(lm) if isinstance(lm, HeadLM) else
                  DraftRunner(lm, max_batch_tokens=max_batch_tokens))
        self.batcher = Batcher(runner.propose_batch, executor, max_batch)

    @abort_on_bad_input
    async def Propose(self, request: pb.ProposeRequest, context: grpc.aio.ServicerContext) -> pb.ProposeResponse:
        return await self.propose(request)

    async def ProposeStream(self, calls, context: grpc.aio.ServicerContext) -> None:
        await self.serve_stream(calls, context, self.propose, pb.ProposeResultEnvelope)

    async def propose(self, request: pb.ProposeRequest) -> pb.ProposeResponse:
        """Check a propose request and answer it once per (session, round); raises InvalidField / SessionError."""
        call = messages.propose_call_from_pb(self.settings.resolve(request))
        self.check_session_call(call.session_id, call.keep_len)
        check_range("gamma", call.gamma, 1, MAX_GAMMA)
        check_range("num_draft_sequences", call.num_draft_sequences, 1, MAX_DRAFT_SEQUENCES)
        check_sampling(call.sampling, self._lm.vocab_size)
        check_fraction("confidence_threshold", call.confidence_threshold)
        check_token_ids("new_tokens", call.new_tokens, self._lm.vocab_size)
        check_range("num_alternatives", call.num_alternatives, 0, MAX_ALTERNATIVES)
        check_lanes(call, self._lm.vocab_size)
        if isinstance(self._lm, HeadLM):
            check_head_features(call, self._lm.feature_width)
        elif call.features is not None:
            raise InvalidField("features", "this draft is a model of its own, not a feature head: it takes no features")
        self.settings.hold(request)
        return await self.rounds.answer(call.session_id, call.round, request, lambda: self._propose(call))

    async def _propose(self, call: ProposeCall) -> pb.ProposeResponse:
        return messages.proposal_to_pb(await self.batcher.submit(call))


def check_lanes(call: ProposeCall, vocab_size: int) -> None:
    """Raise InvalidField naming `lanes` for lanes no draft can run: too many, with several draft sequences, or
    with tokens outside the vocabulary (whether they fit the session is the runner's check); naming
    `adopt_lane` for a lane adopted by a call without lanes."""
    check_range("adopt_lane", call.adopt_lane, 0, MAX_LANES)
    if call.adopt_lane and not call.lanes:
        raise InvalidField("adopt_lane", "only a call with lanes adopts one of its session's lanes")
    if not call.lanes:
        return
    if len(call.lanes) > MAX_LANES:
        raise InvalidField("lanes", f"at most {MAX_LANES} lanes a call, got {len(call.lanes)}")
    if call.num_draft_sequences > 1:
        raise InvalidField("lanes", "speculation lanes draft one sequence each: num_draft_sequences must be 1")
    check_token_ids("lanes", [lane.token for lane in call.lanes], vocab_size)


class DraftServiceActor(ModelServiceActor):
    service_name = "specdec.v1.DraftService"
    role = "draft"

    def __init__(self, spec: LoadSpec, *args, **kwargs):
        if spec.kind == "auto":  # a feature head where the draft's folder holds one
            spec = replace(spec, kind="head" if is_head(spec.model) else "model")
        super().__init__(spec, *args, **kwargs)

    def load(self, spec: LoadSpec, max_sessions: int) -> CausalLM | HeadLM:
        return HeadLM(spec, max_sessions) if spec.kind == "head" else CausalLM(spec, max_sessions)

    def register(self, server: grpc.aio.Server, lm: CausalLM, executor: ThreadPoolExecutor) -> DraftServicer:
        servicer = DraftServicer(lm, executor, self.max_batch, self.max_batch_tokens)
        pb_grpc.add_DraftServiceServicer_to_server(servicer, server)
        return servicer
