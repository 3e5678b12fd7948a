"""Batch jobs: run every item of every job in the journal to completion, a bounded number at a time.

`JobRunner` knows the journal and the scheduling: which items are unfinished, how many run at once,
retries of transient failures, cancellation. An item is opaque to it: an `ItemRunner` validates a request
at submit (returning the bytes to keep) and runs the kept bytes into result bytes (items.py does both
through `Orchestrator.stream`). Knows nothing of gRPC, protobuf or Ray.

Exactly once: the journal records an item's outcome only while the item is unfinished, and `start()`
re-queues every item that was queued or running when the previous process died, so after a crash each
item finishes once, with the same seed (stored at submit) and so the same output.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from specdec.errors import InvalidField
from specdec.orchestrator.jobs.journal import FinishedItem, JobRecord, Journal

RETRY_DELAY_S = 1.0  # first pause before a transient failure is tried again; doubles per try
MAX_RETRY_DELAY_S = 30.0
RESULTS_PAGE = 1000  # finished items read from the journal at a time
PREPARE_BATCH = 64  # requests validated at submit between two yields to the event loop


@dataclass(frozen=True)
class Outcome:
    """What one run of an item produced: result bytes, and for a failed item its error and whether a
    later try may succeed (a model service fault, a full orchestrator)."""

    result: bytes
    error: str = ""  # the failure in one line, for the journal's readers; empty for a completed item
    transient: bool = False


class ItemRunner(Protocol):
    def prepare(self, index: int, request: Any) -> bytes:
        """Validate request `index` of a submitted job; return what the journal keeps. Raises InvalidField
        naming `requests[index].field`."""

    async def run(self, index: int, request: bytes) -> Outcome:
        """Run a kept request to its outcome; never raises for a failure of the item itself."""


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:16]}"


class JobRunner:
    def __init__(self, journal: Journal, items: ItemRunner, concurrency: int, max_attempts: int, max_items: int,
                 clock: Callable[[], float] = time.time):
        self.journal, self._items = journal, items
        self.concurrency, self.max_attempts, self.max_items = concurrency, max_attempts, max_items
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._running: dict[tuple[str, int], asyncio.Task] = {}

    @property
    def queued_items(self) -> int:
        return self._queue.qsize()

    @property
    def running_items(self) -> int:
        return len(self._running)

    def start(self) -> int:
        """Queue every unfinished item of every job not cancelled and start the workers (on the running
        loop); return how many items were resumed."""
        pending = self.journal.pending()
        for key in pending:
            self._queue.put_nowait(key)
        self._workers = [asyncio.get_running_loop().create_task(self._work()) for _ in range(self.concurrency)]
        return len(pending)

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.journal.close()

    async def submit(self, requests: Sequence[Any], name: str = "") -> JobRecord:
        """Validate every request, record the job durably, queue its items. Raises InvalidField."""
        if not requests:
            raise InvalidField("requests", "must not be empty")
        if len(requests) > self.max_items:
            raise InvalidField("requests", f"{len(requests)} items; limits.max_job_items is {self.max_items}")
        kept = []
        for index, request in enumerate(requests):
            # On the loop (a tokenizer is not safe to share between threads), yielding now and then so that
            # a large job does not hold up the requests in flight.
            kept.append(self._items.prepare(index, request))
            if index % PREPARE_BATCH == PREPARE_BATCH - 1:
                await asyncio.sleep(0)
        job_id = new_job_id()
        record = await asyncio.get_running_loop().run_in_executor(None, self.journal.create_job, job_id, name, kept,
                                                                  self._clock())
        for index in range(record.total):
            self._queue.put_nowait((job_id, index))
        return record

    def job(self, job_id: str) -> JobRecord:
        record = self.journal.job(job_id)
        if record is None:
            raise _unknown(job_id)
        return record

    def jobs(self) -> list[JobRecord]:
        return self.journal.jobs()

    async def results(self, job_id: str, start: int = 0) -> list[FinishedItem]:
        """Up to RESULTS_PAGE finished items of a job with index >= start, by index."""
        self.job(job_id)
        return await asyncio.get_running_loop().run_in_executor(None, self.journal.results, job_id, start,
                                                                RESULTS_PAGE)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel the job's queued and running items; a finished job keeps its state."""
        record = self.journal.cancel(job_id, self._clock())
        if record is None:
            raise _unknown(job_id)
        for (running_job, _), task in list(self._running.items()):
            if running_job == job_id:
                task.cancel()
        return record

    async def _work(self) -> None:
        while True:
            job_id, index = await self._queue.get()
            request = self.journal.start_item(job_id, index)
            if request is None:  # cancelled, or finished before a restart re-queued it
                continue
            task = asyncio.get_running_loop().create_task(self._attempts(index, request))
            self._running[(job_id, index)] = task
            try:
                await asyncio.wait({task})  # unlike `await task`, returns when cancel() ends the item
            except asyncio.CancelledError:  # the worker stops (close, or the loop ends): so does its item
                task.cancel()
                raise
            finally:
                self._running.pop((job_id, index), None)
            if task.cancelled():  # the job was cancelled; the journal already says so
                continue
            try:
                outcome = task.result()
            except Exception as exc:  # a bug in the item runner fails the item (with no result), never the worker
                outcome = Outcome(b"", f"{type(exc).__name__}: {exc}")
            self.journal.finish_item(job_id, index, outcome.result, outcome.error, self._clock())

    async def _attempts(self, index: int, request: bytes) -> Outcome:
        delay = RETRY_DELAY_S
        for _ in range(self.max_attempts - 1):
            outcome = await self._items.run(index, request)
            if not outcome.transient:
                return outcome
            await asyncio.sleep(delay)
            delay = min(2 * delay, MAX_RETRY_DELAY_S)
        return await self._items.run(index, request)


def _unknown(job_id: str) -> InvalidField:
    return InvalidField("job_id", f"no job {job_id!r} on this orchestrator", "NOT_FOUND")
