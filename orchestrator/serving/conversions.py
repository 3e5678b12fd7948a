"""The orchestrator's API messages and its own types, converted both ways: a GenerateRequest to the request
core's parameters, statistics, jobs and job results to messages. Used by the gRPC servicer and by the batch
jobs (which keep GenerateRequest messages in their journal); pure functions, no gRPC calls.
"""

from __future__ import annotations

from specdec.orchestrator.controllers import ControllerParams
from specdec.orchestrator.jobs.journal import FinishedItem, JobRecord
from specdec.orchestrator.round.stats import RequestStats
from specdec.orchestrator.rules import RuleParams
from specdec.orchestrator.serving.core import GenerateParams
from specdec.v1 import specdec_pb2 as pb
from specdec.wire import messages


def _present(message) -> dict:
    """The fields of a message that are set (optional scalars) or non-default (plain scalars)."""
    return {descriptor.name: value for descriptor, value in message.ListFields()}


def params_from_pb(request: pb.GenerateRequest) -> GenerateParams:
    return GenerateParams(
        prompt=request.prompt,
        max_new_tokens=request.max_new_tokens or None,
        sampling=messages.sampling_from_pb(request.sampling),
        rule=request.rule or None,
        gamma=request.gamma if request.HasField("gamma") else None,
        seed=request.seed if request.HasField("seed") else None,
        ignore_eos=request.ignore_eos,
        rule_params=RuleParams(**_present(request.rule_params)),
        gamma_controller=request.gamma_controller or None,
        controller_params=ControllerParams(**_present(request.controller_params)),
        num_draft_sequences=request.num_draft_sequences or None,
        overlap=request.overlap if request.HasField("overlap") else None,
        speculation_lanes=request.speculation_lanes if request.HasField("speculation_lanes") else None,
    )


def stats_to_pb(stats: RequestStats) -> pb.RequestStats:
    """Every field of the message from the attribute of the same name (a counter or a derived rate)."""
    return pb.RequestStats(**{f.name: getattr(stats, f.name) for f in pb.RequestStats.DESCRIPTOR.fields})


def job_to_pb(record: JobRecord) -> pb.JobStatus:
    return pb.JobStatus(job_id=record.job_id, name=record.name, state=record.state, total=record.total,
                        done=record.done, failed=record.failed, created_at=record.created_at,
                        finished_at=record.finished_at)


def result_to_pb(item: FinishedItem) -> pb.JobResult:
    """The kept JobResult of a finished item. An item whose run left no result failed inside the item runner
    itself (a bug): INTERNAL, with the journal's description of the failure."""
    if item.result:
        return pb.JobResult.FromString(item.result)
    return pb.JobResult(index=item.index, error=pb.ItemError(code="INTERNAL", message=item.error))
