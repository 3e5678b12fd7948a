"""The draft runner over a feature head: each call's new tokens arrive with the target's features of the
positions before them, and the window is drafted as a draft model's is (`DraftRunner`), on the device,
one read-back at the end."""

from __future__ import annotations

import torch

from specdec.errors import InvalidField
from specdec.services.draft.runner import DraftRunner
from specdec.services.head.session_lm import HeadLM, pair_tokens
from specdec.types import ProposeCall


def check_head_features(call: ProposeCall, feature_width: int) -> None:
    """A head's call carries one feature row per pair it appends, from position max(keep_len - 1, 0); a call
    with lanes that appends nothing carries none."""
    features = call.features
    if call.lanes and not call.new_tokens:
        if features is not None and features.values.shape[0]:
            raise InvalidField("features", "a call that appends no tokens carries no features")
        return
    if features is None:
        raise InvalidField("features", "this draft is a feature head: each call carries the target's features "
                                       "of the positions before its new tokens")
    pairs = len(pair_tokens(call.keep_len, call.new_tokens))
    if pairs < 1:
        raise InvalidField("new_tokens", "a feature head starts a session from at least two tokens (one pair)")
    start = max(call.keep_len - 1, 0)
    if features.start != start or features.values.shape[0] != pairs:
        raise InvalidField("features", f"need the {pairs} rows of positions {start}..{start + pairs - 1}, got "
                                       f"{features.values.shape[0]} from position {features.start}")
    if features.values.shape[1] != feature_width:
        raise InvalidField("features", f"rows of {feature_width} values (the head's feature layers), got "
                                       f"{features.values.shape[1]}")


class HeadDraftRunner(DraftRunner):
    lm: HeadLM
    chunks_prefill = False  # a call's pairs come with the target's features of all of them: fed whole

    def _extend(self, calls: list[ProposeCall], logits_of: list[int]) -> list[torch.Tensor]:
        return self.lm.extend_pairs([(c.session_id, c.keep_len, c.new_tokens, c.features) for c in calls])
