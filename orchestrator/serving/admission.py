"""Admission: up to `limits.max_active_requests` requests in flight; past that, up to
`limits.max_waiting_requests` wait their turn, first come first served; past that, a request is refused
with RESOURCE_EXHAUSTED (HTTP 429) naming `max_waiting_requests`.

A request that leaves (finished, failed, cancelled) hands its place straight to the longest waiting one,
so a newcomer cannot overtake the queue. A waiting request that is cancelled leaves the queue; one that is
cancelled just as its turn came passes the place on. Runs on the event loop only (not thread-safe).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from specdec.errors import InvalidField


class Admission:
    def __init__(self, max_active: int, max_waiting: int, on_waiting: Callable[[int], None] = lambda waiting: None):
        """`on_waiting(n)` hears the number of requests waiting whenever it changes (a metrics gauge)."""
        self.max_active, self.max_waiting, self.on_waiting = max_active, max_waiting, on_waiting
        self.active = 0  # requests admitted and not yet left
        self._queue: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return sum(not turn.done() for turn in self._queue)

    async def enter(self) -> None:
        """Return once the request is admitted (at once while there is room and no queue); raise InvalidField
        (RESOURCE_EXHAUSTED) naming max_waiting_requests when the queue is full too."""
        if self.active < self.max_active and not self.waiting:
            self.active += 1
            return
        if self.waiting >= self.max_waiting:
            raise InvalidField("max_waiting_requests", f"the orchestrator has {self.active} requests in flight (its "
                                                       f"limit, max_active_requests) and {self.waiting} waiting (its "
                                                       f"limit, max_waiting_requests); retry later",
                               "RESOURCE_EXHAUSTED")
        turn = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        self.on_waiting(self.waiting)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # admitted just as it was cancelled: pass the place on
                self.leave()
            raise
        finally:
            if turn in self._queue:
                self._queue.remove(turn)
            self.on_waiting(self.waiting)

    def leave(self) -> None:
        """An admitted request is done: its place goes to the longest waiting request, if any."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the place changes hands: `active` stays
                return
        self.active -= 1
