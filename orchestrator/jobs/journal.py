"""The batch-job journal: jobs and their items in one SQLite file (WAL, synchronous=FULL).

Knows rows and bytes: an item's request and result are opaque blobs to it (serialized messages); it
knows nothing of generation, protobuf, gRPC or Ray. Every state change is one transaction, so a crash
leaves each item either unfinished or finished with its result, never in between. An item's result is
written only while the item is unfinished: a second write of the same item (a rerun after a restart,
a race with cancel) changes nothing, so no result is recorded twice.

Item states: queued -> running -> done | failed, or queued | running -> cancelled. An item found
`running` when the journal is reopened was cut off by a crash and runs again.
One connection behind a lock: safe from the event loop and from worker threads of one process.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
SUCCEEDED = "succeeded"  # a job's state when every item is done (items are done, jobs succeed)
JOB_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    idx INTEGER NOT NULL,
    request BLOB NOT NULL,
    state TEXT NOT NULL,
    result BLOB,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_unfinished ON items (state) WHERE state IN ('queued', 'running');
"""
_JOB_ROWS = """
SELECT j.job_id, j.name, j.created_at, j.finished_at, j.cancelled, COUNT(i.idx),
       COALESCE(SUM(i.state = 'done'), 0), COALESCE(SUM(i.state = 'failed'), 0),
       COALESCE(SUM(i.state = 'running'), 0)
FROM jobs AS j LEFT JOIN items AS i ON i.job_id = j.job_id
"""


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    name: str
    state: str  # one of JOB_STATES
    total: int
    done: int  # items finished with a result
    failed: int  # items finished with an error
    created_at: float
    finished_at: float  # 0 while unfinished


@dataclass(frozen=True)
class FinishedItem:
    index: int
    state: str  # DONE or FAILED
    result: bytes
    error: str


def job_state(cancelled: bool, total: int, done: int, failed: int, running: int) -> str:
    """A job's state from its item counts: finished jobs succeed only when no item failed."""
    if cancelled:
        return CANCELLED
    if done + failed == total:
        return FAILED if failed else SUCCEEDED
    return RUNNING if done + failed + running else QUEUED


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed result survives a power cut, not just a crash
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"jobs.journal_path: {self.path} has schema version {version}; this specdec "
                                 f"reads version {SCHEMA_VERSION}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def create_job(self, job_id: str, name: str, requests: Sequence[bytes], created_at: float) -> JobRecord:
        """Record a job and its items (all queued) in one transaction."""
        with self._transaction() as db:
            db.execute("INSERT INTO jobs (job_id, name, created_at) VALUES (?, ?, ?)", (job_id, name, created_at))
            db.executemany("INSERT INTO items (job_id, idx, request, state) VALUES (?, ?, ?, ?)",
                           ((job_id, index, request, QUEUED) for index, request in enumerate(requests)))
        return self.job(job_id)

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._read(f"{_JOB_ROWS} WHERE j.job_id = ? GROUP BY j.job_id", (job_id,))
        return _record(rows[0]) if rows else None

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        return [_record(row) for row in self._read(f"{_JOB_ROWS} GROUP BY j.job_id ORDER BY j.rowid")]

    def pending(self) -> list[tuple[str, int]]:
        """(job_id, index) of every unfinished item of every job not cancelled, oldest job first."""
        return self._read("SELECT i.job_id, i.idx FROM items AS i JOIN jobs AS j ON j.job_id = i.job_id "
                          "WHERE i.state IN ('queued', 'running') AND j.cancelled = 0 ORDER BY j.rowid, i.idx")

    def start_item(self, job_id: str, index: int) -> bytes | None:
        """Mark an unfinished item running and return its request; None when it is finished or cancelled."""
        with self._transaction() as db:
            row = db.execute("SELECT request FROM items WHERE job_id = ? AND idx = ? "
                             "AND state IN ('queued', 'running')", (job_id, index)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE items SET state = 'running' WHERE job_id = ? AND idx = ?", (job_id, index))
            return row[0]

    def finish_item(self, job_id: str, index: int, result: bytes, error: str, finished_at: float) -> bool:
        """Record an item's outcome (failed when `error` is not empty), once: False, and nothing written, when
        the item was already finished or cancelled. The last item to finish stamps the job's finished_at."""
        with self._transaction() as db:
            written = db.execute("UPDATE items SET state = ?, result = ?, error = ? WHERE job_id = ? AND idx = ? "
                                 "AND state IN ('queued', 'running')",
                                 (FAILED if error else DONE, result, error, job_id, index)).rowcount
            if written and not _has_unfinished(db, job_id):
                db.execute("UPDATE jobs SET finished_at = ? WHERE job_id = ?", (finished_at, job_id))
            return bool(written)

    def cancel(self, job_id: str, finished_at: float) -> JobRecord | None:
        """Cancel a job's unfinished items; a job already finished keeps its state. None for an unknown job."""
        with self._transaction() as db:
            cancelled = db.execute("UPDATE items SET state = 'cancelled' WHERE job_id = ? "
                                   "AND state IN ('queued', 'running')", (job_id,)).rowcount
            if cancelled:
                db.execute("UPDATE jobs SET cancelled = 1, finished_at = ? WHERE job_id = ?", (finished_at, job_id))
        return self.job(job_id)

    def results(self, job_id: str, start: int = 0, limit: int = -1) -> list[FinishedItem]:
        """The finished items of a job (done and failed) with index >= start, by index; at most `limit`
        (-1: all)."""
        rows = self._read("SELECT idx, state, result, error FROM items WHERE job_id = ? AND idx >= ? "
                          "AND state IN ('done', 'failed') ORDER BY idx LIMIT ?", (job_id, start, limit))
        return [FinishedItem(index, state, result, error) for index, state, result, error in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _has_unfinished(db: sqlite3.Connection, job_id: str) -> bool:
    return db.execute("SELECT 1 FROM items WHERE job_id = ? AND state IN ('queued', 'running') LIMIT 1",
                      (job_id,)).fetchone() is not None


def _record(row: tuple) -> JobRecord:
    job_id, name, created_at, finished_at, cancelled, total, done, failed, running = row
    return JobRecord(job_id, name, job_state(bool(cancelled), total, done, failed, running), total, done, failed,
                     created_at, finished_at)
