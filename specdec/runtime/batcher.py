"""Batch calls that arrive while the model is busy: no timer, no waiting for company.

A call submitted to an idle batcher runs at once, alone. Calls that arrive while a batch runs queue up
and all go together (up to `max_batch`) as soon as the model thread is free, so a lone request is never
held back, and under load every forward serves everyone who is waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

from specdec.runtime.model import SessionError

Call = TypeVar("Call")
Result = TypeVar("Result")


class Batcher(Generic[Call, Result]):
    def __init__(self, run_batch: Callable[[list[Call]], list[Result | Exception]], executor: Executor,
                 max_batch: int):
        if max_batch < 1:
            raise ValueError(f"max_batch: must be >= 1, got {max_batch}")
        self._run_batch, self._executor, self.max_batch = run_batch, executor, max_batch
        self._waiting: list[tuple[Call, asyncio.Future]] = []
        self._draining = False
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and metrics

    async def submit(self, call: Call) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch:]
                batch = [(call, future) for call, future in batch if not future.cancelled()]
                if not batch:
                    continue
                self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
                try:
                    results = await loop.run_in_executor(self._executor, self._run_batch, [c for c, _ in batch])
                except Exception as exc:  # the whole batch failed: every caller hears why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.cancelled():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False


def run_calls(calls: list[Call], check: Callable[[Call], None], runs_alone: Callable[[Call], bool],
              run_alone: Callable[[Call], Result | Exception],
              run_together: Callable[[list[Call]], list[Result]]) -> list[Result | Exception]:
    """Run one batch of a runner's calls: a call that `check` refuses gets its SessionError in its place;
    calls that `runs_alone`, and a second call of a session already in the batch, run one by one; the rest
    run together (one call per session)."""
    results: list[Result | Exception | None] = [None] * len(calls)
    together: list[int] = []
    sessions: set[str] = set()
    for index, call in enumerate(calls):
        try:
            check(call)
        except SessionError as exc:
            results[index] = exc
            continue
        if runs_alone(call) or call.session_id in sessions:
            results[index] = run_alone(call)
        else:
            sessions.add(call.session_id)
            together.append(index)
    if together:
        for index, result in zip(together, run_together([calls[i] for i in together]), strict=True):
            results[index] = result
    return results
