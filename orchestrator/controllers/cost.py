"""`cost`: choose the gamma with the most expected tokens per second, from measurements.

What a round costs is the deployment's to measure, not each request's: `CostEstimates`, one per
orchestrator, shared by every `cost` request, keeps exponential moving averages of the draft time per
token, of the target's batch size B (sessions in the forward that scored a window, reported by the
target) and of the wall time a round spends outside the models, apart for speculative rounds (two calls
and the rule) and target-only ones (a decoded run's call, per token); and fits the verify time as a line
in the tokens a forward fed over all its sessions. Under load the batched forward is shared: if every
request in it drafts gamma tokens, it feeds about B * (gamma + 1) tokens, so a longer window costs every
request in the batch, not just this one. What a round earns is the request's own: the per-position
acceptance alpha_i (the chance that position i is accepted given that every earlier one was), starting
from the deployment's average. A round of gamma drafts is expected to emit 1 + sum_k prod_{i<=k} alpha_i
tokens in gamma * t_draft + t_verify(B * (gamma + 1)) + t_overhead seconds; the controller picks the
gamma in [0, gamma_max] with the highest ratio, and moves off its current gamma only for one more than
`SWITCH_MARGIN` better, so that noise in the estimates does not flip it. When speculation stops paying
(slow draft, low acceptance, a target that batching keeps busy, so verify time grows with the tokens
fed) that is gamma = 0, target-only; then every `probe_every` rounds it drafts one token to keep its
acceptance estimate fresh. What this model cannot see (the draft's work slowing the target where they
share cores) the orchestrator's load governor (`governor.py`) measures.
"""

from __future__ import annotations

from specdec.errors import InvalidField
from specdec.orchestrator.controllers.base import RoundStats, check_fraction, check_gamma_bounds


def expected_tokens(alphas: list[float], gamma: int) -> float:
    """1 + sum_{k=1..gamma} prod_{i<k} alpha_i: expected emitted tokens of a round of gamma drafts."""
    total, survive = 1.0, 1.0
    for position in range(gamma):
        survive *= alphas[position]
        total += survive
    return total


SWITCH_MARGIN = 0.05  # another gamma must promise this much more than the current one to take its place
ESTIMATE_SMOOTHING = 0.05  # EMA weight of a round in the deployment's estimates (many requests feed them)


class CostEstimates:
    """What rounds cost on this deployment, from every `cost` request's rounds; and the deployment's
    average acceptance per position, which a new request starts from."""

    def __init__(self, gamma_max: int = 64, prior_alpha: float = 0.6, smoothing: float = ESTIMATE_SMOOTHING):
        self.smoothing = smoothing
        self.alphas = [prior_alpha] * gamma_max
        self.draft_token_s: float | None = None
        self.overhead_s: dict[bool, float] = {}  # speculative round? -> wall time outside the models
        self.batch_size = 1.0
        self.verify_fit = _ForgettingLine(1 - smoothing)

    def update(self, stats: RoundStats) -> None:
        a = self.smoothing
        drafted = stats.num_draft_tokens
        for position in range(min(stats.num_accepted + 1, drafted, len(self.alphas))):
            self.alphas[position] += a * ((position < stats.num_accepted) - self.alphas[position])
        if drafted:
            self.draft_token_s = _ema(self.draft_token_s, stats.draft_seconds / drafted, a)
        self.verify_fit.add(stats.verify_batch_tokens or drafted + 1, stats.verify_seconds)
        self.batch_size += a * (max(1, stats.verify_batch_size) - self.batch_size)
        overhead = max(0.0, stats.round_seconds - stats.draft_seconds - stats.verify_seconds)
        self.overhead_s[drafted > 0] = _ema(self.overhead_s.get(drafted > 0), overhead, a)

    def seconds(self, gamma: int) -> float:
        """Expected wall time of a round of gamma drafts (a target-only round: gamma 0)."""
        overhead = self.overhead_s.get(gamma > 0, self.overhead_s.get(gamma == 0, 0.0))
        return gamma * (self.draft_token_s or 0.0) + self.verify_fit.predict(self.batch_size * (gamma + 1)) + overhead


