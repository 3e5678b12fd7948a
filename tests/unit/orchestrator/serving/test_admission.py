"""Admission: up to its limit at once, then a first-come-first-served queue, then refusal naming
max_waiting_requests; a place passes straight to the longest waiting request; a cancelled waiter leaves
the queue (pure asyncio, no server)."""

from __future__ import annotations

import asyncio

import pytest

from specdec.errors import InvalidField
from specdec.orchestrator.serving.admission import Admission


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_past_the_limit_wait_in_arrival_order_and_past_the_queue_are_refused():
    heard: list[int] = []

    async def scenario() -> None:
        admission = Admission(max_active=2, max_waiting=2, on_waiting=heard.append)
        await admission.enter()
        await admission.enter()
        admitted: list[str] = []

        async def wait(name: str) -> None:
            await admission.enter()
            admitted.append(name)

        waiters = [asyncio.ensure_future(wait(name)) for name in ("first", "second")]
        await settle()
        assert admission.waiting == 2 and admitted == []
        with pytest.raises(InvalidField) as refused:
            await admission.enter()
        assert refused.value.field == "max_waiting_requests" and refused.value.code == "RESOURCE_EXHAUSTED"
        admission.leave()
        await settle()
        assert admitted == ["first"] and admission.active == 2  # the place changed hands
        admission.leave()
        admission.leave()
        await asyncio.gather(*waiters)
        assert admitted == ["first", "second"] and admission.active == 1 and admission.waiting == 0
        admission.leave()
        assert admission.active == 0

    run(scenario)
    assert heard == [1, 2, 1, 0]


def test_a_newcomer_does_not_overtake_the_queue():
    async def scenario() -> None:
        admission = Admission(max_active=1, max_waiting=4)
        await admission.enter()
        order: list[str] = []

        async def wait(name: str) -> None:
            await admission.enter()
            order.append(name)

        queued = asyncio.ensure_future(wait("queued"))
        await settle()
        admission.leave()  # the place goes to the queued request before a newcomer can take it
        late = asyncio.ensure_future(wait("late"))
        await settle()
        assert order == ["queued"] and admission.waiting == 1
        admission.leave()
        await asyncio.gather(queued, late)
        assert order == ["queued", "late"]

    run(scenario)


def test_a_cancelled_waiter_leaves_the_queue_and_holds_no_place():
    async def scenario() -> None:
        admission = Admission(max_active=1, max_waiting=4)
        await admission.enter()
        waiter = asyncio.ensure_future(admission.enter())
        await settle()
        waiter.cancel()
        await settle()
        assert admission.waiting == 0
        admission.leave()
        assert admission.active == 0
        await admission.enter()  # room at once

    run(scenario)
