"""A feature head in the draft service's runtime, on the real demo target's features: its sessions hold
pairs from the target's features, drafted pairs are rolled back and replaced by the target's, bad features
are refused naming the field, a head's speculation lanes continue its own chain of features, and a head is
refused for a target it was not trained for."""

from __future__ import annotations

import pytest
import torch

from specdec.config import resolve_model
from specdec.errors import InvalidField, SessionError
from specdec.services.head.checkpoint import load_head
from specdec.services.head.runner import HeadDraftRunner, check_head_features
from specdec.services.head.session_lm import HeadLM
from specdec.services.runtime.model import CausalLM, LoadSpec
from specdec.services.target.runner import TargetRunner
from specdec.types import FeatureRows, Lane, ProposeCall, SamplingParams, VerifyCall
from tests.helpers import random_head

PROMPT = [5, 17, 99, 250, 3, 41, 8, 77]
LAYERS = (1, 4, 7)


@pytest.fixture(scope="module")
def head_path(tmp_path_factory) -> str:
    return random_head(tmp_path_factory.mktemp("head") / "head", layers=LAYERS)


@pytest.fixture(scope="module")
def target() -> TargetRunner:
    return TargetRunner(CausalLM(LoadSpec(resolve_model("demo:target"))))


def features_of(target: TargetRunner, tokens: list[int], session: str) -> FeatureRows:
    """The target's features at every position of `tokens`."""
    return target.verify(VerifyCall(session, 1, 0, tokens, [], SamplingParams(0.0), feature_layers=LAYERS)).features


def propose(session: str, keep_len: int, new_tokens: list[int], features: FeatureRows) -> ProposeCall:
    return ProposeCall(session, 1, keep_len, new_tokens, 3, SamplingParams(0.0), seed=0, want_probs=False,
                       want_raw_probs=True, features=features)


def rows(features: FeatureRows, start: int, stop: int) -> FeatureRows:
    return FeatureRows(start, features.values[start:stop])


def test_drafted_pairs_are_replaced_by_the_targets_when_the_next_call_keeps_only_the_targets(head_path, target):
    """A second call that keeps the first's tokens and appends two drafted tokens and a third, with the
    target's features, drafts what a session fed everything at once drafts."""
    runner = HeadDraftRunner(HeadLM(LoadSpec(head_path)))
    first = features_of(target, PROMPT, "p")
    proposal = runner.propose(propose("s", 0, PROMPT, rows(first, 0, len(PROMPT) - 1)))
    assert len(proposal.draft_tokens) == 3
    assert proposal.cache_len == len(PROMPT) + 2  # the drafted pairs stay until a call rolls them back
    sequence = PROMPT + proposal.draft_tokens[:2] + [123]
    full = features_of(target, sequence, "q")
    kept = runner.propose(propose("s", len(PROMPT), sequence[len(PROMPT):], rows(full, len(PROMPT) - 1,
                                                                                 len(sequence) - 1)))
    fresh = runner.propose(propose("fresh", 0, sequence, rows(full, 0, len(sequence) - 1)))
    assert kept.cache_len == fresh.cache_len == len(sequence) + 2
    assert kept.draft_tokens == fresh.draft_tokens
    torch.testing.assert_close(kept.draft_raw_probs.values, fresh.draft_raw_probs.values, rtol=1e-4, atol=1e-5)


def test_bad_features_are_refused_naming_the_field(head_path):
    width = len(LAYERS) * 320

    def call(keep_len: int, new_tokens: list[int], start: int, count: int, columns: int = width) -> ProposeCall:
        return propose("s", keep_len, new_tokens, FeatureRows(start, torch.zeros(count, columns,
                                                                                 dtype=torch.float16)))

    check_head_features(call(0, [1, 2, 3], 0, 2), width)
    check_head_features(call(5, [1, 2], 4, 2), width)
    cases = [(propose("s", 0, [1, 2], None), "features"), (call(0, [1], 0, 0), "new_tokens"),
             (call(5, [1, 2], 5, 2), "features"), (call(5, [1, 2], 4, 1), "features"),
             (call(5, [1, 2], 4, 2, columns=width - 1), "features")]
    for bad, field_name in cases:
        with pytest.raises(InvalidField) as refused:
            check_head_features(bad, width)
        assert refused.value.field == field_name


