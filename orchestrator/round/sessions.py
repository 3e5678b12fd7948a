"""Per-request session adapters: what each model service's cache holds of one request's tokens.

The engine asks a `DraftSession` for a window of draft tokens after a token sequence, and the
`TargetSession` for the scores of a window after the committed tokens. Everything about the services'
cache protocol lives here and nowhere above: how many leading committed tokens each cache holds (its
cursor) and which not yet committed tokens it holds after them; the keep_len and new_tokens of every
call; round numbers (a retried call keeps its number, so the services' round ledgers make retries safe);
the request's settings, sent on a session's first call and held by the service after it
(`settings_held`);
a fresh start from the committed tokens after a service lost the session (SessionLost); waiting for a
target that is down (ServiceDown) and asking the same round again. A call that failed may or may not have
run, so afterwards a cache is trusted only up to that call's keep_len.

Knows the Proposer and Scorer protocols, the call dataclasses and the cache view (`cache_view.py`);
knows nothing of acceptance rules, gamma controllers, gRPC or Ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from specdec.distributions.scoring import StatisticsSpec
from specdec.errors import ServiceDown, SessionLost
from specdec.orchestrator.round.cache_view import CacheView
from specdec.orchestrator.round.feature_store import FeatureStore
from specdec.orchestrator.round.stats import RequestStats
from specdec.types import Lane, Proposal, ProposeCall, SamplingParams, Verification, VerifyCall

MAX_VERIFY_ATTEMPTS = 8  # verify calls one round may make through faults before the request fails
DRAFT_FAULTS = (ServiceDown, SessionLost)


class Proposer(Protocol):
    available: bool  # False while the draft service is being recovered

    async def propose(self, call: ProposeCall) -> Proposal: ...

    async def end_session(self, session_id: str) -> None: ...


class Scorer(Protocol):
    available: bool  # False while the target service is being recovered

    async def verify(self, call: VerifyCall) -> Verification: ...

    async def recovered(self) -> None:
        """Return once the service answers again after a ServiceDown; raise ServiceDown if it will not."""

    async def end_session(self, session_id: str) -> None: ...


@dataclass(frozen=True)
class CallSettings:
    """What every call of one request repeats: the warps, the seed and what the rule needs computed."""

    sampling: SamplingParams
    seed: int
    want_probs: bool  # the draft's distributions and token probabilities (every rule but greedy)
    want_raw_probs: bool  # also the draft's un-warped distributions (raw divergences)
    statistics: StatisticsSpec = StatisticsSpec()  # what the target computes beside its logits
    confidence_threshold: float = 0.0
    num_draft_sequences: int = 1
    num_alternatives: int = 0  # the draft's most likely other tokens a position (speculation lanes' premises)
    feature_layers: tuple[int, ...] = ()  # a feature-head draft's: the target layers whose features it reads


class DraftSession:
    """One draft session of a request: its own, or a speculation lane's. The request's draft sessions share
    one call counter (`rounds`), which also seeds each call's sampler, so no two calls collide."""

    def __init__(self, proposer: Proposer, session_id: str, settings: CallSettings, rounds: Iterator[int],
                 stats: RequestStats, features: FeatureStore | None = None):
        """`features`: a feature head's input, the target's features of the committed tokens."""
        self.proposer, self.session_id, self.settings = proposer, session_id, settings
        self.rounds, self.stats, self.features = rounds, stats, features
        self.cache = CacheView()
        self.settings_sent = False  # the draft holds this session's settings
        # A feature head's: the leading tokens whose pairs it made from the target's features (the rest, from
        # its own: drafted, or kept from a lane). A plain call keeps no more, so the head re-reads the
        # accepted tokens with the target's features.
        self.true_len = 0

    @property
    def available(self) -> bool:
        return self.proposer.available

    def can_sync(self, sequence: list[int]) -> bool:
        """Whether a call with lanes can make the session hold `sequence`: a feature head needs the target's
        features of the positions before the tokens it would be fed."""
        _, new_tokens = self.cache.sync(sequence)
        return self.features is None or not new_tokens or self.features.covers(len(sequence) - 1)

    def can_draft(self, sequence: list[int]) -> bool:
        """A draft model always can; a feature head once the target's features of every position but the
        last are held (after the target's first forward over the prompt)."""
        return self.features is None or (len(sequence) >= 2 and self.features.covers(len(sequence) - 1))

    async def propose(self, sequence: list[int], gamma: int) -> Proposal:
        """Draft `gamma` tokens after `sequence`. A session the draft lost is started again, once; ServiceDown
        and a second loss propagate (the caller goes on without the draft)."""
        try:
            return await self._propose_once(sequence, gamma)
        except SessionLost:
            return await self._propose_once(sequence, gamma)

    async def speculate(self, sequence: list[int], gamma: int, lanes: list[Lane],
                        adopt: Adoption | None = None) -> Proposal:
        """Make the session hold `sequence` (first becoming the lane `adopt` names, if any), then draft `gamma`
        tokens after each lane's premise (within `sequence`), on forks: the answer's `lanes`, which the
        service keeps until the session's next call with lanes. Faults as `propose`; a session lost while
        adopting is started again without the lane, when it can be (`can_sync`)."""
        if adopt is not None:
            self.cache = CacheView(0, list(adopt.tokens))
            self.true_len = min(self.true_len, adopt.premise_len)
        try:
            return await self._propose_once(sequence, gamma, tuple(lanes), adopt)
        except SessionLost:
            if not self.can_sync(sequence):
                raise
            return await self._propose_once(sequence, gamma, tuple(lanes))

    async def _propose_once(self, sequence: list[int], gamma: int, lanes: tuple[Lane, ...] = (),
                            adopt: Adoption | None = None) -> Proposal:
        keep_len, new_tokens = self.cache.sync(sequence) if lanes else self.cache.feed(sequence)
        if self.features is not None and not lanes:  # re-read drafted tokens with the target's features
            keep_len, new_tokens = min(keep_len, self.true_len), sequence[min(keep_len, self.true_len):]
        settings = self.settings
        features = None
        if self.features is not None and new_tokens:  # the positions before each new token
            features = self.features.rows(max(keep_len - 1, 0), len(sequence) - 1)
            self.stats.feature_bytes += features.nbytes
        call = ProposeCall(
            session_id=self.session_id, round=next(self.rounds), keep_len=keep_len, new_tokens=new_tokens,
            gamma=gamma, sampling=settings.sampling, seed=settings.seed, want_probs=settings.want_probs,
            confidence_threshold=settings.confidence_threshold, want_raw_probs=settings.want_raw_probs,
            num_draft_sequences=settings.num_draft_sequences, settings_held=self.settings_sent and keep_len > 0,
            num_alternatives=settings.num_alternatives, features=features, lanes=lanes,
            adopt_lane=adopt.lane + 1 if adopt else 0)
        try:
            proposal = await self.proposer.propose(call)
        except DRAFT_FAULTS as fault:
            self.stats.num_draft_faults += 1
            lost = isinstance(fault, SessionLost)
            trusted = 0 if lost or adopt else keep_len  # a failed adoption may or may not have happened
            self.cache.trust_only(trusted)
            self.true_len = min(self.true_len, trusted)
            self.settings_sent = self.settings_sent and not lost
            raise
        self.settings_sent = True
        self.cache.fed(keep_len, new_tokens + proposal.draft_tokens, proposal.cache_len)
        if self.features is not None and keep_len <= self.true_len:  # pairs from the target's features
            self.true_len = keep_len + len(new_tokens)
        return proposal

    async def end(self) -> None:
        await self.proposer.end_session(self.session_id)


