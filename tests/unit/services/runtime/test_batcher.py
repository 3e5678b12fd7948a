"""The batcher: a lone call runs at once and alone, calls that arrive while the model is busy go together
(up to max_batch, in arrival order), each caller gets its own answer or error, a call that answers
`Continue` goes on in the next batch beside the newcomers; and `run_calls`, which runs one batch of a
runner's calls: each checked once just before it runs, a session's first call together with the others,
its later ones alone and in order; and `chunk_sizes`, which cuts prompts to a forward's budget."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from specdec.errors import InvalidField, SessionError
from specdec.services.runtime.batcher import Batcher, Continue, chunk_sizes, run_calls, run_to_end

WAIT = 5.0  # seconds: the most any test waits on the model thread
ALL = float("inf")


class Model:
    """A fake batch runner on the model thread: records every batch it is given (and on which thread) and
    answers each call with `answer(call)` (an exception raised there fails the whole batch). Only the first
    `allowed` batches may finish; a later one is held open on the model thread until `allow` lets it go, so
    that a test decides what arrives while the model is busy."""

    def __init__(self, answer: Callable[[int], int | Exception] = lambda call: call * 10, seconds: float = 0.0):
        self.answer, self.seconds = answer, seconds
        self.allowed = ALL
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.running = self.most_running = 0
        self._changed = threading.Condition()

    def allow(self, batches: float) -> None:
        with self._changed:
            self.allowed = batches
            self._changed.notify_all()

    def __call__(self, calls: list[int]) -> list[int | Exception]:
        with self._changed:
            index = len(self.batches)
            self.batches.append(list(calls))
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self._changed.notify_all()
        try:
            with self._changed:
                if not self._changed.wait_for(lambda: index < self.allowed, WAIT):
                    raise TimeoutError(f"batch {index} was never allowed to finish")
            time.sleep(self.seconds)
            return [self.answer(call) for call in calls]
        finally:
            with self._changed:
                self.running -= 1


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
        yield pool


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run a test's scenario on a fresh event loop; a caller the batcher never answers fails the test (it
    does not hang it)."""
    asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


async def busy_with_first(batcher: Batcher, model: Model, first: int = 1) -> asyncio.Task:
    """Submit `first` to an idle batcher and return once the model holds it open."""
    model.allow(0)
    task = asyncio.ensure_future(batcher.submit(first))
    await until(lambda: len(model.batches) == 1)
    return task


async def submit_all(batcher: Batcher, calls: list[int]) -> list[asyncio.Task]:
    """Submit calls in this order; on return every one of them is queued."""
    tasks = [asyncio.ensure_future(batcher.submit(call)) for call in calls]
    await asyncio.sleep(0)
    return tasks


@pytest.mark.parametrize("max_batch", [0, -1])
def test_a_max_batch_below_one_is_refused(executor: ThreadPoolExecutor, max_batch: int) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(Model(), executor, max_batch)


def test_a_call_to_an_idle_batcher_runs_at_once_and_alone(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=8)
        assert await batcher.submit(7) == 70
        assert model.batches == [[7]] and batcher.batch_sizes == [1]

    run(scenario)


def test_calls_one_after_another_never_wait_for_company(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=8)
        assert [await batcher.submit(call) for call in (1, 2, 3)] == [10, 20, 30]
        assert model.batches == [[1], [2], [3]] and batcher.batch_sizes == [1, 1, 1]

    run(scenario)


@pytest.mark.parametrize("max_batch, queued, batches", [
    (16, [2, 3, 4], [[1], [2, 3, 4]]),
    (3, [2, 3, 4], [[1], [2, 3, 4]]),
    (2, [2, 3, 4, 5, 6], [[1], [2, 3], [4, 5], [6]]),
    (1, [2, 3, 4], [[1], [2], [3], [4]]),
])
def test_calls_that_arrive_while_the_model_is_busy_go_together_in_arrival_order_up_to_max_batch(
        executor: ThreadPoolExecutor, max_batch: int, queued: list[int], batches: list[list[int]]) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch)
        first = await busy_with_first(batcher, model)
        tasks = await submit_all(batcher, queued)
        assert model.batches == [[1]]  # nothing else runs while the model is busy
        model.allow(ALL)
        results = await asyncio.gather(first, *tasks)
        assert results == [call * 10 for call in [1, *queued]]  # each caller gets its own call's answer
        assert model.batches == batches
        assert batcher.batch_sizes == [len(batch) for batch in batches]

    run(scenario)


