"""Gamma controllers: table-driven traces, and the cost model choosing the analytically best gamma."""

from __future__ import annotations

import random

import pytest

from specdec.orchestrator.controllers import ControllerParams, RoundStats, make_controller
from specdec.orchestrator.controllers.cost import SWITCH_MARGIN, CostEstimates, CostModelGamma, expected_tokens


def feed(controller, rounds: list[tuple[int, int]]) -> list[int]:
    """Run (drafted, accepted) rounds; return the gamma chosen before each round and after the last."""
    trace = [controller.next_gamma()]
    for drafted, accepted in rounds:
        controller.update(RoundStats(drafted, accepted, 0.001 * drafted, 0.01))
        trace.append(controller.next_gamma())
    return trace


def test_heuristic_grows_by_two_and_shrinks_by_one():
    controller = make_controller("heuristic", 4, ControllerParams(gamma_max=9))
    assert feed(controller, [(4, 4), (6, 6), (8, 2), (7, 0), (6, 6), (8, 8), (9, 0)]) == [4, 6, 8, 7, 6, 8, 9, 8]
    low = make_controller("heuristic", 1)
    assert feed(low, [(1, 0), (1, 0)]) == [1, 1, 1]


def test_gammatune_follows_the_documented_reading():
    controller = make_controller("gammatune", 3)  # eta 0.3, delta 2, gamma in [1, 10], g = 3
    # full acceptance: gamma = A + delta, g unchanged; partial: g = 0.7 g + 0.3 A, gamma = ceil(g)
    trace = feed(controller, [(3, 3), (5, 1), (3, 0), (2, 2)])
    assert trace == [3, 5, 3, 2, 4]
    assert controller.smoothed == pytest.approx(0.7 * (0.7 * 3 + 0.3 * 1) + 0.0)


def test_gammatune_plus_asks_for_early_stop():
    assert make_controller("gammatune+", 3).confidence_threshold == 0.4
    assert make_controller("gammatune", 3).confidence_threshold == 0.0


@pytest.mark.parametrize(
    "name, params, field",
    [("heuristic", ControllerParams(gamma_max=0), "gamma_max"), ("gammatune", ControllerParams(eta=1.5), "eta"),
     ("gammatune+", ControllerParams(confidence_threshold=-0.1), "confidence_threshold"),
     ("cost", ControllerParams(smoothing=0.0), "smoothing"), ("cost", ControllerParams(probe_every=0), "probe_every")],
)
def test_bad_hyperparameters_name_the_field(name, params, field):
    with pytest.raises(ValueError, match=field):
        make_controller(name, 3, params)


def test_expected_tokens_matches_the_closed_form():
    alpha, gamma = 0.7, 5
    assert expected_tokens([alpha] * gamma, gamma) == pytest.approx((1 - alpha ** (gamma + 1)) / (1 - alpha))


def accepts(rng: random.Random, alpha: float, gamma: int) -> int:
    """Accepted count of a round where each position is accepted with probability alpha until a rejection."""
    accepted = 0
    while accepted < gamma and rng.random() < alpha:
        accepted += 1
    return accepted


def serial_speedup(alpha: float, gamma: int, c: float) -> float:
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


@pytest.mark.parametrize("c, alpha, best", [(0.05, 0.8, 8), (0.1, 0.8, 6), (0.2, 0.7, 3), (0.5, 0.5, 0)])
def test_cost_model_converges_to_the_best_serial_gamma(c, alpha, best):
    """Simulated rounds with per-position acceptance alpha, draft time c per token, verify time 1."""
    assert max(range(17), key=lambda g: serial_speedup(alpha, g, c)) == best  # docs/design.md, Performance model
    controller, rng = CostModelGamma(gamma=4, gamma_max=16, smoothing=0.05), random.Random(0)
    chosen = []
    for _ in range(3000):
        gamma = controller.next_gamma()
        controller.update(RoundStats(gamma, accepts(rng, alpha, gamma), c * gamma, 1.0, round_seconds=c * gamma + 1))
        chosen.append(gamma)
    settled = max(set(chosen[-500:]), key=chosen[-500:].count)
    # it settles where it cannot do better by more than the margin that keeps it from flipping on noise
    assert serial_speedup(alpha, settled, c) >= serial_speedup(alpha, best, c) / (1 + SWITCH_MARGIN) - 0.02
    if best == 0:
        assert settled == 0


