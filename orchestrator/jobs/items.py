"""One batch-job item as wire bytes: validated at submit, run through `Orchestrator.stream`, kept as a
serialized `JobResult`.

The `ItemRunner` of runner.py for the real orchestrator. Knows the GenerateRequest / JobResult messages
and the orchestrator; knows nothing of the journal or of scheduling. A request without a seed gets one
here, at submit, and the journal keeps it: a rerun after a restart reproduces the same output.
"""

from __future__ import annotations

import logging
import secrets

from specdec.errors import InvalidField, ModelServiceError
from specdec.orchestrator.jobs.runner import Outcome
from specdec.orchestrator.serving.conversions import params_from_pb, stats_to_pb
from specdec.orchestrator.serving.core import MAX_SEED, Orchestrator, TextDelta
from specdec.v1 import specdec_pb2 as pb

log = logging.getLogger(__name__)
TRANSIENT_CODES = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")  # a later try may succeed


def with_seed(request: pb.GenerateRequest) -> pb.GenerateRequest:
    """A copy of the request with a seed: its own, or a random one fixed now."""
    kept = pb.GenerateRequest()
    kept.CopyFrom(request)
    if not kept.HasField("seed"):
        kept.seed = secrets.randbelow(MAX_SEED)
    return kept


def failed(result: pb.JobResult, code: str, message: str, transient: bool = False) -> Outcome:
    result.error.code, result.error.message = code, message
    return Outcome(result.SerializeToString(), f"{code}: {message}", transient)


class JobItems:
    def __init__(self, orchestrator: Orchestrator):
        self._orchestrator = orchestrator

    def prepare(self, index: int, request: pb.GenerateRequest) -> bytes:
        kept = with_seed(request)
        try:
            self._orchestrator.prepare(params_from_pb(kept))
        except InvalidField as exc:
            raise exc.within(f"requests[{index}]") from exc
        return kept.SerializeToString(deterministic=True)

    async def run(self, index: int, request: bytes) -> Outcome:
        kept = pb.GenerateRequest.FromString(request)
        result = pb.JobResult(index=index, prompt=kept.prompt)
        try:
            async for event in self._orchestrator.stream(params_from_pb(kept)):
                if isinstance(event, TextDelta):
                    result.completion += event.text
                    result.token_ids.extend(event.token_ids)
                else:
                    result.stats.CopyFrom(stats_to_pb(event))
        except InvalidField as exc:
            return failed(pb.JobResult(index=index, prompt=kept.prompt), exc.code, str(exc),
                          exc.code in TRANSIENT_CODES)
        except ModelServiceError as exc:
            return failed(pb.JobResult(index=index, prompt=kept.prompt), "UNAVAILABLE", exc.summary, transient=True)
        except Exception as exc:  # a fault of this item only; the other items go on
            log.exception("job item %d failed", index)
            return failed(pb.JobResult(index=index, prompt=kept.prompt), "INTERNAL", f"{type(exc).__name__}: {exc}")
        return Outcome(result.SerializeToString())
