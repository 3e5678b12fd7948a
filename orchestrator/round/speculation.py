"""The speculation cache's plan: which outcomes of a verification to draft ahead for, and how many.

A window of g draft tokens ends its verification in one of these outcomes: every draft token accepted
(k = g; the window drafted ahead for it starts at the bonus token's position, and the bonus token is
dropped), or k < g tokens accepted and the recovered token in place of token k + 1. The recovered token is
guessed among the draft's most likely other tokens at that position, rank 1 the likeliest.

`OutcomeModel` learns from the request's own rounds how likely each outcome is: the acceptance rate at each
position, and how often the recovered token was the draft's r-th other token. A premise's probability is
the product (reach position k, reject there, guess rank r). `FanOut` sizes how many rejection premises the
draft works on by time: it grows while the drafting ahead ends well inside the verification, and shrinks
when the orchestrator has to wait for it, with a dead band and a pause after each change so that it does
not flip on noise.

Pure: counts and times in, premises out. Knows nothing of sessions, rules or services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PRIOR_ACCEPTANCE = (3.0, 2.0)  # pseudo-counts (accepted, rejected) at each position before any round
PRIOR_RANKS = (0.35, 0.15, 0.1, 0.07)  # the recovered token's chance of being the r-th other token, before data
PRIOR_REJECTIONS = 4.0  # the rank prior weighs as much as this many rejections
MIN_PROBABILITY = 0.02  # a rejection premise less likely than this is not worth a lane
MAX_ALTERNATIVES = 4  # the draft's other tokens a position that a plan can use


@dataclass(frozen=True)
class Premise:
    """An outcome drafted ahead for: `accepted` draft tokens accepted, then `token` (None: all of them
    accepted, and no bonus token)."""

    accepted: int
    token: int | None
    probability: float

    def holds(self, num_accepted: int, next_token: int, size: int) -> bool:
        """Whether a round of `size` draft tokens that accepted `num_accepted` and picked `next_token` ended so."""
        if self.token is None:
            return num_accepted == size
        return num_accepted == self.accepted and next_token == self.token


def rank_prior(rank: int) -> float:
    """The prior chance that the recovered token is the draft's `rank`-th other token (0: the likeliest)."""
    if rank < len(PRIOR_RANKS):
        return PRIOR_RANKS[rank]
    return PRIOR_RANKS[-1] * 0.7 ** (rank - len(PRIOR_RANKS) + 1)


class OutcomeModel:
    """How a request's verifications end, counted over its rounds."""

    def __init__(self) -> None:
        self.reached: list[int] = []  # per draft position: rounds whose verification judged it
        self.accepted: list[int] = []  # per draft position: of those, the rounds that accepted it
        self.rank_hits: list[int] = []  # per rank: rejections whose recovered token was that other token
        self.rejections = 0

    def acceptance(self, position: int) -> float:
        """The chance that draft position `position` is accepted, once the positions before it were."""
        reached = self.reached[position] if position < len(self.reached) else 0
        accepted = self.accepted[position] if position < len(self.accepted) else 0
        return (accepted + PRIOR_ACCEPTANCE[0]) / (reached + sum(PRIOR_ACCEPTANCE))

    def rank_probability(self, rank: int) -> float:
        """The chance that a rejection's recovered token is the draft's `rank`-th other token there."""
        hits = self.rank_hits[rank] if rank < len(self.rank_hits) else 0
        return (hits + PRIOR_REJECTIONS * rank_prior(rank)) / (self.rejections + PRIOR_REJECTIONS)

    def record(self, size: int, num_accepted: int, next_token: int, alternatives: tuple[int, ...]) -> None:
        """A round of `size` draft tokens that accepted `num_accepted` and picked `next_token`; `alternatives`:
        the draft's other tokens at the rejected position (empty when all were accepted)."""
        judged = min(num_accepted + 1, size)
        for counts in (self.reached, self.accepted):
            counts += [0] * (judged - len(counts))
        for position in range(judged):
            self.reached[position] += 1
            self.accepted[position] += position < num_accepted
        if num_accepted < size:
            self.rejections += 1
            if next_token in alternatives:
                rank = alternatives.index(next_token)
                self.rank_hits += [0] * (rank + 1 - len(self.rank_hits))
                self.rank_hits[rank] += 1

    def premises(self, size: int, alternatives: Callable[[int], tuple[int, ...]]) -> list[Premise]:
        """Every outcome of a window of `size` draft tokens that can be drafted ahead for, likeliest first;
        `alternatives(position)`: the draft's other tokens there, likeliest first."""
        out, reach = [], 1.0
        for position in range(size):
            accept = self.acceptance(position)
            out += [Premise(position, token, reach * (1 - accept) * self.rank_probability(rank))
                    for rank, token in enumerate(alternatives(position)[:MAX_ALTERNATIVES])]
            reach *= accept
        out.append(Premise(size, None, reach))
        return sorted(out, key=lambda premise: -premise.probability)


def plan(premises: list[Premise], fan_out: int) -> list[Premise]:
    """What to draft ahead for: every draft token accepted (always; it costs the draft its next window only),
    then the `fan_out` likeliest rejection premises worth a lane."""
    full = [premise for premise in premises if premise.token is None]
    rejections = [premise for premise in premises if premise.token is not None
                  and premise.probability >= MIN_PROBABILITY]
    return full + rejections[:fan_out]


GROW_SLACK = 0.35  # grow once the draft has been idle this share of the verification, on average
SHRINK_SLACK = 0.05  # shrink once it has been idle less than this share (or made the orchestrator wait)
SMOOTHING = 0.3  # weight of the newest round in the average
SETTLE_ROUNDS = 4  # rounds after a change before the next