def test_a_head_is_refused_for_another_target_naming_both(head_path):
    other = resolve_model("demo:draft")
    with pytest.raises(InvalidField) as refused:
        load_head(head_path, target=other)
    message = str(refused.value)
    assert refused.value.field == "draft.model" and "'demo:target'" in message and other in message
    assert load_head(head_path).config.target == "demo:target"  # its own target loads


def test_sessions_draft_in_lockstep_as_they_would_alone(head_path, target):
    """Two sessions of different lengths in one batch: the same drafts as each alone."""
    runner = HeadDraftRunner(HeadLM(LoadSpec(head_path)))
    sequences = {"a": PROMPT, "b": PROMPT[:4] + [300, 301, 302, 303, 304, 305, 306]}
    calls = {name: propose(f"batched-{name}", 0, tokens, rows(features_of(target, tokens, f"t-{name}"), 0,
                                                                len(tokens) - 1))
             for name, tokens in sequences.items()}
    batched = runner.propose_batch(list(calls.values()))
    for (name, call), together in zip(calls.items(), batched, strict=True):
        alone = runner.propose(ProposeCall(**{**vars(call), "session_id": f"alone-{name}"}))
        assert together.draft_tokens == alone.draft_tokens
        torch.testing.assert_close(together.draft_raw_probs.values, alone.draft_raw_probs.values, rtol=1e-4,
                                   atol=1e-5)


def test_lanes_and_adoption_continue_the_heads_chain_as_one_longer_window(head_path, target):
    """Greedy: a lane after the whole window, then a lane after that lane's window once the session adopted it,
    draft what one window twice as long drafts on the head's own features."""
    runner = HeadDraftRunner(HeadLM(LoadSpec(head_path)))
    features = rows(features_of(target, PROMPT, "lanes"), 0, len(PROMPT) - 1)
    long = runner.propose(ProposeCall("long", 1, 0, PROMPT, 9, SamplingParams(0.0), seed=0, want_probs=False,
                                      features=features)).draft_tokens
    window = runner.propose(ProposeCall("s", 1, 0, PROMPT, 3, SamplingParams(0.0), seed=0, want_probs=False,
                                        features=features)).draft_tokens
    n = len(PROMPT)
    first = runner.propose(ProposeCall("s", 2, n + 2, [], 3, SamplingParams(0.0), seed=0, want_probs=False,
                                       lanes=(Lane(n + 2, window[2]), Lane(n, 5))))
    second = runner.propose(ProposeCall("s", 3, n + 5, [], 3, SamplingParams(0.0), seed=0, want_probs=False,
                                        lanes=(Lane(n + 5, first.lanes[0].draft_tokens[2]),), adopt_lane=1))
    assert window + first.lanes[0].draft_tokens + second.lanes[0].draft_tokens == long
    assert second.cache_len == n + 5  # the adopted lane: the prompt, the window, 2 tokens drafted on the lane
    bad = ProposeCall("s", 4, 3, [], 3, SamplingParams(0.0), seed=0, want_probs=False, lanes=(Lane(3, 5),))
    assert isinstance(runner.propose_batch([bad])[0], SessionError)  # before the head's features begin
    gone = ProposeCall("s", 5, n, [], 3, SamplingParams(0.0), seed=0, want_probs=False, lanes=(Lane(n, 5),),
                       adopt_lane=3)
    refused = runner.propose_batch([gone])[0]
    assert isinstance(refused, SessionError) and (refused.field, refused.code) == ("adopt_lane", "NOT_FOUND")
