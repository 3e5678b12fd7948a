"""The target's features of one request's committed tokens, kept for its feature-head draft.

A feature head drafts from the target's hidden states at the committed positions (`services.head`). The
target returns them with every verify, a row per token it was fed (`Verification.features`); the rows
of positions whose token is committed are valid, the rest (rejected draft tokens, a decoded run cut
short) are dropped when the round commits. The draft gets, with each propose, the rows of the positions
before its new tokens, and all of them again from position 0 when it lost the session. A pure container:
knows rows and positions, nothing of calls or services.
"""

from __future__ import annotations

import torch

from specdec.types import FeatureRows


class FeatureStore:
    def __init__(self) -> None:
        self._values: torch.Tensor | None = None  # [capacity, width]
        self.length = 0  # rows held: positions 0..length - 1

    def put(self, rows: FeatureRows) -> None:
        """Hold `rows` at their positions (from rows.start, which must not leave a gap), replacing what was
        there and anything after."""
        if rows.start > self.length:
            raise ValueError(f"features from position {rows.start} leave a gap after the {self.length} held")
        stop = rows.stop
        if self._values is None or self._values.shape[0] < stop:
            grown = torch.empty(max(stop, 2 * (0 if self._values is None else self._values.shape[0]), 64),
                                rows.values.shape[1], dtype=rows.values.dtype)
            if self._values is not None:
                grown[: self.length] = self._values[: self.length]
            self._values = grown
        self._values[rows.start: stop] = rows.values
        self.length = stop

    def truncate(self, length: int) -> None:
        """Keep positions 0..length - 1 only."""
        self.length = min(self.length, length)

    def covers(self, stop: int) -> bool:
        return self.length >= stop

    def rows(self, start: int, stop: int) -> FeatureRows:
        """Positions start..stop - 1 (held)."""
        if stop > self.length:
            raise ValueError(f"features up to position {stop - 1} asked for; {self.length} held")
        return FeatureRows(start, self._values[start:stop].clone())
