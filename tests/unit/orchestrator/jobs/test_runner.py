"""JobRunner with a fake item runner: bounded concurrency, exactly once across a crash, retries, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from specdec.errors import InvalidField
from specdec.orchestrator.jobs.journal import CANCELLED, FAILED, SUCCEEDED, Journal
from specdec.orchestrator.jobs.runner import JobRunner, Outcome


class FakeItems:
    """Requests are strings; the result is the request upper-cased. `gate` holds the runs of the items in
    `held` (every item when None) until it is set."""

    def __init__(self, transient_failures: int = 0, held: set[int] | None = None):
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = held
        self.runs: list[int] = []
        self.active = self.peak = 0
        self.transient_failures = transient_failures

    def prepare(self, index: int, request: str) -> bytes:
        if not request:
            raise InvalidField(f"requests[{index}].prompt", "must not be empty")
        return request.encode()

    async def run(self, index: int, request: bytes) -> Outcome:
        self.runs.append(index)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.held is None or index in self.held:
                await self.gate.wait()
            await asyncio.sleep(0)
        finally:
            self.active -= 1
        if request == b"bad":
            return Outcome(b"", "INVALID_ARGUMENT: prompt: bad")
        if self.transient_failures:
            self.transient_failures -= 1
            return Outcome(b"", "UNAVAILABLE: draft down", transient=True)
        return Outcome(request.upper())


def runner(path: Path, items: FakeItems, concurrency: int = 2, max_items: int = 100) -> JobRunner:
    return JobRunner(Journal(path), items, concurrency, max_attempts=3, max_items=max_items)


async def wait_finished(jobs: JobRunner, job_id: str, timeout: float = 10.0):
    async def poll():
        while not jobs.job(job_id).finished_at:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)
    return jobs.job(job_id)


def test_items_run_with_bounded_concurrency(tmp_path: Path):
    async def main():
        items = FakeItems()
        jobs = runner(tmp_path / "j.sqlite", items, concurrency=3)
        jobs.start()
        record = await jobs.submit([f"p{i}" for i in range(10)], name="ten")
        done = await wait_finished(jobs, record.job_id)
        results = await jobs.results(record.job_id)
        await jobs.close()
        return items, done, results

    items, done, results = asyncio.run(main())
    assert (done.state, done.done, done.total, done.name) == (SUCCEEDED, 10, 10, "ten")
    assert [r.result for r in results] == [f"P{i}".encode() for i in range(10)]
    assert items.peak == 3 and sorted(items.runs) == list(range(10))


def test_submit_refuses_bad_jobs_naming_the_field(tmp_path: Path):
    async def main():
        jobs = runner(tmp_path / "j.sqlite", FakeItems(), max_items=3)
        jobs.start()
        errors = []
        for requests in ([], ["a"] * 4, ["a", ""]):
            with pytest.raises(InvalidField) as info:
                await jobs.submit(requests)
            errors.append(str(info.value))
        with pytest.raises(InvalidField) as info:
            jobs.job("job-nope")
        listed = jobs.jobs()
        await jobs.close()
        return errors, info.value, listed

    errors, unknown, listed = asyncio.run(main())
    assert errors[0].startswith("requests: must not be empty")
    assert "limits.max_job_items" in errors[1]
    assert errors[2].startswith("requests[1].prompt")
    assert unknown.code == "NOT_FOUND" and "job-nope" in str(unknown)
    assert listed == []  # a refused job leaves nothing behind


def test_a_restart_finishes_every_item_exactly_once(tmp_path: Path):
    path = tmp_path / "j.sqlite"

    async def crash_midway() -> str:
        items = FakeItems(held={2, 3, 4, 5})
        items.gate.clear()
        jobs = runner(path, items, concurrency=2)
        jobs.start()
        record = await jobs.submit([f"p{i}" for i in range(6)])
        while jobs.job(record.job_id).done < 2 or items.active < 2:
            await asyncio.sleep(0.01)
        return record.job_id  # items 0 and 1 are done, 2 and 3 running, 4 and 5 queued when the "process dies"

    async def restart(job_id: str):
        items = FakeItems()
        jobs = runner(path, items)
        resumed = jobs.start()
        done = await wait_finished(jobs, job_id)
        results = await jobs.results(job_id)
        await jobs.close()
        return resumed, items.runs, done, results

    job_id = asyncio.run(crash_midway())  # asyncio.run cancels the held runs without recording anything
    resumed, reruns, done, results = asyncio.run(restart(job_id))
    assert done.state == SUCCEEDED and [r.index for r in results] == list(range(6))
    assert resumed == 4 and sorted(reruns) == [2, 3, 4, 5]  # the finished items did not run again
    assert [r.result for r in results] == [f"P{i}".encode() for i in range(6)]


def test_transient_failures_are_tried_again_and_failures_recorded(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("specdec.orchestrator.jobs.runner.RETRY_DELAY_S", 0.0)

    async def main():
        items = FakeItems(transient_failures=2)
        jobs = runner(tmp_path / "j.sqlite", items, concurrency=1)
        jobs.start()
        record = await jobs.submit(["ok", "bad"])
        done = await wait_finished(jobs, record.job_id)
        results = await jobs.results(record.job_id)
        await jobs.close()
        return done, results

    done, results = asyncio.run(main())
    assert (done.state, done.done, done.failed) == (FAILED, 1, 1)
    assert results[0].result == b"OK" and results[1].error == "INVALID_ARGUMENT: prompt: bad"


def test_cancel_stops_queued_and_running_items(tmp_path: Path):
    async def main():
        items = FakeItems()
        items.gate.clear()
        jobs = runner(tmp_path / "j.sqlite", items, concurrency=2)
        jobs.start()
        record = await jobs.submit([f"p{i}" for i in range(5)])
        while items.active < 2:
            await asyncio.sleep(0.01)
        cancelled = await jobs.cancel(record.job_id)
        items.gate.set()
        await asyncio.sleep(0.1)
        after = jobs.job(record.job_id)
        results = await jobs.results(record.job_id)
        await jobs.close()
        return cancelled, after, results, items.runs

    cancelled, after, results, runs = asyncio.run(main())
    assert cancelled.state == after.state == CANCELLED and cancelled.finished_at > 0
    assert results == [] and sorted(runs) == [0, 1]  # the queued items never started
