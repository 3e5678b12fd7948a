"""A deployment-wide check that speculation pays: measured aggregate throughput, speculating or not.

Per-request controllers see their own rounds. Under load that is not enough: a request's longer window
costs every request batched with it, and where the draft and the target share a machine's cores the
draft's work slows the target's. The governor measures what actually matters, the deployment's emitted
tokens per second, in windows of `window_s` seconds, each run under one arm: "speculate" (the `cost`
controllers choose gamma) or "target-only" (they are held at gamma 0). It keeps an exponential moving
average of the rate of each arm, runs the better one, and the other for one window in every
`explore_every`, so the comparison follows the load. The better arm depends on the load, so the
averages are kept per load level (requests in flight, in powers of two: 1, 2-3, 4-7, ...); a level not
seen before tries both arms first. The cost of being right is that exploration: at most one window in
`explore_every` runs the worse arm.
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
        self.rates: dict[int, dict[str, float]] = {}  # load level -> arm -> EMA of tokens/s
        self.arm = ARMS[0]
        self.windows = {arm: 0 for arm in ARMS}  # windows run under each arm
        self._since_explore = 0
        self._started = clock()
        self._tokens = 0
        self._load = 1  # the most requests in flight seen in this window

    @property
    def speculating(self) -> bool:
        self._roll()
        return self.arm == "speculate"

    def record(self, tokens: int, load: int = 1) -> None:
        """Tokens emitted by a governed request, with the number of requests in flight."""
        self._tokens += tokens
        self._load = max(self._load, load)
        self._roll()

    @staticmethod
    def level(load: int) -> int:
        """Load level: 1 for one request in flight, 2 for 2-3, 3 for 4-7, ..."""
        return max(1, load).bit_length()

    def _roll(self) -> None:
        now = self.clock()
        elapsed = now - self._started
        if elapsed < self.window_s:
            return
        if self._tokens:  # an idle window says nothing about either arm
            rate = self._tokens / elapsed
            rates = self.rates.setdefault(self.level(self._load), {})
            old = rates.get(self.arm)
            rates[self.arm] = rate if old is None else old + self.smoothing * (rate - old)
            self.windows[self.arm] += 1
            self.arm = self._next_arm(rates)
        self._started, self._tokens, self._load = now, 0, 1

    def _next_arm(self, rates: dict[str, float]) -> str:
        untried = [arm for arm in ARMS if arm not in rates]
        if untried:
            return untried[0]
        best = max(ARMS, key=lambda arm: rates[arm])
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
