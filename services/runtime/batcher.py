"""Continuous batching: calls join and leave the running batch at every forward, with no timer.

A call submitted to an idle batcher runs at once, alone. Calls that arrive while a batch runs queue up
and all go together (up to `max_batch`) as soon as the model thread is free, so a lone request is never
held back, and under load every forward serves everyone who is waiting. A runner may do one step of a
long call (a chunk of a prompt's prefill, one position of a decoded run) and answer `Continue` with what
is left: that goes first into the very next batch, beside whatever arrived meanwhile, so a newcomer
joins a run at its next forward instead of waiting for the run to end, and a call that finishes leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from specdec.errors import SessionError

MAX_BATCH_TOKENS = 256  # tokens a forward feeds, about (a service's max_batch_tokens): past it, prompts go in chunks
PREFILL_CHUNK_FLOOR = 16  # a prompt in a full forward still advances this many tokens

Call = TypeVar("Call")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Continue(Generic[Call]):
    """A call part-way done: what is left of it, run in the next batch (the caller still waits)."""

    rest: Call


class Batcher(Generic[Call, Result]):
    def __init__(self, run_batch: Callable[[list[Call]], list[Result | Exception | Continue[Call]]],
                 executor: Executor, max_batch: int):
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
                continuing = []
                for (_, future), result in zip(batch, results, strict=True):
                    if future.cancelled():
                        continue
                    if isinstance(result, Continue):
                        continuing.append((result.rest, future))
                    elif isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                self._waiting = continuing + self._waiting  # before the newcomers, in the next batch with them
        finally:
            self._draining = False


def run_calls(calls: list[Call], check: Callable[[Call], None], runs_alone: Callable[[Call], bool],
              run_alone: Callable[[Call], Result], run_together: Callable[[list[Call]], list[Result]]
              ) -> list[Result | Exception]:
    """Run one batch of a runner's calls, each checked once, just before it runs: a call that `check`
    refuses gets its SessionError in its place. The first call of each session runs together with the
    others (one call per session) unless it `runs_alone`; then the rest run one by one, in order, each
    checked against its session as the calls before it left it (after a session's call that answered
    `Continue`, its later calls wait for the next batch)."""
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
        session_id = calls[index].session_id
        if any(isinstance(results[i], Continue) and calls[i].session_id == session_id for i in range(index)):
            results[index] = Continue(calls[index])  # after the session's unfinished call, in the next batch
        elif _refused(calls[index], check, results, index) is None:
            results[index] = run_alone(calls[index])
    return results


def run_to_end(run_batch: Callable[[list[Call]], list[Result | Exception | Continue[Call]]],
               calls: list[Call]) -> list[Result | Exception]:
    """Every call's answer, run as a Batcher runs them with no newcomers: the calls that `Continue` run on
    together, batch after batch, until each has its answer."""
    results: list[Result | Exception | None] = [None] * len(calls)
    work, pending = list(calls), list(range(len(calls)))
    while pending:
        still = []
        for index, result in zip(pending, run_batch([work[i] for i in pending]), strict=True):
            if isinstance(result, Continue):
                work[index] = result.rest
                still.append(index)
            else:
                results[index] = result
        pending = still
    return results


def chunk_sizes(remaining: list[int], windows: list[int], budget: int, floor: int) -> list[int]:
    """How many of its remaining tokens each item of a batch feeds in one forward of about `budget` tokens.
    The last `windows[i]` of an item's remaining tokens (a window to score, the last token of a prompt) go
    in one piece; the rest (a prompt's prefill) may be cut: the items in order take what the budget leaves
    after every window, each at least `floor` (so every prefill advances). An item fed whole gets its
    remaining count; one cut, fewer, and none of its window."""
    left = budget - sum(windows)
    sizes = []
    for rest, window in zip(remaining, windows, strict=True):
        cuttable = rest - window
        take = min(cuttable, max(left, floor))
        left -= take
        sizes.append(rest if take == cuttable else take)
    return sizes


def _refused(call: Call, check: Callable[[Call], None], results: list, index: int) -> SessionError | None:
    """`check(call)`; a SessionError it raises is stored as the call's result and returned."""
    try:
        check(call)
    except SessionError as exc:
        results[index] = exc
        return exc
    return None
