"""What a model service's cache holds of one session, as the orchestrator believes it: a pure state machine.

A cache holds the first `cursor` committed tokens, then `held` tokens that are not (yet) committed: a
draft's own window, or what the target scored. `feed` says which call makes the cache hold a sequence
(keep so many tokens, append these), `fed` records what a call did, `trust_only` forgets what a call that
may or may not have run could have changed, and `settle` moves what the round committed behind the cursor.

Knows token lists only: nothing of calls, services, rules or rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class CacheView:
    """A service's cache of a session: committed[:cursor] followed by the not yet committed `held` tokens."""

    cursor: int = 0
    held: list[int] = field(default_factory=list)

    def sync(self, sequence: list[int]) -> tuple[int, list[int]]:
        """(keep_len, new_tokens) that make the cache hold `sequence`, feeding none of what it holds."""
        keep = min(self.cursor + common_prefix(self.held, sequence[self.cursor:]), len(sequence))
        return keep, sequence[keep:]

    def feed(self, sequence: list[int]) -> tuple[int, list[int]]:
        """`sync`, but at least one token is fed, since the forward must give the distribution after the
        sequence's last token."""
        keep = min(self.sync(sequence)[0], len(sequence) - 1)
        return keep, sequence[keep:]

    def fed(self, keep_len: int, tokens: list[int], cache_len: int) -> None:
        """Record a call that kept keep_len tokens, fed `tokens` and left `cache_len` tokens cached."""
        held = (self.held[: keep_len - self.cursor] if keep_len > self.cursor else []) + tokens
        self.cursor = min(self.cursor, keep_len)
        self.held = held[: cache_len - self.cursor]

    def trust_only(self, length: int) -> None:
        """Believe no more than the cache's first `length` tokens (after a call that may or may not have run)."""
        if length < self.cursor:
            self.cursor, self.held = length, []
        else:
            self.held = self.held[: length - self.cursor]

    def settle(self, committed: list[int]) -> None:
        """Move the committed part of `held` behind the cursor; drop held tokens that were not committed."""
        self.cursor = min(self.cursor, len(committed))
        matched = common_prefix(self.held, committed[self.cursor:])
        self.held = self.held[matched:] if self.cursor + matched == len(committed) else []
        self.cursor += matched
