"""RequestStats is the one declaration of a request's statistics: the gRPC message is filled from it by name,
and `merge` sums requests for the bench."""

from __future__ import annotations

import dataclasses

import pytest

from specdec.orchestrator.round.stats import IDENTITY_FIELDS, RequestStats
from specdec.orchestrator.serving.conversions import stats_to_pb
from specdec.v1 import specdec_pb2 as pb


def recorded(request_id: str, rounds: list[tuple[int, int]]) -> RequestStats:
    stats = RequestStats(request_id=request_id, rule="sd", gamma=4, prompt_tokens=10)
    for drafted, accepted in rounds:
        stats.record_round(drafted, accepted, draft_seconds=0.01 * drafted, verify_seconds=0.1, wire_bytes=100)
    stats.output_tokens, stats.seconds = sum(a + 1 for _, a in rounds), 1.0
    return stats


def test_every_statistic_travels_in_the_message_under_its_own_name():
    declared = {f.name for f in dataclasses.fields(RequestStats)}
    message_fields = {f.name for f in pb.RequestStats.DESCRIPTOR.fields}
    assert declared <= message_fields, f"not in the proto: {declared - message_fields}"
    derived = message_fields - declared
    assert derived == {"acceptance_rate", "mean_acceptance_length", "tokens_per_second", "measured_c"}


def test_the_message_carries_the_values_and_the_derived_rates():
    stats = recorded("r1", [(4, 2), (4, 4), (3, 0)])
    message = stats_to_pb(stats)
    assert list(message.num_accepted_tokens_per_pos) == [2, 2, 1, 1]
    assert message.num_draft_tokens == 11 and message.num_accepted_tokens == 6
    assert message.acceptance_rate == pytest.approx(6 / 11)
    assert message.mean_acceptance_length == pytest.approx(1 + 6 / 3)
    assert RequestStats.from_dict({f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields
                                   if not f.is_repeated} | {"gamma_trace": list(message.gamma_trace),
                                   "num_accepted_tokens_per_pos": list(message.num_accepted_tokens_per_pos)}) == stats


def test_merge_sums_counts_position_by_position_and_keeps_the_identity():
    first, second = recorded("r1", [(4, 2)]), recorded("r2", [(2, 2), (5, 5)])
    first.merge(second)
    assert first.request_id == "r1" and first.gamma == 4
    assert first.num_rounds == 3 and first.num_drafts == 3 and first.num_draft_tokens == 11
    assert first.num_accepted_tokens_per_pos == [3, 3, 1, 1, 1]
    assert first.gamma_trace == [4, 2, 5]
    assert first.prompt_tokens == 20 and first.seconds == pytest.approx(2.0)
    assert first.mean_acceptance_length == pytest.approx(1 + 9 / 3)


def test_merge_covers_every_counter():
    counted = {f.name for f in dataclasses.fields(RequestStats)} - set(IDENTITY_FIELDS)
    first, second = recorded("a", []), recorded("b", [])
    for index, name in enumerate(sorted(counted)):
        value = getattr(second, name)
        setattr(second, name, [index + 1] if isinstance(value, list) else type(value)(index + 1))
    first.merge(second)
    for index, name in enumerate(sorted(counted)):
        got = getattr(first, name)
        assert (got[-1] if isinstance(got, list) else got) >= index + 1, name
