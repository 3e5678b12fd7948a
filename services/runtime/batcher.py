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

from specdec.errors import SessionError

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
              run_alone: Callable[[Call], Result], run_together: Callable[[list[Call]], list[Result]]
              ) -> list[Result | Exception]:
    """Run one batch of a runner's calls, each checked once, just before it runs: a call that `check`
    refuses gets its SessionError in its place. The first call of each session runs together with the
    others (one call per session) unless it `runs_alone`; then the rest run one by one, in order, each
    checked against its session as the calls before it left it."""
    results: list[Result | Exception | None] = [None] * len(calls)
    together: list[int] = []
    later: list[int] = []
    sessions: set[str] = set()
    for index, call in enumerate(calls):
        if runs_alone(call) or call.session_id in sessions:
            later.append(index)
        elif _refused(call, check, results, index) is None:
            together.append(index)
        sessions.add(call.session_id)
    if together:
        for index, result in zip(together, run_together([calls[i] for i in together]), strict=True):
            results[index] = result
    for index in later:
        if _refused(calls[index], check, results, index) is None:
            results[index] = run_alone(calls[index])
    return results


def _refused(call: Call, check: Callable[[Call], None], results: list, index: int) -> SessionError | None:
    """`check(call)`; a SessionError it raises is stored as the call's result and returned."""
    try:
        check(call)
    except SessionError as exc:
        results[index] = exc
        return exc
    return None