def test_each_caller_in_a_batch_gets_the_answer_to_its_own_call(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model(answer=lambda call: call * call)
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model, first=0)
        tasks = await submit_all(batcher, [5, 3, 9, 4])
        model.allow(ALL)
        assert await asyncio.gather(*tasks) == [25, 9, 81, 16]
        assert await first == 0 and model.batches == [[0], [5, 3, 9, 4]]

    run(scenario)


def test_a_call_answered_with_an_exception_fails_alone_and_its_batch_mates_get_their_answers(
        executor: ThreadPoolExecutor) -> None:
    refusal = SessionError("keep_len", "past the cache")

    async def scenario() -> None:
        model = Model(answer=lambda call: refusal if call == 3 else call * 10)
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model)
        two, three, four = await submit_all(batcher, [2, 3, 4])
        model.allow(ALL)
        assert await asyncio.gather(first, two, four) == [10, 20, 40]
        with pytest.raises(SessionError) as info:
            await three
        assert info.value is refusal  # raised as the runner answered it
        assert model.batches == [[1], [2, 3, 4]]

    run(scenario)


def test_a_batch_that_raises_fails_every_caller_in_it_and_the_batcher_carries_on(
        executor: ThreadPoolExecutor) -> None:
    def answer(call: int) -> int:
        if call == 3:
            raise RuntimeError("model crashed")
        return call * 10

    async def scenario() -> None:
        model = Model(answer=answer)
        batcher = Batcher(model, executor, max_batch=2)
        first = await busy_with_first(batcher, model)
        two, three, four = await submit_all(batcher, [2, 3, 4])
        model.allow(ALL)
        errors = await asyncio.gather(two, three, return_exceptions=True)
        assert [type(error) for error in errors] == [RuntimeError, RuntimeError]
        assert all(str(error) == "model crashed" for error in errors)  # every caller hears why
        assert await first == 10 and await four == 40  # the next batch still ran
        assert await batcher.submit(5) == 50  # and the batcher still takes calls
        assert model.batches == [[1], [2, 3], [4], [5]]

    run(scenario)


def test_a_failure_of_a_lone_call_leaves_the_batcher_idle_and_usable(executor: ThreadPoolExecutor) -> None:
    def answer(call: int) -> int:
        if call < 0:
            raise ValueError(f"bad call {call}")
        return call * 10

    async def scenario() -> None:
        batcher = Batcher(Model(answer=answer), executor, max_batch=4)
        with pytest.raises(ValueError, match="bad call -1"):
            await batcher.submit(-1)
        assert await batcher.submit(2) == 20

    run(scenario)


def test_a_caller_that_leaves_while_queued_is_not_sent_to_the_model(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model)
        two, three, four = await submit_all(batcher, [2, 3, 4])
        three.cancel()
        model.allow(ALL)
        assert await asyncio.gather(first, two, four) == [10, 20, 40]
        assert three.cancelled()
        assert model.batches == [[1], [2, 4]] and batcher.batch_sizes == [1, 2]

    run(scenario)


def test_a_batch_whose_callers_all_left_is_skipped_and_the_next_one_runs(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=2)
        first = await busy_with_first(batcher, model)
        two, three, four = await submit_all(batcher, [2, 3, 4])
        two.cancel()
        three.cancel()
        model.allow(ALL)
        assert await asyncio.gather(first, four) == [10, 40]
        assert model.batches == [[1], [4]] and batcher.batch_sizes == [1, 1]

    run(scenario)


def test_a_caller_that_leaves_while_its_batch_runs_does_not_disturb_its_batch_mates(
        executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model)
        two, three = await submit_all(batcher, [2, 3])
        model.allow(1)
        await until(lambda: len(model.batches) == 2)  # [2, 3] is on the model thread now...
        assert await first == 10
        two.cancel()  # ...and its first caller gives up (a deadline)
        await asyncio.sleep(0)
        model.allow(ALL)
        assert await three == 30 and two.cancelled()
        assert await batcher.submit(4) == 40  # the batcher is unharmed
        assert model.batches == [[1], [2, 3], [4]]

    run(scenario)