def test_cost_model_shrinks_gamma_when_verify_grows_with_the_window():
    def settle(verify_per_token: float) -> int:
        controller, rng = CostModelGamma(gamma=4, gamma_max=16, smoothing=0.05), random.Random(1)
        for _ in range(2000):
            gamma = controller.next_gamma()
            verify = 1.0 + verify_per_token * (gamma + 1)  # under load every scored token costs more
            controller.update(RoundStats(gamma, accepts(rng, 0.8, gamma), 0.05 * gamma, verify,
                                         0.05 * gamma + verify))
        return controller.next_gamma()

    idle, loaded, saturated = settle(0.0), settle(0.5), settle(5.0)
    assert idle >= 6 and 1 <= loaded <= 3 and saturated in (0, 1)  # 1 only on a probe round


def test_cost_model_counts_the_whole_batch_a_window_rides_in():
    """A target batching B requests per forward, its time growing with the tokens fed over all of them: the
    same acceptance and per-token costs that make speculation pay alone make it lose at high concurrency."""

    def settle(batch: int) -> int:
        controller, rng = CostModelGamma(gamma=4, gamma_max=16, smoothing=0.05), random.Random(2)
        for _ in range(2000):
            gamma = controller.next_gamma()
            others = [rng.choice([0, 2, 4]) for _ in range(batch - 1)]  # the rest of the batch's windows
            fed = gamma + 1 + sum(g + 1 for g in others)
            verify = 0.005 + 0.0005 * fed  # seconds: a fixed cost plus a compute cost per token fed
            controller.update(RoundStats(gamma, accepts(rng, 0.7, gamma), 0.0004 * gamma, verify,
                                         0.0004 * gamma + verify, verify_batch_size=batch, verify_batch_tokens=fed))
        return controller.next_gamma()

    assert settle(1) >= 2  # alone: speculation pays (the analytic best is 3)
    assert settle(32) in (0, 1)  # 32 sessions per forward: target-only (1 only on a probe round)


def test_a_new_request_starts_from_what_the_deployment_measured():
    """The costs and the average acceptance are the deployment's: a request that arrives after others have
    run starts at the gamma their measurements give, instead of learning from its own first rounds."""
    estimates, rng = CostEstimates(), random.Random(3)
    for _ in range(200):
        controller = CostModelGamma(gamma=4, estimates=estimates)
        for _ in range(20):
            gamma = controller.next_gamma()
            controller.update(RoundStats(gamma, accepts(rng, 0.2, gamma), 0.5 * gamma, 1.0,
                                         round_seconds=0.5 * gamma + 1.2))
    late = CostModelGamma(gamma=4, estimates=estimates)
    assert estimates.alphas[0] < 0.35 and estimates.overhead_s[False] == pytest.approx(0.2, abs=0.05)
    late.update(RoundStats(0, 0, 0.0, 1.0, round_seconds=1.2))
    assert late.next_gamma() == 0  # low acceptance, a slow draft: target-only from its first update


def test_the_cost_model_does_not_flip_between_near_equal_gammas():
    """Noisy measurements (verify time +-20%, acceptance a coin per position) around gammas 1..3, whose rates
    differ by 2-5%: it mostly stays put (without the margin, this run switches 39 times)."""
    controller, rng = CostModelGamma(gamma=2, gamma_max=4), random.Random(4)
    chosen = []
    for _ in range(400):
        gamma = controller.next_gamma()
        verify = 1.0 * rng.uniform(0.8, 1.2)
        controller.update(RoundStats(gamma, accepts(rng, 0.5, gamma), 0.12 * gamma, verify,
                                     round_seconds=0.12 * gamma + verify))
        chosen.append(gamma)
    switches = sum(a != b for a, b in zip(chosen, chosen[1:]))
    assert switches <= 15
