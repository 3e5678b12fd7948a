"""A deployment-wide check that speculation pays: measured aggregate throughput, speculating or not.

Per-request controllers see their own rounds. Under load that is not enough: a request's longer window
costs every request batched with it, and where the draft and the target share a machine's cores the
draft's work slows the target's. The governor measures what actually matters, the deployment's emitted
tokens per second, in windows of `window_s` seconds, each run under one arm: "speculate" (the `cost`
controllers choose gamma) or "target-only" (they are held at gamma 0). It keeps an exponential moving
average of the rate of each arm, runs the better one, and the other for one window in every
`explore_every`, so the comparison follows the load. The cost of being right is that exploration: at
most one window in `explore_every` runs the worse arm.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from specdec.orchestrator.controllers.base import GammaController, RoundStats

ARMS = ("speculate", "target-only")


class SpeculationGovernor:
    def __init__(self, window_s: float = 1.0, explore_every: int = 8, smoothing: float = 0.3,
                 clock: Callable[[], float] = time.monotonic):
        if window_s <= 0 or explore_every < 2 or not 0 < smoothing <= 1:
            raise ValueError("governor: need window_s > 0, explore_every >= 2 and smoothing in (0, 1]")
        self.window_s, self.explore_every, self.smoothing, self.clock = window_s, explore_every, smoothing, clock
        self.rates: dict[str, float] = {}  # EMA of tokens/s per arm
        self.arm = ARMS[0]
        self.windows = {arm: 0 for arm in ARMS}  # windows run under each arm
        self._since_explore = 0
        self._started = clock()
        self._tokens = 0

    @property
    def speculating(self) -> bool:
        self._roll()
        return self.arm == "speculate"

    def record(self, tokens: int) -> None:
        """Tokens emitted by any request of the deployment."""
        self._tokens += tokens
        self._roll()

    def _roll(self) -> None:
        now = self.clock()
        elapsed = now - self._started
        if elapsed < self.window_s:
            return
        if self._tokens:  # an idle window says nothing about either arm
            rate = self._tokens / elapsed
            old = self.rates.get(self.arm)
            self.rates[self.arm] = rate if old is None else old + self.smoothing * (rate - old)
            self.windows[self.arm] += 1
            self.arm = self._next_arm()
        self._started, self._tokens = now, 0

    def _next_arm(self) -> str:
        untried = [arm for arm in ARMS if arm not in self.rates]
        if untried:
            return untried[0]
        best = max(ARMS, key=lambda arm: self.rates[arm])
        self._since_explore += 1
        if self._since_explore >= self.explore_every:
            self._since_explore = 0
            return next(arm for arm in ARMS if arm != best)
        return best


class Governed:
    """A gamma controller held at gamma 0 while the governor runs the target-only arm."""

    def __init__(self, inner: GammaController, governor: SpeculationGovernor):
        self.inner, self.governor = inner, governor
        self.confidence_threshold = inner.confidence_threshold

    def next_gamma(self) -> int:
        return self.inner.next_gamma() if self.governor.speculating else 0

    def update(self, stats: RoundStats) -> None:
        self.inner.update(stats)