def test_batches_run_on_the_executor_one_at_a_time() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = Model(seconds=0.02)  # long enough that batches running side by side would overlap
        batcher = Batcher(model, executor, max_batch=2)
        first = await busy_with_first(batcher, model)
        tasks = await submit_all(batcher, list(range(2, 9)))
        model.allow(ALL)
        assert await asyncio.gather(first, *tasks) == [call * 10 for call in range(1, 9)]
        assert model.most_running == 1 and len(model.batches) == 5
        loop_thread = threading.current_thread().name
        assert all(name.startswith("wide") and name != loop_thread for name in model.threads)

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="wide") as executor:  # room for more: still one
        run(lambda: scenario(executor))


def test_batch_sizes_keep_the_most_recent_thousand(executor: ThreadPoolExecutor) -> None:
    async def scenario() -> None:
        model = Model()
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model)
        tasks = await submit_all(batcher, [2, 3])
        model.allow(ALL)
        await asyncio.gather(first, *tasks)
        assert batcher.batch_sizes == [1, 2]
        for call in range(999):
            await batcher.submit(call)
        assert len(batcher.batch_sizes) == 1000
        assert batcher.batch_sizes[0] == 2 and Counter(batcher.batch_sizes) == {1: 999, 2: 1}  # the oldest dropped

    run(scenario)


@dataclass(frozen=True)
class Call:
    session_id: str
    name: str
    alone: bool = False  # runs_alone: e.g. a call of several drafts over a fork


def calls_of(spec: str) -> list[Call]:
    """Calls from a spec: 'a1 b1 a2*' is a1, b1, a2 of sessions a, b, a; a trailing * marks one that runs alone."""
    return [Call(word[0], word.rstrip("*"), word.endswith("*")) for word in spec.split()]


class Sessions:
    """A fake runner's model: each session has room for `room` runs (unlimited when absent) and the calls
    named in `refused` are refused outright; `check` refuses with a SessionError. Every check and run is
    logged, so the log shows what was checked when, and what ran together."""

    def __init__(self, room: dict[str, int] | None = None, refused: frozenset[str] = frozenset()):
        self.room, self.refused = room or {}, refused
        self.runs: Counter[str] = Counter()
        self.log: list[str] = []

    def check(self, call: Call) -> None:
        self.log.append(f"check {call.name}")
        if call.name in self.refused or self.runs[call.session_id] >= self.room.get(call.session_id, 1 << 30):
            raise SessionError("keep_len", f"{call.name} does not fit its session")

    def run_alone(self, call: Call) -> str:
        self.log.append(f"alone {call.name}")
        self.runs[call.session_id] += 1
        return f"{call.name}!"

    def run_together(self, calls: list[Call]) -> list[str]:
        self.log.append("together " + " ".join(call.name for call in calls))
        self.runs.update(call.session_id for call in calls)
        return [f"{call.name}!" for call in calls]

    def run(self, calls: list[Call]) -> list[str]:
        results = run_calls(calls, self.check, lambda call: call.alone, self.run_alone, self.run_together)
        for call, result in zip(calls, results, strict=True):
            assert not isinstance(result, SessionError) or result.reason.startswith(call.name)  # its own refusal
        return ["refused" if isinstance(result, SessionError) else result for result in results]


