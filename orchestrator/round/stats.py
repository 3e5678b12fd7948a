"""Per-request speculation statistics, with vLLM's names and definitions.

acceptance rate = accepted / draft tokens; mean acceptance length = 1 + accepted / drafts (it counts the
recovered or bonus token), where a draft is a round that drafted at least one token.

`RequestStats` is the one declaration of these statistics: the gRPC message is filled from it field by
field (`specdec/v1`'s RequestStats has the same names), and the bench sums requests with `merge`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

IDENTITY_FIELDS = ("request_id", "rule", "gamma", "gamma_controller", "num_draft_sequences", "overlap",
                   "speculation_lanes", "finish_reason")  # what a request is, not what it counted
PER_POSITION_FIELDS = ("num_accepted_tokens_per_pos", "num_outcomes_per_accepted",
                       "num_outcome_hits_per_accepted")  # counts by position, merged position by position


@dataclass
class RequestStats:
    request_id: str
    rule: str
    gamma: int  # the controller's starting gamma
    prompt_tokens: int
    gamma_controller: str = "fixed"
    num_draft_sequences: int = 1  # M, draft sequences per round
    overlap: bool = False
    output_tokens: int = 0
    finish_reason: str = ""
    num_rounds: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    num_accepted_tokens_per_pos: list[int] = field(default_factory=list)
    num_draft_forwards: int = 0
    num_verify_forwards: int = 0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    wire_bytes: int = 0
    feature_bytes: int = 0  # a feature head's: the target's features received with verifies and sent with proposes
    seconds: float = 0.0
    gamma_trace: list[int] = field(default_factory=list)  # tokens drafted in each round
    speculation_lanes: int = 0
    num_pre_drafted: int = 0  # rounds whose window was drafted during the previous round's verification
    num_lane_hits: int = 0  # of those, windows from a speculation lane (a rejection outcome guessed right)
    num_lane_draft_tokens: int = 0  # tokens drafted on speculation lanes, used or not
    num_draft_faults: int = 0  # draft calls that found the draft service down or without the session
    num_target_faults: int = 0  # verify calls that found the target service down or without the session
    num_target_only_rounds: int = 0  # rounds decoded without the draft because it was down
    draft_call_seconds: float = 0.0  # the round waiting on draft calls (model time + transport)
    verify_call_seconds: float = 0.0  # the round waiting on verify calls (model time + transport)
    wait_seconds: float = 0.0  # overlapped: waiting for the draft after the verify answered
    # Overlapped mode, per outcome (accepted count k; k = the window's length: all accepted): the rounds that
    # ended so, and of those the rounds whose next window was drafted ahead for exactly that outcome.
    num_outcomes_per_accepted: list[int] = field(default_factory=list)
    num_outcome_hits_per_accepted: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RequestStats:
        """The statistics from their dict form (a client's, by field name); derived values in it are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in names})

    def merge(self, other: RequestStats) -> None:
        """Add another request's counts and times to these (per-position counts position by position, gamma
        traces one after the other); what identifies a request stays this one's."""
        for f in dataclasses.fields(self):
            if f.name in IDENTITY_FIELDS:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in PER_POSITION_FIELDS:
                longest = max(len(mine), len(theirs))
                mine = [sum(counts[i] for counts in (mine, theirs) if i < len(counts)) for i in range(longest)]
                setattr(self, f.name, mine)
            else:
                setattr(self, f.name, mine + theirs)

    def record_round(self, num_draft_tokens: int, num_accepted: int, draft_seconds: float,
                     verify_seconds: float, wire_bytes: int, draft_forwards: int | None = None,
                     verify_forwards: int = 1) -> None:
        """One round: tokens drafted and accepted, model times, bytes received. `draft_forwards` counts the
        draft forwards paid for in this round (pre-drafted windows of overlapped mode included); it
        defaults to the tokens drafted. `verify_forwards`: the target's forwards (a decoded run's length)."""
        self.num_rounds += 1
        self.num_verify_forwards += verify_forwards
        self.verify_seconds += verify_seconds
        self.wire_bytes += wire_bytes
        self.gamma_trace.append(num_draft_tokens)
        self.num_draft_forwards += num_draft_tokens if draft_forwards is None else draft_forwards
        self.draft_seconds += draft_seconds
        if num_draft_tokens == 0:
            return
        self.num_drafts += 1
        self.num_draft_tokens += num_draft_tokens
        self.num_accepted_tokens += num_accepted
        if len(self.num_accepted_tokens_per_pos) < num_draft_tokens:
            self.num_accepted_tokens_per_pos += [0] * (num_draft_tokens - len(self.num_accepted_tokens_per_pos))
        for position in range(num_accepted):
            self.num_accepted_tokens_per_pos[position] += 1

    def record_outcome(self, num_accepted: int, hit: bool) -> None:
        """An overlapped round that ended with `num_accepted` draft tokens accepted; `hit`: its next window was
        drafted ahead for exactly that outcome."""
        for counts in (self.num_outcomes_per_accepted, self.num_outcome_hits_per_accepted):
            counts += [0] * (num_accepted + 1 - len(counts))
        self.num_outcomes_per_accepted[num_accepted] += 1
        self.num_outcome_hits_per_accepted[num_accepted] += hit

    def outcome_hit_rates(self) -> list[float]:
        """Per accepted count: the share of the rounds that ended so whose next window was drafted ahead."""
        return [hits / count if count else 0.0
                for hits, count in zip(self.num_outcome_hits_per_accepted, self.num_outcomes_per_accepted,
                                       strict=True)]

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0

    @property
    def measured_c(self) -> float:
        """Draft time per drafted token / target time per verify forward (0 when nothing was drafted)."""
        if not self.num_draft_forwards or not self.num_verify_forwards:
            return 0.0
        return (self.draft_seconds / self.num_draft_forwards) / (self.verify_seconds / self.num_verify_forwards)

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def draft_ms_per_token(self) -> float:
        return 1000 * self.draft_seconds / self.num_draft_forwards if self.num_draft_forwards else 0.0

    @property
    def verify_ms_per_forward(self) -> float:
        return 1000 * self.verify_seconds / self.num_verify_forwards if self.num_verify_forwards else 0.0
