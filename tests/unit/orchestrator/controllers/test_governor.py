"""The load governor: runs whichever of speculation and target-only gives more aggregate tokens/s."""

from __future__ import annotations

import pytest

from specdec.orchestrator.controllers.fixed import FixedGamma
from specdec.orchestrator.controllers.governor import Governed, SpeculationGovernor


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(rates: dict[str, float], windows: int = 80) -> SpeculationGovernor:
    """Every 0.1 s the deployment emits at the rate of the arm the governor runs."""
    clock = Clock()
    governor = SpeculationGovernor(window_s=1.0, explore_every=8, clock=clock)
    for _ in range(windows * 10):
        arm = "speculate" if governor.speculating else "target-only"
        clock.now += 0.1
        governor.record(round(rates[arm] * 0.1))
    return governor


@pytest.mark.parametrize("rates, best", [({"speculate": 60, "target-only": 100}, "target-only"),
                                         ({"speculate": 130, "target-only": 100}, "speculate")])
def test_runs_the_faster_arm_and_explores_the_other_rarely(rates, best):
    governor = simulate(rates)
    other = next(arm for arm in rates if arm != best)
    assert governor.windows[best] >= 6 * governor.windows[other] and governor.windows[other] >= 2
    assert governor.rates[1][best] == pytest.approx(rates[best], rel=0.05)


def test_follows_a_change_of_load():
    clock = Clock()
    governor = SpeculationGovernor(window_s=1.0, explore_every=4, clock=clock)
    for rates in ({"speculate": 150, "target-only": 100}, {"speculate": 50, "target-only": 100}):
        for _ in range(600):
            arm = "speculate" if governor.speculating else "target-only"
            clock.now += 0.1
            governor.record(round(rates[arm] * 0.1))
        assert max(governor.rates[1], key=governor.rates[1].get) == max(rates, key=rates.get)


def test_governed_controller_is_held_at_zero_on_the_target_only_arm():
    clock = Clock()
    governor = SpeculationGovernor(window_s=1.0, clock=clock)
    controller = Governed(FixedGamma(4), governor)
    assert controller.next_gamma() == 4
    governor.record(100)
    clock.now = 1.5  # the first window closes: the untried arm runs next
    assert controller.next_gamma() == 0
    clock.now = 1.7
    assert governor.arm == "target-only"


def test_an_idle_window_changes_nothing():
    clock = Clock()
    governor = SpeculationGovernor(window_s=1.0, clock=clock)
    clock.now = 5.0
    assert governor.speculating and governor.rates == {}


def test_each_load_level_learns_its_own_best_arm():
    """Speculation wins alone and loses at 32 requests in flight: the governor learns both."""
    clock = Clock()
    governor = SpeculationGovernor(window_s=1.0, explore_every=8, clock=clock)
    rates = {1: {"speculate": 120, "target-only": 100}, 32: {"speculate": 150, "target-only": 200}}
    for load in (1, 32, 1):
        runs = {"speculate": 0, "target-only": 0}
        for _ in range(300):
            arm = "speculate" if governor.speculating else "target-only"
            runs[arm] += 1
            clock.now += 0.1
            governor.record(round(rates[load][arm] * 0.1), load)
        best = max(rates[load], key=rates[load].get)
        assert runs[best] > 3 * (300 - runs[best]), (load, runs)
    assert set(governor.rates) == {SpeculationGovernor.level(1), SpeculationGovernor.level(32)} == {1, 6}
