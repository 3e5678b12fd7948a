"""The speculation cache's plan: outcome probabilities learnt from a request's rounds, the premises they rank,
and the fan-out sized by the draft's time during the verification."""

from __future__ import annotations

import pytest

from specdec.orchestrator.round.speculation import (
    MIN_PROBABILITY,
    PRIOR_ACCEPTANCE,
    SETTLE_ROUNDS,
    FanOut,
    OutcomeModel,
    OverlapChoice,
    Premise,
    plan,
    rank_prior,
)


def alternatives(position: int) -> tuple[int, ...]:
    return (100 + position, 200 + position)


def test_premise_probabilities_before_any_round_follow_the_priors_and_sum_below_one() -> None:
    model = OutcomeModel()
    premises = model.premises(3, alternatives)
    accept = PRIOR_ACCEPTANCE[0] / sum(PRIOR_ACCEPTANCE)
    by_outcome = {(p.accepted, p.token): p.probability for p in premises}
    assert by_outcome[(3, None)] == pytest.approx(accept ** 3)
    assert by_outcome[(0, 100)] == pytest.approx((1 - accept) * rank_prior(0))
    assert by_outcome[(1, 201)] == pytest.approx(accept * (1 - accept) * rank_prior(1))
    assert sum(by_outcome.values()) < 1  # a recovered token outside the alternatives is an outcome too
    assert [p.probability for p in premises] == sorted((p.probability for p in premises), reverse=True)


def test_the_model_learns_where_rejections_fall_and_which_alternative_recovers() -> None:
    model = OutcomeModel()
    for _ in range(40):  # always: the first two accepted, the third rejected, its second alternative recovered
        model.record(4, 2, 202, alternatives(2))
    assert model.acceptance(0) > 0.9 and model.acceptance(1) > 0.9 and model.acceptance(2) < 0.1
    assert model.acceptance(3) == pytest.approx(PRIOR_ACCEPTANCE[0] / sum(PRIOR_ACCEPTANCE))  # never judged
    assert model.rank_probability(1) > 0.8 > 0.1 > model.rank_probability(0)
    assert model.premises(4, alternatives)[0] == Premise(2, 202, pytest.approx(0.85, abs=0.1))


def test_a_recovered_token_outside_the_alternatives_counts_as_a_rejection_without_a_rank() -> None:
    model = OutcomeModel()
    model.record(3, 0, 999, alternatives(0))
    model.record(3, 3, 7, ())  # all accepted: no rejection
    assert (model.rejections, model.rank_hits, model.reached, model.accepted) == (1, [], [2, 1, 1], [1, 1, 1])


@pytest.mark.parametrize(
    "premise, num_accepted, next_token, size, holds",
    [
        (Premise(3, None, 0.5), 3, 42, 3, True),
        (Premise(3, None, 0.5), 2, 42, 3, False),
        (Premise(1, 7, 0.1), 1, 7, 3, True),
        (Premise(1, 7, 0.1), 1, 8, 3, False),
        (Premise(1, 7, 0.1), 2, 7, 3, False),
    ],
)
def test_a_premise_holds_only_for_exactly_its_outcome(premise: Premise, num_accepted: int, next_token: int,
                                                      size: int, holds: bool) -> None:
    assert premise.holds(num_accepted, next_token, size) is holds


def test_plan_keeps_full_acceptance_and_the_likeliest_rejections_worth_a_lane() -> None:
    premises = [Premise(0, 1, 0.3), Premise(2, None, 0.2), Premise(1, 2, 0.1), Premise(0, 3, MIN_PROBABILITY / 2)]
    assert plan(premises, 0) == [Premise(2, None, 0.2)]
    assert plan(premises, 1) == [Premise(2, None, 0.2), Premise(0, 1, 0.3)]
    assert plan(premises, 8) == [Premise(2, None, 0.2), Premise(0, 1, 0.3), Premise(1, 2, 0.1)]  # not the unlikely


def test_fan_out_grows_while_the_draft_has_time_and_shrinks_when_it_is_waited_for() -> None:
    fan_out = FanOut(limit=3, start=1)
    for _ in range(3 * (SETTLE_ROUNDS + 2)):
        fan_out.update(verify_seconds=0.010, ahead_seconds=0.004)
    assert fan_out.size == 3  # capped at the limit
    for _ in range(4 * (SETTLE_ROUNDS + 2)):
        fan_out.update(verify_seconds=0.010, ahead_seconds=0.012)
    assert fan_out.size == 1  # the likeliest rejection keeps its lane
    without = FanOut(limit=0)
    without.update(0.010, 0.001)
    assert without.size == 0


def test_fan_out_holds_still_within_its_dead_band_and_after_a_change() -> None:
    fan_out = FanOut(limit=8, start=2)
    for _ in range(50):
        fan_out.update(verify_seconds=0.010, ahead_seconds=0.008)  # 20% idle: neither grow nor shrink
    assert fan_out.size == 2
    fan_out.update(0.010, 0.001)  # one very idle round grows it (the average starts afresh)...
    assert fan_out.size == 3
    for _ in range(SETTLE_ROUNDS):  # ...and nothing moves it again until it settles
        fan_out.update(0.010, 0.020)
    assert fan_out.size == 3


def rounds_of(choice: OverlapChoice, count: int, verify_ahead: float, verify_serial: float, fresh: float,
              hit: bool, tokens: int = 3, tokens_ahead: int = 3, wait: float = 0.0) -> list[bool]:
    """Drive the choice as DraftAhead does for `count` rounds of fixed times and rejections; the modes it
    picked."""
    picked, window_ahead = [], False
    for _ in range(count):
        ahead = choice.next_round_ahead()
        picked.append(ahead)
        if not window_ahead:
            choice.record_fresh(fresh)
        emitted = tokens_ahead if window_ahead else tokens
        choice.record(ahead, verify_ahead if ahead else verify_serial, emitted, window_ahead,
                      wait if ahead else 0.0, hit=ahead and hit)
        window_ahead = ahead and hit
    return picked


def test_overlap_choice_drafts_ahead_while_it_saves_time_probing_serial_now_and_then() -> None:
    choice = OverlapChoice()
    picked = rounds_of(choice, 72, verify_ahead=0.011, verify_serial=0.010, fresh=0.008, hit=True)
    assert [round_ for round_, ahead in enumerate(picked, 1) if not ahead] == [8, 24, 40, 56, 72]  # the probes
    serial, ahead = choice.seconds_per_token()
    assert serial == pytest.approx((0.010 + 0.008) / 3) and ahead == pytest.approx(0.011 / 3)


@pytest.mark.parametrize("times", [
    dict(verify_ahead=0.020, verify_serial=0.010, fresh=0.003, hit=False, wait=0.002),  # the verify slows down
    dict(verify_ahead=0.010, verify_serial=0.010, fresh=0.004, hit=True, tokens=4, tokens_ahead=2),  # fewer tokens
], ids=["slower-verification", "windows-drafted-ahead-accepted-less"])
def test_overlap_choice_goes_serial_where_drafting_ahead_costs_more_than_it_saves(times) -> None:
    choice = OverlapChoice()
    picked = rounds_of(choice, 96, **times)
    serial, ahead = choice.seconds_per_token()
    assert ahead > serial and not choice.ahead  # once each mode has run LEAST_SAMPLES rounds (the 4th probe)...
    assert [round_ for round_, ahead in enumerate(picked, 1) if ahead and round_ > 57] == [72, 88]  # ...probes only