class FanOut:
    """How many rejection premises to draft ahead for, 1 .. `limit` (0 without lanes), sized by the time the
    draft has during a verification. One lane stays however little time there is: a lane is one more row of
    the draft's batched forwards, and the likeliest rejection is often likelier than full acceptance."""

    def __init__(self, limit: int, start: int = 2):
        self.limit, self.least = limit, min(1, limit)
        self.size = min(limit, start)
        self.slack: float | None = None  # the share of the verification the draft was idle, averaged
        self._settling = 0

    def update(self, verify_seconds: float, ahead_seconds: float) -> None:
        """One round: the verification took `verify_seconds`, the drafting ahead `ahead_seconds` (both from
        when they were sent)."""
        if verify_seconds <= 0:
            return
        slack = 1.0 - ahead_seconds / verify_seconds
        self.slack = slack if self.slack is None else (1 - SMOOTHING) * self.slack + SMOOTHING * slack
        if self._settling:
            self._settling -= 1
            return
        if self.slack > GROW_SLACK and self.size < self.limit:
            self.size += 1
        elif self.slack < SHRINK_SLACK and self.size > self.least:
            self.size -= 1
        else:
            return
        self._settling, self.slack = SETTLE_ROUNDS, None


PROBE_EVERY = 16  # rounds between probes of the mode not chosen
DEAD_BAND = 0.03  # the modes must differ by this share before the choice changes
LEAST_SAMPLES = 4  # rounds of each mode measured before the choice is made from them


MEMORY = 512  # samples a `Mean` remembers, about


class Mean:
    """A running mean over about the last MEMORY samples, each weighing the same within them (so it settles
    instead of following noise, yet follows a change that lasts)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, value: float) -> None:
        self.total, self.count = self.total + value, self.count + 1
        if self.count >= MEMORY:
            self.total, self.count = self.total / 2, self.count / 2

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


class OverlapChoice:
    """Whether drafting ahead pays, from the request's measured times and tokens, as seconds per emitted token:
    - serial: (verify + fresh draft call) / T_fresh;
    - ahead: (verify' + wait + (1 - hit rate) x fresh draft call) / (h x T_ahead + (1 - h) x T_fresh - full),
    where verify' is the verification beside the draft's work (slower where they share a device or cores),
    wait the wait for the lanes after it, T_fresh and T_ahead the tokens a round emits (its bonus token
    counted) when its window was drafted afresh or ahead (a head drafts ahead on its own features, which
    the target accepts less often), h the share of rounds drafted ahead whose next window was among the
    lanes, and `full` the share whose bonus token was dropped for a full-acceptance lane. Running means;
    the choice changes only past a dead band, and the other mode runs one round in every PROBE_EVERY.
    One choice serves many requests (the deployment's), so what one request measured serves the next."""

    def __init__(self) -> None:
        self.verify = {True: Mean(), False: Mean()}  # by mode: drafting ahead or not
        self.fresh, self.wait, self.hit, self.full = Mean(), Mean(), Mean(), Mean()
        self.tokens = {True: Mean(), False: Mean()}  # by the window's source: drafted ahead or afresh
        self.ahead = True  # the mode chosen
        self._rounds = 0

    def record(self, ahead: bool, verify_seconds: float, tokens: int, window_ahead: bool, wait_seconds: float = 0.0,
               hit: bool = False, full_hit: bool = False) -> None:
        """One round: whether it drafted ahead, its verification's time, the tokens it emitted and whether its
        window was drafted ahead; if it drafted ahead, the wait for the lanes, whether its next window was
        among them and whether that was the full-acceptance lane (its bonus token dropped)."""
        self.verify[ahead].add(verify_seconds)
        self.tokens[window_ahead].add(tokens + full_hit)
        if ahead:
            self.wait.add(wait_seconds)
            self.hit.add(float(hit))
            self.full.add(float(full_hit))

    def record_fresh(self, seconds: float) -> None:
        """A round's fresh draft call (its window was not drafted ahead)."""
        self.fresh.add(seconds)

    def seconds_per_token(self) -> tuple[float, float] | None:
        """(serial, ahead) seconds per emitted token; None until both modes are measured."""
        if min(self.verify[True].count, self.verify[False].count) < LEAST_SAMPLES or self.tokens[False].count == 0:
            return None
        values = [self.verify[True].value, self.verify[False].value, self.fresh.value, self.hit.value,
                  self.tokens[False].value]
        if None in values:
            return None
        verify_ahead, verify_serial, fresh, hit, fresh_tokens = values
        ahead_tokens = self.tokens[True].value or fresh_tokens
        serial = (verify_serial + fresh) / fresh_tokens
        per_round = hit * ahead_tokens + (1 - hit) * fresh_tokens - self.full.value
        return serial, (verify_ahead + self.wait.value + (1 - hit) * fresh) / max(per_round, 1.0)

    def next_round_ahead(self) -> bool:
        """Whether the next round drafts ahead: the mode that measures faster, the other one now and then."""
        self._rounds += 1
        measured = self.seconds_per_token()
        if measured is not None:
            serial, ahead = measured
            if ahead < (1 - DEAD_BAND) * serial:
                self.ahead = True
            elif ahead > (1 + DEAD_BAND) * serial:
                self.ahead = False
        probe = (self._rounds + PROBE_EVERY // 2) % PROBE_EVERY == 0  # rounds 8, 24, 40, ...
        return self.ahead != probe