class CostModelGamma:
    confidence_threshold = 0.0

    def __init__(self, gamma: int = 4, gamma_max: int = 16, smoothing: float = 0.1, prior_alpha: float = 0.6,
                 probe_every: int = 16, estimates: CostEstimates | None = None):
        """`estimates`: the deployment's, shared with the other requests (None: this request's own)."""
        check_gamma_bounds(0, gamma_max)
        self.smoothing = check_fraction("smoothing", smoothing, 1e-3, 1.0)
        if probe_every < 1:
            raise InvalidField("probe_every", f"must be >= 1, got {probe_every}")
        self.gamma_max, self.probe_every = gamma_max, probe_every
        prior_alpha = check_fraction("prior_alpha", prior_alpha)
        self.estimates = estimates or CostEstimates(gamma_max, prior_alpha, self.smoothing)
        self.alphas = (self.estimates.alphas + [prior_alpha] * gamma_max)[:gamma_max]
        self.gamma = min(gamma, gamma_max)
        self._rounds_at_zero = 0
        self._probing = False  # the last gamma chosen was a probe round
        if self.estimates.draft_token_s is not None:  # where the deployment's measurements put it
            self.gamma = self._best()

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, stats: RoundStats) -> None:
        drafted, accepted = stats.num_draft_tokens, stats.num_accepted
        for position in range(min(accepted + 1, drafted)):  # positions the rule looked at
            self.alphas[position] += self.smoothing * ((position < accepted) - self.alphas[position])
        self.estimates.update(stats)
        self.gamma = self._choose()

    def expected_rate(self, gamma: int) -> float:
        """Expected emitted tokens per second at this gamma under the current estimates."""
        seconds = self.estimates.seconds(gamma)
        return expected_tokens(self.alphas, gamma) / seconds if seconds > 0 else 0.0

    def _best(self) -> int:
        """The gamma with the highest expected rate, unless the current one is within SWITCH_MARGIN of it."""
        rates = [self.expected_rate(gamma) for gamma in range(self.gamma_max + 1)]
        best = max(range(self.gamma_max + 1), key=rates.__getitem__)
        current = 0 if self._probing else self.gamma
        return current if rates[best] <= rates[current] * (1 + SWITCH_MARGIN) else best

    def _choose(self) -> int:
        if self.estimates.draft_token_s is None:  # nothing measured about the draft yet: keep the starting gamma
            return self.gamma
        best = self._best()
        self._probing = False
        if best == 0:
            self._rounds_at_zero += 1
            if self._rounds_at_zero % self.probe_every == 0:
                self._probing = True
                return 1
        else:
            self._rounds_at_zero = 0
        return best


def _ema(old: float | None, new: float, weight: float) -> float:
    return new if old is None else old + weight * (new - old)


class _ForgettingLine:
    """Least-squares line y = intercept + slope * x over (x, y) points, older points decaying by `keep`.

    With a single distinct x the slope is unknown; then verify time is taken as flat in the window
    length, which favours longer windows only until the draft time per token says otherwise.
    """

    def __init__(self, keep: float):
        self.keep = keep
        self.n = self.sx = self.sy = self.sxx = self.sxy = 0.0

    def add(self, x: float, y: float) -> None:
        k = self.keep
        self.n, self.sx, self.sy = k * self.n + 1, k * self.sx + x, k * self.sy + y
        self.sxx, self.sxy = k * self.sxx + x * x, k * self.sxy + x * y

    def predict(self, x: float) -> float:
        if self.n == 0:
            return 0.0
        mean_x, mean_y = self.sx / self.n, self.sy / self.n
        variance = self.sxx / self.n - mean_x**2
        slope = max(0.0, (self.sxy / self.n - mean_x * mean_y) / variance) if variance > 1e-9 else 0.0
        return max(0.0, mean_y + slope * (x - mean_x))