@pytest.mark.parametrize("spec, room, refused, log, results", [
    pytest.param("", {}, frozenset(), [], [], id="no calls"),
    pytest.param("a1 b1 c1", {}, frozenset(),
                 ["check a1", "check b1", "check c1", "together a1 b1 c1"], ["a1!", "b1!", "c1!"],
                 id="one call per session: all together"),
    pytest.param("a1 b1 a2 a3", {}, frozenset(),
                 ["check a1", "check b1", "together a1 b1", "check a2", "alone a2", "check a3", "alone a3"],
                 ["a1!", "b1!", "a2!", "a3!"], id="a session's later calls alone, in order"),
    pytest.param("a1* b1 a2", {}, frozenset(),
                 ["check b1", "together b1", "check a1", "alone a1", "check a2", "alone a2"], ["a1!", "b1!", "a2!"],
                 id="a call that runs alone goes after the batch, its session's next call after it"),
    pytest.param("a1* b1*", {}, frozenset(),
                 ["check a1", "alone a1", "check b1", "alone b1"], ["a1!", "b1!"],
                 id="nothing together: no batched run"),
    pytest.param("a1 b1 a2", {}, frozenset({"a1"}),
                 ["check a1", "check b1", "together b1", "check a2", "alone a2"], ["refused", "b1!", "a2!"],
                 id="a refused call is answered with its error, the others run"),
    pytest.param("a1 a2 b1", {"a": 1}, frozenset(),
                 ["check a1", "check b1", "together a1 b1", "check a2"], ["a1!", "refused", "b1!"],
                 id="a later call is checked against its session as the calls before it left it"),
    pytest.param("c1 c2 c3", {"c": 2}, frozenset(),
                 ["check c1", "together c1", "check c2", "alone c2", "check c3"], ["c1!", "c2!", "refused"],
                 id="one session's calls one by one until it is full"),
])
def test_run_calls_checks_each_call_once_just_before_it_runs(spec: str, room: dict[str, int],
                                                              refused: frozenset[str], log: list[str],
                                                              results: list[str]) -> None:
    sessions = Sessions(room, refused)
    assert sessions.run(calls_of(spec)) == results
    assert sessions.log == log


def test_run_calls_puts_each_batched_result_in_its_call_s_place() -> None:
    def reversed_names(calls: list[Call]) -> list[str]:
        return [call.name[::-1] for call in calls]

    calls = calls_of("a1 b1* c1 a2 d1")
    results = run_calls(calls, lambda call: None, lambda call: call.alone, lambda call: call.name.upper(),
                        reversed_names)
    assert results == ["1a", "B1", "1c", "A2", "1d"]


def test_run_calls_answers_only_session_errors_in_place_and_lets_other_errors_of_check_through() -> None:
    def check(call: Call) -> None:
        raise InvalidField("new_tokens", "malformed")  # a ValueError, but no SessionError

    with pytest.raises(InvalidField, match="new_tokens"):
        run_calls(calls_of("a1 b1"), check, lambda call: False, lambda call: "alone", lambda calls: ["together"])


def test_a_call_that_continues_runs_on_in_the_next_batch_first_beside_the_newcomers(executor):
    """A call above 100 answers Continue(call - 1): it is in every next batch, ahead of the calls that
    arrived meanwhile, until it answers; its caller waits for that answer."""
    model = Model(answer=lambda call: Continue(call - 1) if call > 100 else call * 10)

    async def scenario() -> None:
        batcher = Batcher(model, executor, max_batch=8)
        first = await busy_with_first(batcher, model, 103)
        newcomers = await submit_all(batcher, [1, 2])
        model.allow(ALL)
        assert await first == 1000 and [await t for t in newcomers] == [10, 20]
        assert model.batches == [[103], [102, 1, 2], [101], [100]]

    run(scenario)


def test_run_to_end_runs_the_continuing_calls_together_until_each_answers():
    batches = []

    def steps(calls: list[int]) -> list:
        batches.append(list(calls))
        return [Continue(call - 1) if call > 0 else f"done {call}" for call in calls]

    assert run_to_end(steps, [2, 0, 1]) == ["done 0"] * 3
    assert batches == [[2, 0, 1], [1, 0], [0]]


@pytest.mark.parametrize("remaining, windows, budget, sizes", [
    ([5, 1, 3], [5, 1, 3], 4, [5, 1, 3]),  # windows are never cut, whatever the budget
    ([100, 5], [1, 5], 64, [58, 5]),  # a prompt takes what the windows leave
    ([100, 80, 5], [1, 1, 5], 64, [57, 16, 5]),  # the next prompt gets at least the floor
    ([30, 5], [1, 5], 64, [30, 5]),  # a prompt that fits goes whole, its last token scored
])
def test_chunk_sizes_cut_prompts_to_the_budget_and_never_a_window(remaining, windows, budget, sizes):
    assert chunk_sizes(remaining, windows, budget, floor=16) == sizes
