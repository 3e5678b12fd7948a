"""OrchestratorService over gRPC: a thin adapter around `Orchestrator` and, for batch jobs, `JobRunner`."""

from __future__ import annotations

import grpc

from specdec.errors import InvalidField, ModelServiceError
from specdec.net.rpc import abort_on_bad_input, status_code
from specdec.orchestrator.jobs.runner import JobRunner
from specdec.orchestrator.serving.conversions import job_to_pb, params_from_pb, result_to_pb, stats_to_pb
from specdec.orchestrator.serving.core import Orchestrator, TextDelta
from specdec.v1 import specdec_pb2 as pb
from specdec.v1 import specdec_pb2_grpc as pb_grpc
from specdec.wire import messages


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, orchestrator: Orchestrator, jobs: JobRunner | None = None):
        """`jobs`: the JobRunner behind the batch-job calls; without one they answer UNIMPLEMENTED."""
        self._orchestrator = orchestrator
        self._jobs = jobs

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        try:
            async for event in self._orchestrator.stream(params_from_pb(request)):
                if isinstance(event, TextDelta):
                    yield pb.GenerateResponse(delta=pb.TextDelta(text=event.text, token_ids=event.token_ids))
                else:
                    yield pb.GenerateResponse(stats=stats_to_pb(event))
        except InvalidField as exc:
            await context.abort(status_code(exc.code), str(exc))
        except ModelServiceError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, exc.summary)

    async def GetServerInfo(self, request: pb.GetInfoRequest, context) -> pb.ServerInfoResponse:
        o = self._orchestrator
        return pb.ServerInfoResponse(draft=messages.info_to_pb(o.draft_info), target=messages.info_to_pb(o.target_info),
                                     default_rule=o.defaults.rule, default_gamma=o.defaults.gamma,
                                     max_new_tokens_limit=o.limits.max_new_tokens, max_gamma=o.limits.max_gamma)

    def _runner(self) -> JobRunner:
        if self._jobs is None:
            raise InvalidField("jobs", "this orchestrator runs no batch jobs (no journal)", "UNIMPLEMENTED")
        return self._jobs

    @abort_on_bad_input
    async def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.JobStatus:
        return job_to_pb(await self._runner().submit(list(request.requests), request.name))

    @abort_on_bad_input
    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_to_pb(record) for record in self._runner().jobs()])

    @abort_on_bad_input
    async def GetJob(self, request: pb.JobRequest, context) -> pb.JobStatus:
        return job_to_pb(self._runner().job(request.job_id))

    @abort_on_bad_input
    async def CancelJob(self, request: pb.JobRequest, context) -> pb.JobStatus:
        return job_to_pb(await self._runner().cancel(request.job_id))

    async def GetJobResults(self, request: pb.JobRequest, context: grpc.aio.ServicerContext):
        start = 0
        try:
            while page := await self._runner().results(request.job_id, start):
                for item in page:
                    yield result_to_pb(item)
                start = page[-1].index + 1
        except InvalidField as exc:
            await context.abort(status_code(exc.code), str(exc))
