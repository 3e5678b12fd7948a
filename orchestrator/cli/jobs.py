"""`specdec submit`, `jobs`, `results` and `cancel`: batch jobs on a running orchestrator."""

from __future__ import annotations

import argparse
import contextlib
import sys

from specdec.orchestrator.cli.common import DEFAULT_ADDRESS, connection, connection_args, make_console


def add_parsers(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit a batch job: a JSONL file of requests; prints the job id",
                            description="Send every line of a JSONL file as one batch job. A line is a JSON object "
                                        "with a prompt and optional GenerateRequest fields by proto name "
                                        "(max_new_tokens, temperature, top_k, top_p or a sampling object, rule, "
                                        "rule_params, gamma, gamma_controller, controller_params, num_draft_sequences, "
                                        "overlap, speculation_lanes, seed, ignore_eos). The job is kept in the "
                                        "orchestrator's journal and finishes even if the orchestrator restarts.")
    submit.add_argument("file", help="JSONL file, one request per line")
    submit.add_argument("--name", help="a name for the job, shown by `specdec jobs` (default: the file name)")
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list the batch jobs of an orchestrator",
                          description="List every batch job: id, name, state, items done, failed and total, times.")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.set_defaults(func=cmd_jobs)

    results = sub.add_parser("results", help="write a batch job's results as JSONL",
                             description="Write one JSON line per finished item of a job, by index: index, prompt, "
                                         "completion, token_ids and stats, or error {code, message} for a failed "
                                         "item. A running job gives the items finished so far.")
    results.add_argument("job", help="the job id")
    results.add_argument("--out", help="write to this file instead of stdout")
    results.set_defaults(func=cmd_results)

    cancel = sub.add_parser("cancel", help="cancel a batch job",
                            description="Stop a job's queued and running items; finished results are kept.")
    cancel.add_argument("job", help="the job id")
    cancel.set_defaults(func=cmd_cancel)

    for job_command in (submit, jobs, results, cancel):
        job_command.add_argument("--address", default=DEFAULT_ADDRESS,
                                 help="orchestrator gRPC address (default: $SPECDEC_ADDRESS or 127.0.0.1:50051)")
        connection_args(job_command)


def job_call(args: argparse.Namespace, command: str, call) -> int:
    """Run `call(client)` against the orchestrator at args.address (args.orchestrator for `status`); a gRPC
    error is printed as `specdec <command>: CODE: details`."""
    import grpc

    from specdec.orchestrator.client.grpc_client import Client

    address = args.orchestrator if command == "status" else args.address
    with Client(address, **connection(args)) as client:
        try:
            return call(client) or 0
        except grpc.RpcError as exc:
            print(f"specdec {command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1


def _when(unix_time: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_time)) if unix_time else ""


def print_job(status: dict, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(status, indent=2))
        return
    for key in ("job_id", "name", "state", "total", "done", "failed"):
        print(f"{key}: {status[key]}")
    print(f"created: {_when(status['created_at'])}")
    print(f"finished: {_when(status['finished_at']) or '-'}")


def cmd_submit(args: argparse.Namespace) -> int:
    from specdec.orchestrator.jobs.inputs import JobFileError, read_requests

    try:
        requests = read_requests(args.file)
    except (JobFileError, OSError) as exc:
        print(f"specdec submit: {exc}", file=sys.stderr)
        return 2

    def submit(client) -> None:
        job_id = client.submit(requests, name=args.name or args.file)
        print(job_id)
        print(f"submitted {len(requests)} requests as job {job_id}; `specdec status {job_id}` shows its progress",
              file=sys.stderr)

    return job_call(args, "submit", submit)


def cmd_jobs(args: argparse.Namespace) -> int:
    import json

    from rich.table import Table

    def show(client) -> None:
        jobs = client.jobs()
        if args.json:
            print(json.dumps(jobs, indent=2))
            return
        table = Table(title=f"jobs on {args.address}")
        for column in ("job id", "name", "state", "done", "failed", "total", "created", "finished"):
            table.add_column(column)
        for job in jobs:
            table.add_row(job["job_id"], job["name"], job["state"], str(job["done"]), str(job["failed"]),
                          str(job["total"]), _when(job["created_at"]), _when(job["finished_at"]))
        make_console().print(table)

    return job_call(args, "jobs", show)


def cmd_results(args: argparse.Namespace) -> int:
    import json

    def write(client) -> None:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(args.out, "w", encoding="utf-8")) if args.out else sys.stdout
            count = 0
            for record in client.results(args.job):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        status = client.job(args.job)
        print(f"{count} results of job {args.job} ({status['state']}: {status['done']} done, {status['failed']} "
              f"failed of {status['total']})", file=sys.stderr)

    return job_call(args, "results", write)


def cmd_cancel(args: argparse.Namespace) -> int:
    return job_call(args, "cancel", lambda client: print_job(client.cancel(args.job), as_json=False))
