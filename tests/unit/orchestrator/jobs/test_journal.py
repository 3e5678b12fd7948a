"""The job journal on a temporary SQLite file: states, exactly-once results, resume, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from specdec.orchestrator.jobs.journal import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Journal,
    job_state,
)


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "sub" / "jobs.sqlite")
    yield j
    j.close()


def requests(n: int) -> list[bytes]:
    return [f"request {i}".encode() for i in range(n)]


@pytest.mark.parametrize("cancelled, total, done, failed, running, state", [
    (False, 3, 0, 0, 0, QUEUED),
    (False, 3, 0, 0, 1, RUNNING),
    (False, 3, 1, 0, 0, RUNNING),
    (False, 3, 3, 0, 0, SUCCEEDED),
    (False, 3, 2, 1, 0, FAILED),
    (True, 3, 1, 0, 1, CANCELLED),
])
def test_job_state_from_counts(cancelled, total, done, failed, running, state):
    assert job_state(cancelled, total, done, failed, running) == state


def test_a_job_goes_from_queued_to_succeeded(journal: Journal):
    record = journal.create_job("j1", "nightly", requests(3), created_at=100.0)
    assert (record.state, record.total, record.done, record.name, record.finished_at) == (QUEUED, 3, 0, "nightly", 0)
    assert journal.start_item("j1", 0) == b"request 0"
    assert journal.job("j1").state == RUNNING
    for index in range(3):
        assert journal.finish_item("j1", index, f"result {index}".encode(), "", finished_at=200.0 + index)
    record = journal.job("j1")
    assert (record.state, record.done, record.failed, record.finished_at) == (SUCCEEDED, 3, 0, 202.0)
    assert [(r.index, r.state, r.result) for r in journal.results("j1")] == [
        (0, DONE, b"result 0"), (1, DONE, b"result 1"), (2, DONE, b"result 2")]


def test_a_result_is_written_once(journal: Journal):
    journal.create_job("j1", "", requests(2), 0.0)
    assert journal.finish_item("j1", 0, b"first", "", 1.0)
    assert not journal.finish_item("j1", 0, b"second", "", 2.0)  # a rerun after a restart changes nothing
    assert journal.start_item("j1", 0) is None  # a finished item never runs again
    assert [r.result for r in journal.results("j1")] == [b"first"]
    assert journal.job("j1").done == 1


def test_a_failed_item_fails_the_job_when_it_finishes(journal: Journal):
    journal.create_job("j1", "", requests(2), 0.0)
    journal.finish_item("j1", 1, b"", "INVALID_ARGUMENT: prompt: bad", 1.0)
    assert journal.job("j1").state == RUNNING  # one item finished, one to go
    journal.finish_item("j1", 0, b"ok", "", 2.0)
    record = journal.job("j1")
    assert (record.state, record.done, record.failed) == (FAILED, 1, 1)
    assert journal.results("j1")[1].error == "INVALID_ARGUMENT: prompt: bad"


def test_reopening_lists_every_unfinished_item(tmp_path: Path):
    path = tmp_path / "jobs.sqlite"
    first = Journal(path)
    first.create_job("a", "", requests(3), 0.0)
    first.create_job("b", "", requests(2), 1.0)
    first.start_item("a", 0)  # running when the process "dies"
    first.start_item("a", 1)
    first.finish_item("a", 1, b"done", "", 2.0)
    first.close()
    reopened = Journal(path)
    assert reopened.pending() == [("a", 0), ("a", 2), ("b", 0), ("b", 1)]  # oldest job first, by index
    assert reopened.job("a").state == RUNNING and reopened.job("a").done == 1
    assert [r.result for r in reopened.results("a")] == [b"done"]
    reopened.close()


def test_cancel_stops_unfinished_items_and_keeps_results(journal: Journal):
    journal.create_job("j1", "", requests(3), 0.0)
    journal.finish_item("j1", 0, b"kept", "", 1.0)
    journal.start_item("j1", 1)
    record = journal.cancel("j1", 5.0)
    assert (record.state, record.done, record.finished_at) == (CANCELLED, 1, 5.0)
    assert journal.pending() == []
    assert journal.start_item("j1", 2) is None
    assert not journal.finish_item("j1", 1, b"late", "", 6.0)  # the running item's late result is dropped
    assert [r.result for r in journal.results("j1")] == [b"kept"]


def test_cancelling_a_finished_job_keeps_its_state(journal: Journal):
    journal.create_job("j1", "", requests(1), 0.0)
    journal.finish_item("j1", 0, b"r", "", 1.0)
    assert journal.cancel("j1", 2.0).state == SUCCEEDED
    assert journal.cancel("nope", 2.0) is None and journal.job("nope") is None


def test_jobs_list_oldest_first_and_results_page(journal: Journal):
    for job_id in ("z", "a", "m"):
        journal.create_job(job_id, job_id.upper(), requests(5), 0.0)
    assert [r.job_id for r in journal.jobs()] == ["z", "a", "m"]
    for index in range(5):
        journal.finish_item("a", index, bytes([index]), "", 1.0)
    assert [r.index for r in journal.results("a", start=1, limit=2)] == [1, 2]
    assert [r.index for r in journal.results("a", start=4)] == [4]


def test_a_duplicate_job_id_is_refused_whole(journal: Journal):
    journal.create_job("j1", "", requests(2), 0.0)
    with pytest.raises(Exception, match="UNIQUE"):
        journal.create_job("j1", "", requests(3), 0.0)
    assert journal.job("j1").total == 2
