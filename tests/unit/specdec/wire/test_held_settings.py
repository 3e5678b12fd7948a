"""A session's settings travel once: held by the service, filled into later calls, forgotten with the session."""

from __future__ import annotations

from dataclasses import replace

import pytest

from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import SessionError
from specdec.types import ProposeCall, SamplingParams, VerifyCall
from specdec.wire import messages
from specdec.wire.held_settings import PROPOSE_SETTINGS, VERIFY_SETTINGS, HeldSettings

SAMPLING = SamplingParams(0.5, top_k=5, top_p=0.75)  # exact in float32, as they travel


def propose(round_index: int, held: bool) -> ProposeCall:
    return ProposeCall("s", round_index, 3 * round_index, [1, 2], 4, SAMPLING, seed=99, want_probs=True,
                       confidence_threshold=0.25, want_raw_probs=True, num_draft_sequences=1, settings_held=held)


def test_later_calls_leave_the_settings_out_and_the_service_fills_them_in():
    held = HeldSettings(PROPOSE_SETTINGS)
    first, later = messages.propose_call_to_pb(propose(0, False)), messages.propose_call_to_pb(propose(1, True))
    assert later.ByteSize() < first.ByteSize() and not later.HasField("sampling") and later.seed == 0
    assert messages.propose_call_from_pb(held.resolve(first)) == propose(0, False)
    held.hold(first)
    assert messages.propose_call_from_pb(held.resolve(later)) == propose(1, False)  # as if it carried them
    assert later.settings_held  # the request itself (the round ledger's key) is left as it came


def test_verify_settings_are_held_too():
    spec = StatisticsSpec(recover="residual", entropy=True)
    call = VerifyCall("t", 0, 0, [1, 2], [3], SAMPLING, statistics=spec, uniforms=(0.125, 0.25))
    held = HeldSettings(VERIFY_SETTINGS)
    held.hold(messages.verify_call_to_pb(call))
    later = VerifyCall("t", 1, 3, [4], [5], SAMPLING, statistics=spec, uniforms=(0.375, 0.5), settings_held=True)
    resolved = messages.verify_call_from_pb(held.resolve(messages.verify_call_to_pb(later)), 16)
    assert resolved.sampling == SAMPLING and resolved.statistics == spec and resolved.uniforms == (0.375, 0.5)
    one_position = replace(later, statistics=StatisticsSpec())  # the statistics travel with every call
    assert messages.verify_call_from_pb(held.resolve(messages.verify_call_to_pb(one_position)), 16).statistics \
        == StatisticsSpec()


def test_held_settings_of_an_unknown_or_ended_session_are_refused_as_not_found():
    held = HeldSettings(PROPOSE_SETTINGS)
    with pytest.raises(SessionError) as info:
        held.resolve(messages.propose_call_to_pb(propose(1, True)))
    assert info.value.field == "settings_held" and info.value.code == "NOT_FOUND"
    held.hold(messages.propose_call_to_pb(propose(0, False)))
    held.forget(["s"])
    assert len(held) == 0
    with pytest.raises(SessionError):
        held.resolve(messages.propose_call_to_pb(propose(2, True)))


def test_settings_are_held_only_when_told_so_after_the_checks():
    held = HeldSettings(PROPOSE_SETTINGS)
    held.resolve(messages.propose_call_to_pb(propose(0, False)))  # resolved, then refused by a check: not held
    with pytest.raises(SessionError):
        held.resolve(messages.propose_call_to_pb(propose(1, True)))
    held.hold(messages.propose_call_to_pb(propose(0, False)))
    held.hold(messages.propose_call_to_pb(propose(1, True)))  # a call without settings holds nothing new
    assert messages.propose_call_from_pb(held.resolve(messages.propose_call_to_pb(propose(2, True)))) \
        == propose(2, False)