@dataclass(frozen=True)
class Adoption:
    """A lane of the session's last call with lanes that the session becomes: its index, the tokens it holds
    (its premise and the tokens drafted on it but the last) and its premise's kept length (`Lane.keep_len`)."""

    lane: int
    tokens: list[int]
    premise_len: int


class TargetSession:
    """The request's target session. A target that went down is waited for and asked the same round again
    (calls are idempotent per round); one that lost the session gets the committed tokens from the start."""

    def __init__(self, scorer: Scorer, session_id: str, settings: CallSettings, stats: RequestStats,
                 features: FeatureStore | None = None):
        """`features`: where the target's features go, when the draft is a feature head."""
        self.scorer, self.session_id, self.settings, self.stats = scorer, session_id, settings, stats
        self.features = features
        self.cache = CacheView()
        self.round = 0  # the round number of the next verify call
        self.settings_sent = False  # the target holds this session's settings

    async def verify(self, committed: list[int], proposal: Proposal | None, num_draft_sequences: int,
                    uniforms: tuple[float, ...], decode: int = 1) -> Verification:
        """Scores of the proposal's draft tokens (M = `num_draft_sequences` windows of equal length; None: a
        target-only round)
        after the committed tokens, from one target forward. One window gets the statistics the rule asked
        for, its candidates drawn at `uniforms`; several windows get whole rows. A target-only round may ask
        the target to decode a run of `decode` tokens itself (one uniform per position)."""
        settings = self.settings
        draft_tokens = proposal.draft_tokens if proposal else []
        one_window = num_draft_sequences == 1
        statistics = settings.statistics if one_window else StatisticsSpec()
        forward = one_window and statistics.needs_draft_rows and proposal is not None
        for _ in range(MAX_VERIFY_ATTEMPTS):
            keep_len, new_tokens = self.cache.feed(committed)
            call = VerifyCall(
                session_id=self.session_id, round=self.round, keep_len=keep_len, new_tokens=new_tokens,
                draft_tokens=draft_tokens, sampling=settings.sampling,
                want_probs=settings.want_probs and not one_window, num_draft_sequences=num_draft_sequences,
                statistics=statistics,
                uniforms=uniforms if statistics.needs_uniforms else (),
                draft_probs=proposal.draft_probs if forward else None,
                draft_raw_probs=proposal.draft_raw_probs if forward and statistics.divergence_on_raw else None,
                decode_tokens=decode if proposal is None else 1, settings_held=self.settings_sent and keep_len > 0,
                feature_layers=settings.feature_layers)
            try:
                verification = await self.scorer.verify(call)
            except ServiceDown:
                self.stats.num_target_faults += 1
                self.cache.trust_only(keep_len)  # the retry repeats this very call
                await self.scorer.recovered()
                continue
            except SessionLost:
                self.stats.num_target_faults += 1
                self.cache.trust_only(0)
                self.settings_sent = False
                self.round += 1
                continue
            self.round += 1
            self.settings_sent = True
            self.cache.fed(keep_len, new_tokens + draft_tokens + verification.decoded_tokens[:-1],
                           verification.cache_len)
            if self.features is not None and verification.features is not None:
                self.features.put(verification.features)
                self.stats.feature_bytes += verification.features.nbytes
            return verification
        raise ServiceDown(f"target: no answer to a verify after {MAX_VERIFY_ATTEMPTS} attempts")

    async def end(self) -> None:
        await self.scorer.end_session(self.session_id)
