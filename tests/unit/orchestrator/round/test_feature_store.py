"""The target's features of a request's committed tokens, as the orchestrator keeps them for a head."""

from __future__ import annotations

import pytest
import torch

from specdec.orchestrator.round.feature_store import FeatureStore
from specdec.types import FeatureRows


def rows(start: int, count: int, value: float) -> FeatureRows:
    return FeatureRows(start, torch.full((count, 3), value, dtype=torch.float16))


def test_rows_land_at_their_positions_and_replace_what_followed():
    store = FeatureStore()
    store.put(rows(0, 5, 1.0))
    store.put(rows(3, 100, 2.0))  # grows past its first capacity
    assert store.length == 103 and store.covers(103) and not store.covers(104)
    got = store.rows(2, 5)
    assert got.start == 2 and got.values[:, 0].tolist() == [1.0, 2.0, 2.0]
    store.truncate(4)
    store.put(rows(4, 1, 3.0))
    assert store.length == 5 and store.rows(0, 5).values[:, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 3.0]


def test_a_gap_or_rows_not_held_are_refused():
    store = FeatureStore()
    store.put(rows(0, 2, 1.0))
    with pytest.raises(ValueError, match="gap"):
        store.put(rows(3, 1, 1.0))
    with pytest.raises(ValueError, match="asked for"):
        store.rows(0, 3)
